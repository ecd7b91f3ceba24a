"""Time promises that hold whatever the server does: a web view's upload.

A view that uploads with ``timeout=`` answers its user in time even when the
storage server accepts the connection and then says nothing.  Runs as it is
against a local server that never answers (started and stopped here)::

    python examples/deadlines.py

It shows ``put(timeout=2)`` giving up after 2 s (``read_timeout`` is 60),
a cancel from another thread stopping an upload at once, and the resume
point kept for the next try.
"""

import os
import tempfile
import threading
import time

import upclient
from upclient.testing import SilentServer

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


if __name__ == "__main__":
    main()
