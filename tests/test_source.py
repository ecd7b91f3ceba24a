"""Sources: what can be uploaded, byte ranges without a shared seek pointer, change detection."""

from __future__ import annotations

import io
import socket
import os
import threading

import pytest

from upclient import errors
from upclient.source import (
    BytesSource,
    FileObjectSource,
    FileSource,
    PartBody,
    StreamSource,
    open_source,
)


def test_open_source_picks_the_right_kind(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    assert isinstance(open_source(path), FileSource)
    assert isinstance(open_source(str(path)), FileSource)
    assert isinstance(open_source(b"x"), BytesSource)
    assert isinstance(open_source(io.BytesIO(b"x")), FileObjectSource)
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe:
        os.close(w)
        assert isinstance(open_source(pipe), StreamSource)


def test_bad_input_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(errors.BadInput, match="no such file"):
        open_source(tmp_path / "nope")
    with pytest.raises(errors.BadInput, match="directory"):
        open_source(tmp_path)
    with pytest.raises(errors.BadInput, match="binary"):
        open_source(io.StringIO("text"))
    with pytest.raises(errors.BadInput, match="size"):
        open_source(b"x", size=-1)
    with pytest.raises(errors.BadInput, match="cannot upload"):
        open_source(12)


def test_file_source_reads_ranges_from_many_threads_at_once(tmp_path):
    data = os.urandom(1 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    src = FileSource(path)
    errors_seen = []

    def reader(seed: int) -> None:
        for i in range(200):
            off = (seed * 7919 + i * 104729) % (len(data) - 1000)
            if src.read(off, 1000) != data[off : off + 1000]:
                errors_seen.append((seed, off))

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    src.close()
    assert not errors_seen


def test_identity_names_path_size_mtime_and_inode(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    ident = FileSource(path).identity()
    st = os.stat(path)
    assert ident == {"path": str(path.resolve()), "size": 3, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
    assert BytesSource(b"abc").identity() is None


def test_part_body_is_sized_counts_progress_and_streams_in_blocks():
    data = bytes(range(256)) * 10000
    seen = []
    body = PartBody(lambda pos, n: data[pos : pos + n], 100, 2_000_000, on_read=seen.append)
    assert len(body) == 2_000_000
    out = b"".join(iter(lambda: body.read(), b""))
    assert out == data[100:2_000_100]
    assert sum(seen) == 2_000_000
    assert max(seen) <= 1024 * 1024


def test_part_body_stops_when_cancelled():
    cancel = threading.Event()
    body = PartBody(lambda pos, n: b"x" * n, 0, 10, cancel=cancel)
    body.read(5)
    cancel.set()
    with pytest.raises(errors.Cancelled):
        body.read(5)


def test_a_file_body_names_its_regions_for_sendfile_with_the_same_checks_as_read(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 400)  # 102400 bytes
    seen, ended = [], []
    with FileSource(path) as src:
        body = PartBody(src.read, 1000, 50000, on_read=seen.append, file=src.file_region(),
                        on_end=lambda: ended.append(body.tell()))  # when the last region is handed out
        assert body.zero_copy and src.body(0, 1).zero_copy
        regions = []
        while True:
            region = body.next_region(20000)
            if region is None:
                break
            fd, offset, count = region
            assert os.pread(fd, count, offset) == path.read_bytes()[offset : offset + count]
            regions.append((offset, count))
            body.sent(count)
    assert regions == [(1000, 20000), (21000, 20000), (41000, 10000)]
    assert ended == [40000] and sum(seen) == 50000 and body.tell() == 50000


def test_a_file_region_stops_when_cancelled_and_checks_the_file_before_its_last_bytes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    cancel = threading.Event()
    with FileSource(path) as src:
        body = src.body(0, 100, cancel=cancel)
        body.next_region(40)
        body.sent(40)
        cancel.set()
        with pytest.raises(errors.Cancelled):
            body.next_region(40)
        grown = src.body(0, 100)
        with open(path, "ab") as f:
            f.write(b"more")
        with pytest.raises(errors.SourceChanged, match="changed"):
            grown.next_region(1000)  # the last region: the file is looked at first


def test_sources_without_a_file_have_no_region(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert not BytesSource(b"abc").body(0, 3).zero_copy
    assert not FileObjectSource(io.BytesIO(b"abc")).body(0, 3).zero_copy
    with open(path, "rb") as f:
        f.read(1)
        region = FileObjectSource(f).body(0, 2)  # from its position: the file's offset 1
        assert region.zero_copy and region.next_region(10)[1:] == (1, 2)


def test_a_file_that_changes_is_detected(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    src = FileSource(path)
    body = src.body(0, 100)
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(errors.SourceChanged, match="changed"):
        body.read(100)


def test_a_file_that_shrinks_is_detected(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    src = FileSource(path)
    os.truncate(path, 10)
    with pytest.raises(errors.SourceChanged):
        src.body(50, 50).read(50)


def test_file_object_is_uploaded_from_its_current_position(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as f:
        f.seek(4)
        src = open_source(f)
        assert src.size == 6
        assert src.read(0, 6) == b"456789"
        assert src.identity()["offset"] == 4
    bio = io.BytesIO(b"0123456789")
    bio.seek(2)
    src = open_source(bio, name="x.bin")
    assert (src.size, src.read(1, 3), src.identity()) == (8, b"345", None)


def test_stream_chunks_know_the_last_part_even_on_an_exact_boundary():
    for total in (0, 5, 10, 11, 30):
        src = StreamSource(io.BytesIO(b"z" * total))
        chunks = list(src.chunks(10))
        assert b"".join(c[1] for c in chunks) == b"z" * total
        assert [c[2] for c in chunks] == [False] * (len(chunks) - 1) + [True]
        assert src.size == total


def test_stream_with_a_wrong_announced_size_fails():
    src = StreamSource(io.BytesIO(b"z" * 5), size=6)
    with pytest.raises(errors.SourceChanged):
        list(src.chunks(10))


def test_a_stream_of_known_size_is_never_read_past_it():
    # A kept-alive socket (a WSGI server's raw request body): the peer stays
    # open, so a read past the announced bytes would block for good.
    for total in (0, 7, 10, 25):
        ours, peer = socket.socketpair()
        try:
            peer.sendall(b"q" * total + b"NEXT REQUEST")
            ours.settimeout(2)  # a read past the end would fail the test, not hang it
            src = StreamSource(ours.makefile("rb"), size=total)
            chunks = list(src.chunks(10))
            assert b"".join(c[1] for c in chunks) == b"q" * total
            assert chunks[-1][2] and not any(c[2] for c in chunks[:-1])
        finally:
            ours.close()
            peer.close()


@pytest.mark.parametrize("extra", [1, 10, 4096])
def test_a_stream_longer_than_its_announced_size_fails_before_its_last_part(extra):
    src = StreamSource(io.BytesIO(b"z" * (25 + extra)), size=25)
    seen = []
    with pytest.raises(errors.SourceChanged, match="longer"):
        for _offset, _data, last in src.chunks(10):
            seen.append(last)
    assert seen == [False, False], "the last part must not be handed out"


def test_a_pipe_longer_than_its_announced_size_fails():
    r, w = os.pipe()
    os.write(w, b"p" * 12)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        src = StreamSource(pipe, size=10)
        with pytest.raises(errors.SourceChanged):
            list(src.chunks(4))


@pytest.mark.parametrize("kind", ["path", "bytes", "fileobj"])
def test_a_seekable_source_with_a_wrong_size_is_bad_input(tmp_path, kind):
    path = tmp_path / "f.bin"
    path.write_bytes(b"s" * 100)
    obj = {"path": lambda: path, "bytes": lambda: b"s" * 100, "fileobj": lambda: open(path, "rb")}[kind]()
    try:
        with pytest.raises(errors.BadInput, match="size=99"):
            open_source(obj, size=99)
        assert open_source(obj if kind != "fileobj" else obj, size=100).size == 100
    finally:
        if kind == "fileobj":
            obj.close()
