"""Journaled puts: a finished upload's resume point is kept until the job settles it.

``Client.put(..., journaled=True)`` is what ``upclient sync`` and the
multi-file ``upclient put`` use: the resume point of a file (of any size) is
saved before its bytes go and kept, once the upload is finished, as a record
of the result, until :meth:`Client.settle`.  These tests run in-process
against real servers: @tus/server (``node_server``), the FastDFS emulator,
and a Redis for the fleet's store.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Dict

import pytest

import upclient
from upclient.errors import DeadlineExceeded, RequestRejected
from upclient.resume import is_finished
from upclient.testing import ShapingProxy
from upclient.testing.redis import upclient_redis_server  # noqa: F401  (the fixture)

from .test_sync_kill import complete_uploads, sha

KiB = 1024


def records(store: upclient.BaseStore) -> Dict[str, dict]:
    return {key: rec for key in store.keys() if (rec := store.load(key)) is not None and "backend" in rec}


def a_file(tmp_path: Path, size: int, name: str = "f.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture
def tus(node_server, tmp_path):
    with upclient.Client("tus+" + node_server.url, store=upclient.FileStore(tmp_path / "store"),
                         part_size=256 * KiB) as client:
        yield client


def test_a_finished_record_answers_a_second_journaled_put_until_settled(node_server, tus, tmp_path):
    path = a_file(tmp_path, 20 * KiB)
    first = tus.put(str(path), journaled=True)
    [record] = records(tus.store).values()
    assert is_finished(record) and record["finished"]["id"] == first.id
    again = tus.put(str(path), journaled=True)  # a re-run before the journal's commit
    assert (again.id, again.sent_bytes, again.resumed) == (first.id, 0, True)
    assert complete_uploads(node_server)[sha(path.read_bytes())] == 1
    tus.settle(again)
    assert records(tus.store) == {}


def test_a_plain_put_keeps_no_record(node_server, tus, tmp_path):
    for size in (20 * KiB, 600 * KiB):
        tus.put(str(a_file(tmp_path, size, f"{size}.bin")))
    assert records(tus.store) == {}


def test_a_finished_upload_gone_from_the_server_is_sent_again(node_server, tus, tmp_path):
    path = a_file(tmp_path, 20 * KiB)
    first = tus.put(str(path), journaled=True)
    tus.delete(first.id)
    again = tus.put(str(path), journaled=True)
    assert again.id != first.id and again.sent_bytes == path.stat().st_size
    assert node_server.stored_sha256(again.id) == sha(path.read_bytes())


def test_a_changed_file_is_not_answered_by_its_finished_record(node_server, tus, tmp_path):
    path = a_file(tmp_path, 20 * KiB)
    first = tus.put(str(path), journaled=True)
    path.write_bytes(os.urandom(21 * KiB))
    again = tus.put(str(path), journaled=True)
    assert again.id != first.id
    assert node_server.stored_sha256(again.id) == sha(path.read_bytes())


def test_abort_of_a_path_forgets_a_finished_record_and_keeps_the_upload(node_server, tus, tmp_path):
    path = a_file(tmp_path, 20 * KiB)
    first = tus.put(str(path), journaled=True)
    assert tus.abort(str(path)) == 0  # nothing unfinished was abandoned
    assert records(tus.store) == {}
    assert node_server.stored_sha256(first.id) == sha(path.read_bytes())


def test_a_small_journaled_file_is_named_before_its_bytes_go(node_server, tmp_path):
    """Cut off mid-file (a deadline on a slow link), the next put finishes the same upload."""
    path = a_file(tmp_path, 120 * KiB)
    store = upclient.FileStore(tmp_path / "store")
    with ShapingProxy(node_server.url, delay=0.001, rate=1e5) as slow:
        with upclient.Client("tus+" + slow.url_for(node_server.url), store=store, part_size=256 * KiB) as client:
            with pytest.raises(DeadlineExceeded):
                client.put(str(path), journaled=True, timeout=0.5)
            [record] = records(store).values()
            assert not is_finished(record) and record["state"]["url"]
            done = client.put(str(path), journaled=True)
    assert done.resumed and done.id == record["state"]["url"] and done.sent_bytes < path.stat().st_size
    assert complete_uploads(node_server)[sha(path.read_bytes())] == 1


def test_the_fleet_store_keeps_and_drops_finished_records(node_server, upclient_redis_server, tmp_path):  # noqa: F811
    store = upclient.RedisStore(upclient_redis_server.url, prefix="exactly-once:")
    path = a_file(tmp_path, 20 * KiB)
    try:
        with upclient.Client("tus+" + node_server.url, store=store, part_size=256 * KiB) as client:
            first = client.put(str(path), journaled=True)
            assert [is_finished(r) for r in records(store).values()] == [True]
            assert client.put(str(path), journaled=True).id == first.id
            client.settle(first)
            assert records(store) == {}
    finally:
        store.close()


# -- FastDFS ---------------------------------------------------------------------------


def fdfs_copies(server, data: bytes) -> int:
    return Counter(server.stored_sha256(fid) for fid in server.files())[sha(data)]


@pytest.mark.parametrize("size", [20 * KiB, 200 * KiB], ids=["one request", "appender, regenerated"])
def test_fdfs_a_finish_that_fails_after_the_file_is_named_is_completed_not_sent_again(
        upclient_fdfs_server, tmp_path, size):
    """The storage named the file (upload, or regenerate); setting its metadata failed.  The next
    put sets the metadata on that file instead of storing a second one."""
    from upclient.backends.fdfs.protocol import Cmd

    server = upclient_fdfs_server
    path = a_file(tmp_path, size)
    store = upclient.FileStore(tmp_path / "store")
    with server.client(store=store, part_size=64 * KiB) as client:
        server.fail(Cmd.SET_METADATA, status=22)
        with pytest.raises(RequestRejected):
            client.put(str(path), metadata={"k": "v"}, journaled=True)
        done = client.put(str(path), metadata={"k": "v"}, journaled=True)
    assert done.resumed and server.metadata(done.id) == {"k": "v"}
    assert not server.is_appender(done.id)
    assert fdfs_copies(server, path.read_bytes()) == 1


def test_fdfs_a_finished_record_answers_a_second_journaled_put(upclient_fdfs_server, tmp_path):
    server = upclient_fdfs_server
    store = upclient.FileStore(tmp_path / "store")
    with server.client(store=store, part_size=64 * KiB) as client:
        for size in (20 * KiB, 200 * KiB):
            path = a_file(tmp_path, size, f"{size}.bin")
            first = client.put(str(path), journaled=True)
            again = client.put(str(path), journaled=True)
            assert (again.id, again.sent_bytes) == (first.id, 0)
            assert fdfs_copies(server, path.read_bytes()) == 1
            client.settle(again)
    assert records(store) == {}


@pytest.mark.parametrize("kind", ["upyun", "community"])
def test_where_the_key_or_the_content_names_the_file_a_small_journaled_put_keeps_no_record(kind, request, tmp_path):
    """UPYUN keys replace and the community API finds a file by its MD5: sending a small file
    again makes no second copy, so a journaled put of one part saves no resume point for it
    (a sync of many small files would pay the record's writes for nothing)."""
    server = request.getfixturevalue(f"upclient_{kind}_server")
    path = a_file(tmp_path, 20 * KiB)
    store = upclient.MemoryStore()
    with server.client(store=store, part_size=256 * KiB) as client:
        first = client.put(str(path), key="f.bin", journaled=True)
        assert records(store) == {}
        again = client.put(str(path), key="f.bin", journaled=True)  # as a re-run after a kill would
        client.settle(again)
    assert server.stored_sha256(again.id) == sha(path.read_bytes())
    if kind == "upyun":
        assert first.id == again.id == "f.bin"


def test_where_the_key_names_the_file_a_large_journaled_put_still_keeps_its_finished_record(
    upclient_upyun_server, tmp_path
):
    """A file of many parts has its resume point anyway: kept as a finished record, a re-run
    before the journal's commit does not send its bytes again."""
    path = a_file(tmp_path, 2 * 1024 * KiB + 5)
    store = upclient.MemoryStore()
    with upclient_upyun_server.client(store=store, part_size=1024 * KiB) as client:
        first = client.put(str(path), key="big.bin", journaled=True)
        [record] = records(store).values()
        assert is_finished(record)
        again = client.put(str(path), key="big.bin", journaled=True)
        assert (again.id, again.sent_bytes) == (first.id, 0)
        client.settle(again)
        assert records(store) == {}
    assert upclient_upyun_server.stored_sha256("big.bin") == sha(path.read_bytes())
