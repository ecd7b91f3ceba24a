"""How long each time promise takes against servers that stop answering.

For every HTTP backend, against ``SilentServer`` (accepts; never answers, or
never reads the body), with ``read_timeout=60``: ``put(timeout=2)``,
``cancel.set()`` at 1 s and ``close()`` at 1 s (time from the set to the
raise), and ``read_timeout=1`` against a body nobody reads.  Prints one row
per case; ``make bench`` runs it, README quotes it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

import upclient
from upclient import errors
from upclient.testing import SilentServer

MiB = 1 << 20

CLIENTS = {
    "tus": lambda a, **kw: upclient.Client(f"tus+http://{a}/files/", **kw),
    "community": lambda a, **kw: upclient.Client(f"community+http://{a}", token="t", **kw),
    "upyun": lambda a, **kw: upclient.Client("upyun://op@svc", endpoint=a, password="pw", **kw),
}


def timed(expect, fn, *args, **kwargs):
    """Seconds until ``fn(*args, **kwargs)`` raises ``expect``."""
    started = time.monotonic()
    try:
        fn(*args, **kwargs)
    except expect:
        return time.monotonic() - started
    raise AssertionError(f"expected {expect}")


def main() -> int:
    with tempfile.NamedTemporaryFile(delete=False, suffix=".bin") as f:
        f.write(os.urandom(48 * MiB))
        path = f.name
    rows = []
    try:
        for kind, make in CLIENTS.items():
            for reads in (True, False):
                server_kind = "never answers" if reads else "never reads"
                with SilentServer(reads=reads) as srv:
                    kw = dict(store=None, read_timeout=60, part_size=64 * MiB)
                    with make(srv.address, **kw) as c:
                        t = timed(errors.DeadlineExceeded, c.put, path, timeout=2)
                    rows.append((kind, server_kind, "put(timeout=2)", t))
                    cancel = threading.Event()
                    with make(srv.address, **kw) as c:
                        threading.Timer(1.0, cancel.set).start()
                        t = timed(errors.Cancelled, c.put, path, cancel=cancel) - 1.0
                    rows.append((kind, server_kind, "cancel.set() at 1 s, to the raise", t))
                    c = make(srv.address, **kw)
                    threading.Timer(1.0, c.close).start()
                    t = timed(errors.Cancelled, c.put, path) - 1.0
                    rows.append((kind, server_kind, "close() at 1 s, to the raise", t))
            with SilentServer(reads=False) as srv:
                with make(srv.address, store=None, read_timeout=1, part_size=64 * MiB,
                          retry=upclient.RetryPolicy.never()) as c:
                    t = timed(errors.Timeout, c.put, path)
                rows.append((kind, "never reads", "read_timeout=1, to Timeout", t))
    finally:
        os.unlink(path)
    for kind, server_kind, case, t in rows:
        print(f"{kind:10s} {server_kind:14s} {case:36s} {t:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
