"""UPYUN storage: upload, resume, list, download, move, purge.

Runs as it is against a local emulator of the UPYUN API, started and
stopped here::

    python examples/upyun_upload.py

Against an emulator kept running in another terminal (its first line is its
endpoint, ``127.0.0.1:PORT``)::

    python -m upclient.testing upyun --service svc --operator op --password pw
    UPYUN_SERVICE=svc UPYUN_OPERATOR=op UPYUN_PASSWORD=pw UPYUN_ENDPOINT=127.0.0.1:PORT \
        python examples/upyun_upload.py

For the real service, give the service, operator and password (the endpoint
defaults to v0.api.upyun.com)::

    UPYUN_SERVICE=my-service UPYUN_OPERATOR=me UPYUN_PASSWORD=... python examples/upyun_upload.py

The progress of the big upload goes to stderr: one line redrawn on a
terminal, a line per tenth in a pipe or a log.
"""

import contextlib
import hashlib
import os
import sys
import tempfile

import upclient
from _progress import ProgressLine

MiB = 1024 * 1024


@contextlib.contextmanager
def target():
    """(service, operator, password, endpoint): the real service if the environment names it."""
    if os.environ.get("UPYUN_SERVICE"):
        missing = [name for name in ("UPYUN_OPERATOR", "UPYUN_PASSWORD") if not os.environ.get(name)]
        if missing:
            print(__doc__, file=sys.stderr)
            print(f"UPYUN_SERVICE is set, so set {' and '.join(missing)} too", file=sys.stderr)
            sys.exit(2)
        yield (os.environ["UPYUN_SERVICE"], os.environ["UPYUN_OPERATOR"], os.environ["UPYUN_PASSWORD"],
               os.environ.get("UPYUN_ENDPOINT"))
        return
    from upclient.testing import UpyunServer

    with UpyunServer(service="demo", operator="op", password="s3cret") as server:
        yield "demo", "op", "s3cret", server.endpoint


def main() -> int:
    with target() as (service, operator, password, endpoint), tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "big.iso")
        with open(big, "wb") as f:
            f.write(os.urandom(40 * MiB))
        options = {"endpoint": endpoint} if endpoint else {}
        with upclient.Client(f"upyun://{operator}@{service}", password=password, **options) as client:
            # above part_size (16 MiB): a resumable multipart upload, parts in parallel
            with ProgressLine("isos/big.iso") as show:
                result = client.put(big, key="isos/big.iso", on_progress=show)
            print(f"stored {result.key}: {result.size} bytes in {result.elapsed:.2f} s")

            # a small file: one signed PUT, with a Content-MD5 the server checks
            client.put(b"hello", key="notes/hello.txt", metadata={"author": "example"})

            for entry in client.iter("isos/"):
                print("listed", entry.id, entry.size)
            first_kib = client.get("isos/big.iso", offset=0, length=1024)
            with open(big, "rb") as f:
                assert first_kib == f.read(1024)
            client.move("notes/hello.txt", "notes/renamed.txt")
            print("info", client.info("notes/renamed.txt").metadata)
            refused = client.purge(["isos/big.iso"])
            print("purge refused:", refused or "nothing")
            digest = hashlib.sha256(client.get("isos/big.iso")).hexdigest()
            with open(big, "rb") as f:
                assert digest == hashlib.sha256(f.read()).hexdigest()
            print("downloaded copy matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
