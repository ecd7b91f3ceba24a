"""Time promises that hold whatever the server does: a web view's upload.

A view that uploads with ``timeout=`` answers its user in time even when the
storage server accepts the connection and then says nothing.  Runs as it is
against a local server that never answers (started and stopped here)::

    python examples/deadlines.py

It shows ``put(timeout=2)`` giving up after 2 s (``read_timeout`` is 60),
a cancel from another thread stopping an upload at once, and the resume
point kept for the next try.  Then the source stalls instead of the server:
a pipe whose writer gives 40 KiB and stops (``pg_dump | ...`` waiting on a
lock), uploaded with ``timeout=1`` to a working tus server (the
``resumable-upload`` package's, from the ``testing`` extra, started and
stopped here).
"""

import os
import tempfile
import threading
import time

import upclient
from upclient.testing import ResumableUploadServer, SilentServer

MiB = 1024 * 1024


def main() -> None:
    with SilentServer(reads=False) as silent, tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "report.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(32 * MiB))
        url = f"tus+http://{silent.address}/files/"
        with upclient.Client(url, read_timeout=60, store=upclient.MemoryStore()) as client:
            started = time.monotonic()
            try:
                client.put(path, timeout=2)
            except TimeoutError as exc:  # DeadlineExceeded is a TimeoutError (and a Cancelled)
                print(f"put(timeout=2) gave up after {time.monotonic() - started:.2f} s: {exc}")

            cancel = threading.Event()
            threading.Timer(0.5, cancel.set).start()
            started = time.monotonic()
            try:
                client.put(path, cancel=cancel)
            except upclient.errors.Cancelled as exc:
                print(f"cancel.set() at 0.5 s: the put ended at {time.monotonic() - started:.2f} s: {exc}")
        print("no upclient thread left:",
              not [t for t in threading.enumerate() if t.name.startswith("upclient-")])
    stalled_stream()


def stalled_stream() -> None:
    reader, writer = os.pipe()
    os.write(writer, b"x" * 40 * 1024)  # then nothing more, and the pipe stays open
    with ResumableUploadServer() as server, upclient.Client("tus+" + server.url, store=None) as client, \
            os.fdopen(reader, "rb") as stream:
        started = time.monotonic()
        try:
            client.put(stream, key="dump.sql", timeout=1)
        except TimeoutError as exc:
            print(f"a stalled stream: put(timeout=1) gave up after {time.monotonic() - started:.2f} s: {exc}")
        finally:
            os.close(writer)


if __name__ == "__main__":
    main()
