"""A test's own http.server on 127.0.0.1, served from a thread until it is closed."""

from __future__ import annotations

import threading
from http.server import HTTPServer


class LoopbackHTTP:
    """Base of a test server: :meth:`serve` starts ``server`` in a thread; ``url`` is its origin."""

    server: HTTPServer
    url: str

    def serve(self, server: HTTPServer, scheme: str = "http") -> None:
        self.server = server
        self.url = f"{scheme}://127.0.0.1:{server.server_port}"
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
