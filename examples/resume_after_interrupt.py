"""Interrupt an upload half way, then finish it by sending only what is missing.

Start a local tus server in another terminal; its first line is the URL to
pass::

    python -m upclient.testing tus

then, from the repository root::

    python examples/resume_after_interrupt.py big.iso tus+http://127.0.0.1:1080/files/

(or set ``UPCLIENT_URL`` to the URL and give only the file).  The first
``put`` is cancelled from its progress callback once half its parts are on
the server; its resume point stays in the store.  The second ``put`` of the
same file to the same server continues from what the server holds.  A
killed process resumes the same way: the default ``FileStore`` keeps resume
points on disk, so re-running a script is enough.  Here they go to a
temporary directory so your own are left alone.

On loopback a small file is sent before the first progress report (a few a
second): give it a file of a few hundred MiB.
"""

import os
import sys
import tempfile
import threading

import upclient
from upclient.errors import Cancelled


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("UPCLIENT_URL")
    if not url:
        print("give the server URL as the second argument or in UPCLIENT_URL", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        store = upclient.FileStore(tmp)
        # Small parts, so that there are finished parts to keep when we stop.
        with upclient.Client(url, part_size=1 * 2**20, store=store) as client:
            cancel = threading.Event()

            def stop_half_way(p: upclient.Progress) -> None:
                if p.parts_total and p.parts_done >= p.parts_total / 2:
                    cancel.set()

            try:
                client.put(path, on_progress=stop_half_way, cancel=cancel)
                print("the upload finished before it could be stopped: try a bigger file")
            except Cancelled:
                print(f"cancelled; resume points kept: {len(list(store.keys()))}")

            result = client.put(path)
            print(f"resumed={result.resumed}: sent {result.sent_bytes} of {result.size} bytes")
            print(result.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
