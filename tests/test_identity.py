"""A source identity that survives a move between hosts: ``Client(identity="content" | "digest")``.

Another host sees a file on shared storage under another path (its own
mount point) and another inode: with the default, local identity it cannot
find the resume point; with a content or digest identity it can.  The
trade-off of the sampled fingerprint is shown as it is: a file that differs
only outside the samples, with the same name, size and mtime, looks the
same, and the digest identity tells it apart.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

import upclient
from upclient import errors
from upclient.digest import SAMPLE_SIZE, source_identity
from upclient.source import FileSource

from .conftest import MiB
from .contract import HookedFileSource, resume_points


def other_host(path: Path, root: Path) -> Path:
    """The same file as another host sees it: another directory (mount point) and inode, same bytes, name, mtime."""
    there = root / "mnt" / "shared" / path.name
    there.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, there)
    return there


def interrupted_put(client, path: Path, at: int) -> None:
    """``client.put(path)`` cancelled once a part from offset ``at`` is read (not the identity's samples)."""
    cancel, armed = threading.Event(), threading.Event()
    with HookedFileSource(path, lambda off: cancel.set() if armed.is_set() and off >= at else None) as src:
        source_identity(src, client.identity)  # read now (and kept for the source): the hook is not armed yet
        armed.set()
        with pytest.raises(errors.Cancelled):
            client.put(src, cancel=cancel)


def identity_of(path: Path, kind: str) -> dict:
    with FileSource(path) as src:
        return source_identity(src, kind)


def test_a_content_identity_is_the_same_on_another_host_and_a_local_one_is_not(make_file, tmp_path):
    path, _ = make_file(10 * MiB, "video.mp4")
    there = other_host(path, tmp_path)
    assert identity_of(path, "local") != identity_of(there, "local")
    for kind in ("content", "digest"):
        here = identity_of(path, kind)
        assert here == identity_of(there, kind)
        assert "path" not in here and "inode" not in here and here["name"] == "video.mp4"


def test_a_content_identity_changes_with_a_sampled_byte_the_size_or_the_mtime(make_file, tmp_path):
    path, _ = make_file(10 * MiB, "a.bin")
    before = identity_of(path, "content")
    st = os.stat(path)
    for offset in (0, 5 * MiB, 10 * MiB - 1):  # the first, middle and last samples
        with open(path, "r+b") as f:
            f.seek(offset)
            old = f.read(1)
            f.seek(offset)
            f.write(bytes([old[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert identity_of(path, "content") != before, offset
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(old)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert identity_of(path, "content") == before
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert identity_of(path, "content") != before


def test_the_trade_off_a_byte_outside_the_samples_with_the_mtime_put_back_needs_the_digest(make_file):
    path, _ = make_file(10 * MiB, "disk.img")
    content, digest = identity_of(path, "content"), identity_of(path, "digest")
    st = os.stat(path)
    with open(path, "r+b") as f:  # between the first and the middle sample
        f.seek(2 * MiB)
        old = f.read(1)
        f.seek(2 * MiB)
        f.write(bytes([old[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as rsync -t or tar x would
    assert identity_of(path, "content") == content  # the documented blind spot
    assert identity_of(path, "digest") != digest


class CountingSource(FileSource):
    def __init__(self, path) -> None:
        super().__init__(path)
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        self.bytes_read += length
        return super().read(offset, length)


def test_a_content_identity_reads_three_samples_once_per_source(make_file):
    path, _ = make_file(64 * MiB)
    with CountingSource(path) as src:
        first = source_identity(src, "content")
        assert source_identity(src, "content") == first
        assert src.bytes_read == 3 * SAMPLE_SIZE


def test_an_unknown_identity_is_bad_input(tmp_path):
    with pytest.raises(errors.BadInput, match="identity"):
        upclient.Client("tus+http://127.0.0.1:9/files/", store=None, identity="inode")


@pytest.mark.parametrize("kind", ["content", "digest"])
def test_another_host_resumes_the_upload_of_a_file_on_shared_storage(kind, upclient_upyun_server, make_file,
                                                                    tmp_path):
    size = 8 * MiB + 3
    path, digest = make_file(size, "big.bin")
    there = other_host(path, tmp_path)
    store = upclient.FileStore(tmp_path / "shared-store")  # shared, as a RedisStore would be
    with upclient_upyun_server.client(store=store, identity=kind, part_size=1 * MiB, concurrency=1) as client:
        interrupted_put(client, path, 4 * MiB)
    assert len(resume_points(store)) == 1
    with upclient_upyun_server.client(store=store, identity=kind, part_size=1 * MiB, concurrency=1) as client:
        result = client.put(there)
    assert result.resumed and result.sent_bytes <= size - 3 * MiB, result
    assert upclient_upyun_server.stored_sha256(result.id) == digest
    assert resume_points(store) == []


def test_with_the_local_identity_another_host_starts_afresh(upclient_upyun_server, make_file, tmp_path):
    size = 8 * MiB + 3
    path, digest = make_file(size, "big.bin")
    there = other_host(path, tmp_path)
    store = upclient.FileStore(tmp_path / "shared-store")
    with upclient_upyun_server.client(store=store, part_size=1 * MiB, concurrency=1) as client:
        interrupted_put(client, path, 4 * MiB)
        assert len(resume_points(store)) == 1
        result = client.put(there)
    assert not result.resumed and result.sent_bytes == size
    assert upclient_upyun_server.stored_sha256(result.id) == digest


def test_abort_finds_the_upload_of_a_file_by_its_content_identity(upclient_upyun_server, make_file, tmp_path):
    path, _ = make_file(4 * MiB + 1, "big.bin")
    store = upclient.FileStore(tmp_path / "store")
    with upclient_upyun_server.client(store=store, identity="content", part_size=1 * MiB,
                                      concurrency=1) as client:
        interrupted_put(client, path, 2 * MiB)
        assert len(upclient_upyun_server.uploads()) == 1
        assert client.abort(other_host(path, tmp_path)) == 1
    assert resume_points(store) == [] and upclient_upyun_server.uploads() == {}
