"""Upload one file to a tus server, with a progress line, and print its id.

Start a local tus server in another terminal; its first line is the URL to
pass::

    python -m upclient.testing tus

then, from the repository root::

    python examples/tus_upload.py big.iso tus+http://127.0.0.1:1080/files/

(or set ``UPCLIENT_URL`` to the URL and give only the file).  Progress goes
to stderr: one line redrawn on a terminal, a line per tenth in a pipe or a
log; the upload's id (its URL on the server) goes to stdout.  Run the same
command again after Ctrl-C and the upload resumes where the server stands.
"""

import os
import sys

import upclient
from _progress import ProgressLine


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("UPCLIENT_URL")
    if not url:
        print("give the server URL as the second argument or in UPCLIENT_URL", file=sys.stderr)
        return 2
    with upclient.Client(url, part_size=8 * 2**20) as client, ProgressLine(os.path.basename(path)) as show:
        result = client.put(path, metadata={"origin": "examples/tus_upload.py"}, on_progress=show)
    print(result.id)
    if result.resumed:
        print(f"resumed: sent {result.sent_bytes} of {result.size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
