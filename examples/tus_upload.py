"""Upload one file to a tus server, with a progress line.

Start a local tus server (``pip install resumable-upload``)::

    resumable-upload serve --host 127.0.0.1 --port 1080 \
        --upload-dir /tmp/tus --db-path /tmp/tus.sqlite3 --enable-downloads

then::

    python examples/tus_upload.py big.iso tus+http://127.0.0.1:1080/files/

The URL may also come from the ``UPCLIENT_URL`` environment variable.  Run
the same command again after Ctrl-C and the upload resumes.
"""

import os
import sys

import upclient


def show(p: upclient.Progress) -> None:
    # Called in this thread a few times a second, and once at the end.
    pct = f"{100 * p.fraction:5.1f}%" if p.fraction is not None else "     "
    eta = f"eta {p.eta:4.0f} s" if p.eta is not None else ""
    print(f"\r{p.name}: {pct} {p.bytes_done / 2**20:8.1f} MiB  {p.rate / 2**20:6.1f} MiB/s  {eta}  ",
          end="", file=sys.stderr, flush=True)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("UPCLIENT_URL")
    if not url:
        print("give the server URL as the second argument or in UPCLIENT_URL", file=sys.stderr)
        return 2
    with upclient.Client(url, part_size=8 * 2**20) as client:
        result = client.put(path, metadata={"origin": "examples/tus_upload.py"}, on_progress=show)
    print(file=sys.stderr)
    print(result.id)
    if result.resumed:
        print(f"resumed: sent {result.sent_bytes} of {result.size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
