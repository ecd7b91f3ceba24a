"""tus features end to end against real servers: streams of unknown length,
expiration, termination, stored uploads that vanished, resuming an upload
another client started (tuspy), and faults injected by a proxy."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

import upclient
from upclient import errors
from upclient.testing.faultproxy import FaultProxy
from upclient.testing.servers import ResumableUploadServer, TusNodeServer

from .contract import HookedFileSource
from .conftest import KiB, sha256_bytes

PART = 256 * KiB


def tus_client(server_url, **kw):
    kw.setdefault("store", None)
    kw.setdefault("part_size", PART)
    return upclient.Client("tus+" + server_url, **kw)


def interrupted_upload(client, path, at):
    """Start uploading ``path`` with ``client`` and cancel it once the source
    was read up to offset ``at`` (reads go in blocks of up to 1 MiB: leave at
    least one block after ``at``); return the one resume record left in the
    client's store, as stored (also when its expiry has passed)."""
    cancel = threading.Event()
    with HookedFileSource(path, lambda off: off >= at and cancel.set()) as src:
        with pytest.raises(errors.Cancelled):
            client.put(src, cancel=cancel)
    (key,) = list(client.store.keys())
    return client.store.get(key)


@pytest.fixture(params=["node", "rus"])
def server(request):
    return request.getfixturevalue(f"{request.param}_server")


class Pipe(io.RawIOBase):
    """A non-seekable stream fed by a thread, like a pipe from another program."""

    def __init__(self, data: bytes) -> None:
        r, w = os.pipe()
        self._r = os.fdopen(r, "rb", buffering=0)

        def feed() -> None:
            with os.fdopen(w, "wb") as f:
                for i in range(0, len(data), 65536):
                    f.write(data[i : i + 65536])

        threading.Thread(target=feed, daemon=True).start()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b) -> int:
        return self._r.readinto(b)

    def close(self) -> None:
        self._r.close()
        super().close()


@pytest.mark.parametrize("size", [0, 1000, 3 * PART, 3 * PART + 7])
def test_a_stream_of_unknown_length_uses_deferred_length(server, size):
    data = os.urandom(size)
    with tus_client(server.url) as client:
        result = client.put(Pipe(data), key="stream.bin")
    assert result.size == size
    assert server.stored_sha256(result.id) == sha256_bytes(data)
    with tus_client(server.url) as client:
        info = client.info(result.id)
    assert (info.size, info.complete, info.metadata["filename"]) == (size, True, "stream.bin")


def test_info_of_an_unfinished_upload_shows_its_offset(server, make_file):
    path, _ = make_file(24 * PART)
    with tus_client(server.url, store=upclient.MemoryStore(), concat=False, concurrency=1) as client:
        record = interrupted_upload(client, path, at=3 * PART)
        info = client.info(record["id"])
        assert not info.complete
        assert info.size == 24 * PART
        assert 0 < info.offset < 24 * PART


def test_abort_terminates_the_upload_and_forgets_its_resume_point(server, make_file):
    path, _ = make_file(24 * PART)
    store = upclient.MemoryStore()
    with tus_client(server.url, store=store, concat=False, concurrency=1) as client:
        upload = interrupted_upload(client, path, at=3 * PART)["id"]
        client.abort(upload)
        assert list(store.keys()) == []
        assert not client.exists(upload)
        client.abort(upload)  # aborting what is gone is not an error


def test_a_stored_upload_that_vanished_starts_afresh(server, make_file, store):
    path, digest = make_file(24 * PART)
    with tus_client(server.url, store=store, concat=False, concurrency=1) as client:
        record = interrupted_upload(client, path, at=3 * PART)
        client.delete(record["id"])  # e.g. the server cleaned it up
        result = client.put(path)
    assert not result.resumed
    assert result.sent_bytes == 24 * PART
    assert server.stored_sha256(result.id) == digest


def test_an_expired_upload_starts_afresh(tmp_path, make_file, store):
    if TusNodeServer.unavailable_reason():
        pytest.skip("@tus/server is not installed")
    path, digest = make_file(24 * PART)
    with TusNodeServer(tmp_path / "srv", expiration=1.5) as server:
        with tus_client(server.url, store=store, concurrency=1) as client:
            record = interrupted_upload(client, path, at=3 * PART)
            assert record["expires"] and record["expires"] > time.time() - 5
            time.sleep(2.0)
            result = client.put(path)
        assert not result.resumed
        assert server.stored_sha256(result.id) == digest


def test_resume_an_upload_that_tuspy_started(server, make_file):
    from tusclient import client as tusclient

    path, digest = make_file(6 * PART + 11)
    uploader = tusclient.TusClient(server.url).uploader(
        str(path), chunk_size=PART, metadata={"filename": "from-tuspy.bin"}
    )
    uploader.upload(stop_at=2 * PART)
    assert uploader.offset == 2 * PART
    with tus_client(server.url) as client:
        result = client.put(path, upload_url=uploader.url)
    assert result.resumed
    assert result.id == uploader.url
    assert result.sent_bytes == 4 * PART + 11
    assert server.stored_sha256(result.id) == digest


def test_tuspy_finishes_an_upload_that_upclient_started(server, make_file):
    from tusclient import client as tusclient

    path, digest = make_file(24 * PART)
    with tus_client(server.url, store=upclient.MemoryStore(), concat=False, concurrency=1) as client:
        url = interrupted_upload(client, path, at=2 * PART)["id"]
    uploader = tusclient.TusClient(server.url).uploader(str(path), url=url, chunk_size=PART)
    assert 0 < uploader.offset < 24 * PART
    uploader.upload()
    assert server.stored_sha256(url) == digest


# -- faults, through a proxy that misbehaves on purpose ----------------------------


@pytest.fixture
def proxied(server):
    with FaultProxy(server.url) as proxy:
        yield server, proxy, proxy.url_for(server.url)


def test_connection_reset_mid_body_is_resumed_with_correct_bytes(proxied, make_file):
    server, proxy, url = proxied
    path, digest = make_file(4 * PART)
    proxy.reset_after(PART // 2, method="PATCH", times=2)
    proxy.reset_after(PART // 2, method="POST", times=1)
    retry = upclient.RetryPolicy(attempts=5, backoff=0.01)
    with tus_client(url, retry=retry, concat=False) as client:
        result = client.put(path)
    assert proxy.faults_fired.get("reset", 0) >= 2
    assert server.stored_sha256(result.id) == digest


def test_503_with_retry_after_is_waited_for(proxied, make_file):
    server, proxy, url = proxied
    path, digest = make_file(2 * PART)
    proxy.respond(503, {"Retry-After": "1"}, method="POST")
    started = time.monotonic()
    with tus_client(url, retry=upclient.RetryPolicy(attempts=3, backoff=0)) as client:
        result = client.put(path)
    assert time.monotonic() - started >= 0.9
    assert server.stored_sha256(result.id) == digest


def test_a_stalled_response_times_out_and_is_retried(proxied, make_file):
    server, proxy, url = proxied
    path, digest = make_file(3 * PART)
    proxy.stall(3, method="PATCH", times=None)
    with tus_client(url, read_timeout=0.5, retry=upclient.RetryPolicy(attempts=3, backoff=0), concat=False) as client:
        result = client.put(path)
    assert server.stored_sha256(result.id) == digest
    # every PATCH arrived but its answer did not: HEAD showed the part was
    # there, so nothing was sent twice
    assert result.sent_bytes == 3 * PART
    assert proxy.faults_fired.get("stall", 0) >= 1


def test_when_retries_run_out_the_error_is_typed(proxied, make_file):
    server, proxy, url = proxied
    path, _ = make_file(3 * PART)
    proxy.stall(3, method=None, times=None)
    with tus_client(url, read_timeout=0.3, retry=upclient.RetryPolicy(attempts=2, backoff=0), concat=False) as client:
        with pytest.raises(errors.Timeout) as info:
            client.put(path)
    assert (info.value.backend, info.value.retryable) == ("tus", True)
    proxy.clear_faults()
    proxy.respond(500, {}, method="POST", times=None, body="kaputt")
    with tus_client(url, retry=upclient.RetryPolicy(attempts=2, backoff=0)) as client:
        with pytest.raises(errors.ServiceError, match="kaputt") as info:
            client.put(path)
    assert info.value.status == 500


def test_a_closed_port_is_a_network_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tus_client(f"http://127.0.0.1:{port}/files/", retry=upclient.RetryPolicy.never()) as client:
        with pytest.raises(errors.NetworkError):
            client.put(b"x")


def test_sixteen_threads_upload_many_small_files_through_put_many(rus_server, make_file):
    files = [make_file(1000 + i) for i in range(40)]
    with tus_client(rus_server.url, max_files=16) as client:
        outcomes = client.put_many([p for p, _ in files])
    assert all(o.ok for o in outcomes)
    for outcome, (_, digest) in zip(outcomes, files):
        assert rus_server.stored_sha256(outcome.result.id) == digest


@pytest.mark.parametrize("concat", [True, False], ids=["parallel", "serial"])
def test_abort_by_path_gives_up_the_interrupted_upload_of_that_file(rus_server, make_file, concat):
    path, _ = make_file(24 * PART)
    store = upclient.MemoryStore()
    with tus_client(rus_server.url, store=store, concat=concat, concurrency=2) as client:
        state = interrupted_upload(client, path, at=3 * PART)["state"]
        urls = [p["url"] for p in state["partials"].values()] if concat else [state["url"]]
        assert urls
        assert client.abort(path) == 1
        assert list(store.keys()) == []
        assert not any(client.exists(u) for u in urls)
        assert client.abort(path) == 0  # nothing left to give up


# -- a resume record whose upload URL can no longer be reached --------------------


def _dead_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("concat", [False, True], ids=["serial", "parallel"])
def test_a_record_pointing_where_nothing_listens_starts_afresh_with_a_warning(server, make_file, store, caplog,
                                                                            concat):
    # e.g. the server moved, or its Location named a host that is gone: every
    # re-run used to fail with NetworkError, for ever
    path, digest = make_file(24 * PART)
    retry = upclient.RetryPolicy(attempts=3, backoff=0)
    elsewhere = f"http://127.0.0.1:{_dead_port()}/files/"

    def moved(url):
        return elsewhere + url.rstrip("/").rsplit("/", 1)[-1]

    with tus_client(server.url, store=store, concat=concat, concurrency=1, retry=retry) as client:
        record = interrupted_upload(client, path, at=3 * PART)
        (key,) = list(store.keys())
        state = record["state"]
        if state["mode"] == "serial":
            state["url"] = record["id"] = moved(state["url"])
        else:
            assert concat and state["partials"]
            for partial in state["partials"].values():
                partial["url"] = moved(partial["url"])
        store.save(key, record)
        caplog.set_level("WARNING", logger="upclient")
        result = client.put(path)
    assert not result.resumed
    assert not result.id.startswith(elsewhere)
    assert server.stored_sha256(result.id) == digest
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name.startswith("upclient.tus")]
    assert any(elsewhere in r.getMessage() and "new upload" in r.getMessage() for r in warnings), warnings
    assert list(store.keys()) == []  # done: the stale record is gone too


def test_a_stored_upload_the_server_never_answers_for_starts_afresh_after_the_retries(make_file, store, caplog):
    # same host and port as the endpoint, which answers, but every HEAD of the
    # stored upload breaks: after the retries, a new upload
    path, digest = make_file(24 * PART)
    with ResumableUploadServer() as server, FaultProxy(server.url) as proxy:
        url = proxy.url_for(server.url)
        retry = upclient.RetryPolicy(attempts=3, backoff=0)
        with tus_client(url, store=store, concat=False, concurrency=1, retry=retry) as client:
            record = interrupted_upload(client, path, at=3 * PART)
            proxy.reset_after(0, method="HEAD", times=None)
            caplog.set_level("WARNING", logger="upclient")
            result = client.put(path)
        assert not result.resumed
        assert result.id != record["id"]
        assert server.stored_sha256(result.id) == digest
        assert proxy.faults_fired.get("reset", 0) == 3
    assert any(r.name.startswith("upclient.tus") and "new upload" in r.getMessage() for r in caplog.records)


def test_a_server_that_refuses_one_large_patch_gets_part_sized_ones(make_file, caplog):
    path, digest = make_file(6 * PART + 5)
    with ResumableUploadServer(max_chunk_size=2 * PART) as server:
        with tus_client(server.url, concat=False, checksum=False) as client:
            caplog.set_level("INFO", logger="upclient")
            result = client.put(path)
        assert server.stored_sha256(result.id) == digest
    assert any("413" in r.getMessage() or "refused" in r.getMessage() for r in caplog.records)
