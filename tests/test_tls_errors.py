"""A failed TLS handshake is a TLSError, and it is not retried."""

from __future__ import annotations

import socket
import threading

import pytest

import upclient
from upclient import errors


class PlainTextServer:
    """Answers every connection with plain HTTP and closes it: a TLS client's handshake fails."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def test_a_tls_handshake_that_fails_is_a_tls_error_tried_once():
    server = PlainTextServer()
    try:
        with upclient.Client(f"tus+https://127.0.0.1:{server.port}/files/", store=None,
                             retry=upclient.RetryPolicy(attempts=4, backoff=0)) as client:
            with pytest.raises(errors.TLSError, match="TLS failed") as caught:
                client.put(b"x" * 10)
        assert not caught.value.retryable and "retryable" not in vars(caught.value)
        assert isinstance(caught.value, errors.NetworkError)
        assert server.accepted == 1
    finally:
        server.close()
