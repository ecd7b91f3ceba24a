"""Upload many files, a few at a time; one failure does not stop the others.

Start a local tus server in another terminal; its first line is the URL to
pass::

    python -m upclient.testing tus

then, from the repository root, with that URL::

    UPCLIENT_URL=tus+http://127.0.0.1:1080/files/ python examples/put_many.py *.log

The URL comes from ``UPCLIENT_URL``; the arguments are the files.  Each file
gets a line on stdout, ``ok`` with its id or ``error`` with the reason; the
exit status is 1 if any failed.
"""

import os
import sys

import upclient


def main() -> int:
    url = os.environ.get("UPCLIENT_URL")
    if not url or len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with upclient.Client(url, max_files=4) as client:
        outcomes = client.put_many(sys.argv[1:])
    for outcome in outcomes:
        if outcome.ok:
            print(f"ok    {outcome.source} -> {outcome.result.id}")
        else:
            print(f"error {outcome.source}: {outcome.error}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
