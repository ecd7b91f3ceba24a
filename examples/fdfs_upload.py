"""FastDFS: upload, resume, slave files, appender files, metadata, listing.

Runs as it is against a local emulator (a tracker and a storage on
127.0.0.1), started and stopped here::

    python examples/fdfs_upload.py

Against an emulator kept running in another terminal (its first line is its
tracker's address, ``127.0.0.1:PORT``), or against a real cluster, name the
trackers::

    python -m upclient.testing fdfs
    FDFS_TRACKERS=127.0.0.1:PORT python examples/fdfs_upload.py
    FDFS_TRACKERS=10.0.0.1:22122,10.0.0.2:22122 python examples/fdfs_upload.py

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
def trackers():
    """The fdfs:// URL of the cluster the environment names, or of a local emulator."""
    if os.environ.get("FDFS_TRACKERS"):
        yield "fdfs://" + os.environ["FDFS_TRACKERS"]
        return
    from upclient.testing import FdfsServer

    with FdfsServer() as server:
        yield server.url


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main() -> int:
    with trackers() as url, tempfile.TemporaryDirectory() as tmp:
        photo, big = os.path.join(tmp, "photo.jpg"), os.path.join(tmp, "big.mp4")
        with open(photo, "wb") as f:
            f.write(os.urandom(200 * 1024))
        with open(big, "wb") as f:
            f.write(os.urandom(40 * MiB))
        with upclient.Client(url, connect_timeout=5, network_timeout=30, max_conns=10) as client:
            # one request, streamed from the file; the extension comes from its name
            r = client.put(photo, metadata={"author": "example"})
            print("stored", r.id)

            # resumable: an appender file grown part by part; a re-run after a kill goes on
            # from the size the storage reports.  regenerate=True ends it as a normal file.
            with ProgressLine("big.mp4") as show:
                big_r = client.put(big, resumable=True, regenerate=True, on_progress=show)
            print(f"stored {big_r.id}: {big_r.size} bytes in {big_r.elapsed:.2f} s")

            thumb = client.put_slave(r.id, b"tiny thumbnail", prefix="_150x150")
            print("slave", thumb.id)

            log = client.put_appender(b"first line\n", ext="log")
            client.append(log.id, b"second line\n")
            client.modify(log.id, 0, b"FIRST")
            print("appender file now holds", client.get(log.id))

            client.set_metadata(r.id, {"width": "1920"}, mode="merge")
            print("metadata", client.get_metadata(r.id))
            info = client.info(r.id)
            print(f"info: {info.size} bytes, crc32 {info.extra['crc32']:#010x}, from {info.extra['source_ip']}")

            print("groups", [(g.name, g.free_mb) for g in client.groups()])
            print("storages", [f"{s.ip}:{s.storage_port}" for s in client.storages("group1")])

            copy = os.path.join(tmp, "copy.mp4")
            client.get(big_r.id, copy)
            assert sha256(copy) == sha256(big)
            assert client.get(r.id, offset=100, length=1024) == open(photo, "rb").read()[100:1124]
            for id in (r.id, thumb.id, log.id, big_r.id):
                client.delete(id)
            print("downloaded copy matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
