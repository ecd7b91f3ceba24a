"""Upload standard input as it is produced, without knowing its size first.

Start a local tus server in another terminal; its first line is the URL to
pass::

    python -m upclient.testing tus

then, from the repository root::

    tar c some/dir | python examples/stream_stdin.py some-dir.tar tus+http://127.0.0.1:1080/files/

(or set ``UPCLIENT_URL`` to the URL and give only the name).  The stream is
sent part by part as it is read (tus ``creation-defer-length``: the length is
announced at the end); memory stays near one part.  A stream cannot be
resumed after its process dies.
"""

import os
import sys

import upclient


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    name = sys.argv[1]
    url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("UPCLIENT_URL")
    if not url:
        print("give the server URL as the second argument or in UPCLIENT_URL", file=sys.stderr)
        return 2
    with upclient.Client(url, part_size=4 * 2**20) as client:
        result = client.put(sys.stdin.buffer, key=name)
    print(f"{result.size} bytes from stdin -> {result.id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
