"""RedisStore against a real redis-server on 127.0.0.1: what a fleet of workers shares.

Atomic records that expire, a lock per upload that one worker holds (renewed
while it runs, lapsed when it dies, let go only by its owner, and fencing
the record it guards), no secret stored, a clear error before any byte is
sent when Redis is out of reach, the digest cache shared, and an
interrupted upload resumed by another worker on every backend.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest

import upclient
from upclient import errors
from upclient.digest import DigestCache
from upclient.source import FileSource
from upclient.store import StoreUnreachable, UploadInProgress
from upclient.testing.redis import RedisServer, upclient_redis_server  # noqa: F401  (the users' fixture)

from .conftest import MiB
from .contract import HookedFileSource, resume_points

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    reason = RedisServer.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"redis-server is needed: {reason} (make test installs it)")
        pytest.skip(reason)
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A namespace of this test's own in the module's Redis."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def stores(redis_server: RedisServer, prefix: str) -> Iterator[List[upclient.RedisStore]]:
    """``stores.make(**options)``-like: a list that test code appends to via :func:`worker_store`."""
    made: List[upclient.RedisStore] = []
    yield made
    for store in made:
        store.close()


def worker_store(stores: List[upclient.RedisStore], redis_server: RedisServer, prefix: str,
                 **options) -> upclient.RedisStore:
    """A RedisStore as one worker of a fleet would open it (its own connections and locks)."""
    store = upclient.RedisStore(redis_server.url, prefix=prefix, **options)
    stores.append(store)
    return store


def raw_redis(redis_server: RedisServer):
    import redis

    return redis.Redis.from_url(redis_server.url)


def child(code: str, *args: str) -> "subprocess.Popen[str]":
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env)


def wait_for(condition, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds (an upper bound, never a measure)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- records ---------------------------------------------------------------------------


def test_records_round_trip_and_prefixes_keep_apart(stores, redis_server, prefix):
    store = worker_store(stores, redis_server, prefix)
    other = worker_store(stores, redis_server, prefix + "other:")
    assert store.load("k1") is None
    store.save("k1", {"state": {"url": "http://x/1"}, "identity": {"name": "a", "size": 3}})
    got = store.load("k1")
    assert got["state"] == {"url": "http://x/1"} and got["updated"] > 0
    got["state"]["url"] = "changed"  # a copy: changing it changes nothing stored
    assert store.load("k1")["state"] == {"url": "http://x/1"}
    assert list(store.keys()) == ["k1"] and list(other.keys()) == []
    assert other.load("k1") is None
    store.delete("k1")
    store.delete("k1")  # twice is fine
    assert store.load("k1") is None and list(store.keys()) == []


def test_every_record_expires_with_its_upload_or_when_stale(stores, redis_server, prefix):
    r = raw_redis(redis_server)
    store = worker_store(stores, redis_server, prefix, record_ttl=3600)
    store.save("stale", {"a": 1})
    assert 3500_000 < r.pttl(f"{prefix}rec:stale") <= 3600_000
    store.save("upload", {"expires": time.time() + 60})  # the server forgets the upload in a minute
    assert 0 < r.pttl(f"{prefix}rec:upload") <= 60_000
    store.set("short", {"a": 1}, ttl=0.2)
    wait_for(lambda: store.get("short") is None, what="a record past its ttl to go")
    forever = worker_store(stores, redis_server, prefix + "f:", record_ttl=None)
    forever.save("k", {"a": 1})
    assert r.pttl(f"{prefix}f:rec:k") == -1


def test_records_are_never_torn_between_processes(stores, redis_server, prefix):
    code = ("import sys, upclient\n"
            "s = upclient.RedisStore(sys.argv[1], prefix=sys.argv[2])\n"
            "for i in range(300): s.save('k', {'writer': sys.argv[3], 'i': i, 'pad': 'x' * 20000})\n")
    procs = [child(code, redis_server.url, prefix, w) for w in "ab"]
    r = raw_redis(redis_server)
    reads = 0
    while any(p.poll() is None for p in procs):
        raw = r.get(f"{prefix}rec:k")
        if raw:
            assert json.loads(raw)["pad"] == "x" * 20000  # never half a record
            reads += 1
    assert all(p.wait(30) == 0 for p in procs)
    assert reads > 0
    assert worker_store(stores, redis_server, prefix).load("k")["i"] == 299


def test_a_corrupt_record_is_ignored_and_removed(stores, redis_server, prefix, caplog):
    raw_redis(redis_server).set(f"{prefix}rec:k", b"{not json")
    store = worker_store(stores, redis_server, prefix)
    assert store.load("k") is None
    assert "corrupt" in caplog.text
    assert list(store.keys()) == []


# -- locks -----------------------------------------------------------------------------


HOLD = ("import sys, time, upclient\n"
        "s = upclient.RedisStore(sys.argv[1], prefix=sys.argv[2], lock_ttl=float(sys.argv[3]))\n"
        "with s.lock('k') as got:\n"
        "    print(got, flush=True)\n"
        "    time.sleep(600)\n")


def test_a_lock_is_held_by_one_worker_and_lapses_when_it_is_killed(stores, redis_server, prefix):
    holder = child(HOLD, redis_server.url, prefix, "1.5")
    try:
        assert holder.stdout.readline().strip() == "True"
        store = worker_store(stores, redis_server, prefix)
        for _ in range(3):  # held, and kept past its ttl while its holder lives
            with store.lock("k") as got:
                assert not got
            time.sleep(1.0)
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with store.lock("k") as got:
            assert not got, "the lock of a killed worker went at once, not after its ttl"
        assert 0 < store.lock_holder_ttl("k") <= 1.5

        def free() -> bool:
            with store.lock("k") as got:
                return got

        wait_for(free, what="the dead worker's lock to lapse")
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_lock_is_exclusive_between_threads_of_one_worker(stores, redis_server, prefix):
    store = worker_store(stores, redis_server, prefix)
    with store.lock("k") as first:
        with store.lock("k") as second:
            assert (first, second) == (True, False)
    with store.lock("k") as again:
        assert again
    assert raw_redis(redis_server).keys(f"{prefix}lock:*") == []  # let go, nothing left


def test_a_lock_that_lapsed_is_not_freed_by_its_first_holder(stores, redis_server, prefix):
    first = worker_store(stores, redis_server, prefix)
    second = worker_store(stores, redis_server, prefix)
    r = raw_redis(redis_server)
    claim = second.lock("k")
    with first.lock("k") as got:
        assert got
        r.delete(f"{prefix}lock:k")  # as if it lapsed (Redis out of the first's reach)
        assert claim.__enter__()
        token = r.get(f"{prefix}lock:k")
    try:  # the first let go of its lock on leaving the block: the second's is untouched
        assert token and r.get(f"{prefix}lock:k") == token
        with first.lock("k") as again:
            assert not again
    finally:
        claim.__exit__(None, None, None)
    assert r.get(f"{prefix}lock:k") is None


def test_a_worker_that_lost_its_lock_cannot_write_over_the_new_holders_record(stores, redis_server, prefix):
    first = worker_store(stores, redis_server, prefix)
    second = worker_store(stores, redis_server, prefix)
    with first.lock("k") as got:
        assert got
        first.save("k", {"by": "first"})
        raw_redis(redis_server).delete(f"{prefix}lock:k")
        with second.lock("k") as taken:
            assert taken
            second.save("k", {"by": "second"})
            with pytest.raises(UploadInProgress) as caught:
                first.save("k", {"by": "first", "later": True})
            assert caught.value.retryable
            first.delete("k")  # not an error, and not done: the record is the second's
            assert second.load("k")["by"] == "second"


# -- errors ----------------------------------------------------------------------------


def test_an_unreachable_redis_is_a_clear_error_without_its_password(tmp_path):
    from upclient.testing.servers import free_port

    url = f"redis://:Sup3r-s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnreachable) as caught:
        upclient.RedisStore(url, connect_timeout=2)
    exc = caught.value
    assert isinstance(exc, ConnectionError) and isinstance(exc, errors.UpClientError) and exc.retryable
    assert "cannot be reached" in str(exc) and "127.0.0.1" in str(exc)
    assert "Sup3r-s3cret" not in str(exc) and "Sup3r-s3cret" not in repr(exc)


def test_a_wrong_redis_password_is_an_auth_error(tmp_path):
    if RedisServer.unavailable_reason():
        pytest.skip(RedisServer.unavailable_reason())
    with RedisServer(tmp_path / "redis", args=["--requirepass", "right-pw"]) as server:
        url = server.url.replace("redis://", "redis://:wrong-pw@")
        with pytest.raises(errors.AuthError) as caught:
            upclient.RedisStore(url)
        assert not caught.value.retryable and "wrong-pw" not in str(caught.value)
        store = upclient.RedisStore(server.url.replace("redis://", "redis://:right-pw@"))
        store.save("k", {"a": 1})
        assert store.load("k")["a"] == 1 and "right-pw" not in repr(store)
        store.close()


def test_a_redis_gone_before_a_put_stops_it_before_any_byte_is_sent(tmp_path, make_file):
    from upclient.testing import UpyunServer

    path, _ = make_file(3 * MiB, "big.bin")
    with RedisServer(tmp_path / "redis") as redis_server, UpyunServer(tmp_path / "upyun") as upyun:
        store = upclient.RedisStore(redis_server.url, connect_timeout=2, socket_timeout=2)
        redis_server.stop()
        with upclient.Client("upyun://op@svc", password="pw", endpoint=upyun.endpoint, store=store,
                             part_size=1 * MiB) as client:
            with pytest.raises(StoreUnreachable):
                client.put(path)
        assert upyun.uploads() == {} and upyun.part_log == [] and not upyun.exists("big.bin")


# -- uploads through the store ---------------------------------------------------------


def test_no_secret_of_the_clients_reaches_redis(tmp_path, stores, redis_server, prefix, make_file):
    from upclient.testing import CommunityServer, UpyunServer

    path, _ = make_file(3 * MiB + 1, "big.bin")
    password, token = "Upyun-pw-0c7d1", "Community-token-9f2e"
    with UpyunServer(tmp_path / "upyun", password=password) as upyun, \
            CommunityServer(tmp_path / "community", tokens={token}, min_part_size=64 * 1024) as community:
        cancel = threading.Event()
        store = worker_store(stores, redis_server, prefix)
        clients = [upclient.Client("upyun://op@svc", password=password, endpoint=upyun.endpoint, store=store,
                                   part_size=1 * MiB, concurrency=1),
                   upclient.Client("community+" + community.url, token=token, store=store, part_size=1 * MiB,
                                   concurrency=1)]
        for client in clients:
            with client, HookedFileSource(path, lambda off: cancel.set() if off >= 2 * MiB else None) as src:
                cancel.clear()
                with pytest.raises(errors.Cancelled):
                    client.put(src, cancel=cancel)
    r = raw_redis(redis_server)
    dump = b"".join(k + (r.get(k) or b"") for k in r.scan_iter(match=f"{prefix}*"))
    assert len(resume_points(store)) == 2, "an interrupted upload per backend is recorded"
    assert password.encode() not in dump and token.encode() not in dump


def test_a_second_worker_sends_nothing_while_the_first_uploads(tmp_path, stores, redis_server, prefix, make_file):
    from upclient.testing import UpyunServer

    path, digest = make_file(4 * MiB, "big.bin")
    reached, go_on = threading.Event(), threading.Event()

    def hook(offset: int) -> None:
        if offset >= 2 * MiB:
            reached.set()
            go_on.wait(30)

    with UpyunServer(tmp_path / "upyun") as upyun:
        def client(store):
            return upclient.Client("upyun://op@svc", password="pw", endpoint=upyun.endpoint, store=store,
                                   part_size=1 * MiB, concurrency=1)

        first, second = (client(worker_store(stores, redis_server, prefix)) for _ in range(2))
        results = []
        with HookedFileSource(path, hook) as src:
            runner = threading.Thread(target=lambda: results.append(first.put(src)))
            runner.start()
            try:
                assert reached.wait(30)
                with pytest.raises(UploadInProgress) as caught:
                    second.put(path)
                assert caught.value.retryable and 0 < caught.value.retry_after <= 30
            finally:
                go_on.set()
                runner.join(60)
        first.close()
        second.close()
        assert results and results[0].size == 4 * MiB
        assert len({uuid for uuid, *_ in upyun.part_log}) == 1, "the second worker began an upload of its own"
        assert all(n == 1 for n in upyun.part_receipts().values()) and len(upyun.part_receipts()) == 4
        assert upyun.stored_sha256("big.bin") == digest


def test_a_worker_whose_lock_lapsed_stops_at_its_next_part(tmp_path, stores, redis_server, prefix, make_file):
    from upclient.testing import UpyunServer

    path, _ = make_file(6 * MiB, "big.bin")
    r = raw_redis(redis_server)
    thief = worker_store(stores, redis_server, prefix)
    stolen = []

    def hook(offset: int) -> None:
        if offset >= 2 * MiB and not stolen:  # the lock lapses, and another worker takes the upload
            (lock,) = r.keys(f"{prefix}lock:*")
            r.delete(lock)
            claim = thief.lock(lock.decode()[len(prefix) + len("lock:"):])
            stolen.append((claim, claim.__enter__()))

    with UpyunServer(tmp_path / "upyun") as upyun:
        with upclient.Client("upyun://op@svc", password="pw", endpoint=upyun.endpoint, part_size=1 * MiB,
                             concurrency=1, store=worker_store(stores, redis_server, prefix)) as client:
            with HookedFileSource(path, hook) as src, pytest.raises(UploadInProgress):
                client.put(src)
        assert stolen and stolen[0][1]
        assert len(upyun.part_log) <= 3, "the worker went on sending after it lost its lock"
        stolen[0][0].__exit__(None, None, None)


@pytest.fixture(params=["tus", "community", "upyun", "fdfs"])
def emulator(request: pytest.FixtureRequest):
    return request.getfixturevalue(f"upclient_{request.param}_server")


def test_another_worker_resumes_an_interrupted_upload(emulator, stores, redis_server, prefix, make_file):
    size = 6 * MiB + 5
    path, digest = make_file(size, "big.bin")
    cancel = threading.Event()
    hook = lambda offset: cancel.set() if offset >= 3 * MiB else None  # noqa: E731
    with emulator.client(store=worker_store(stores, redis_server, prefix), part_size=1 * MiB,
                         concurrency=1) as client:
        with HookedFileSource(path, hook) as src, pytest.raises(errors.Cancelled):
            client.put(src, cancel=cancel)
    store = worker_store(stores, redis_server, prefix)  # another worker, its own connection
    assert len(resume_points(store)) == 1
    assert raw_redis(redis_server).keys(f"{prefix}lock:*") == []  # the first let go of its claim
    with emulator.client(store=store, part_size=1 * MiB, concurrency=1) as client:
        result = client.put(path)
    assert result.resumed and result.sent_bytes <= size - 2 * MiB
    assert emulator.stored_sha256(result.id) == digest
    assert resume_points(store) == []


# -- the digest cache ------------------------------------------------------------------


class CountingSource(FileSource):
    """A file source that counts the bytes read from it."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.bytes_read = 0
        self._count_lock = threading.Lock()

    def read(self, offset: int, length: int) -> bytes:
        with self._count_lock:
            self.bytes_read += length
        return super().read(offset, length)


def test_a_files_md5_is_read_once_for_the_whole_fleet(tmp_path, stores, redis_server, prefix, make_file):
    """Two workers see one file at two mount points; the second reads only the identity's samples."""
    size = 24 * MiB
    path, _ = make_file(size, "big.bin")
    elsewhere = tmp_path / "mnt" / "big.bin"
    elsewhere.parent.mkdir()
    shutil.copy2(path, elsewhere)  # the same bytes, name and mtime, under another path
    caches = [DigestCache(worker_store(stores, redis_server, prefix), "content") for _ in range(2)]
    sources = [CountingSource(path), CountingSource(elsewhere)]
    answers = []
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        answers.append(caches[i].digest(_NoPread(sources[i]), "md5"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    import hashlib

    assert answers == [hashlib.md5(path.read_bytes()).hexdigest()] * 2
    read = sorted(src.bytes_read for src in sources)
    assert read[0] <= 3 * MiB, f"both workers read the whole file: {read}"
    assert size <= read[1] <= size + 3 * MiB
    for src in sources:
        src.close()


class _NoPread:
    """A source seen only through its public read(), so the bytes it reads are counted."""

    def __init__(self, source: FileSource) -> None:
        self._source = source
        self.name, self.size, self.seekable = source.name, source.size, True

    def identity(self):
        return self._source.identity()

    def read(self, offset: int, length: int) -> bytes:
        return self._source.read(offset, length)

    def check_unchanged(self) -> None:
        self._source.check_unchanged()


# -- packaging -------------------------------------------------------------------------


def test_import_upclient_needs_no_redis_py_and_the_store_comes_on_first_use():
    code = ("import sys, upclient\n"
            "assert 'redis' not in sys.modules and 'upclient.redis_store' not in sys.modules\n"
            "assert upclient.RedisStore.__module__ == 'upclient.redis_store' and 'redis' in sys.modules\n"
            "assert 'RedisStore' in upclient.__all__\n")
    proc = child(code)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_the_users_fixture_gives_a_running_redis(upclient_redis_server):  # noqa: F811
    store = upclient.RedisStore(upclient_redis_server.url)
    store.save("k", {"a": 1})
    assert store.load("k")["a"] == 1
    store.close()


def test_a_store_that_is_not_exclusive_lets_a_second_put_go_without_a_resume_point(
        tmp_path, stores, redis_server, prefix, make_file):
    from upclient.testing import UpyunServer

    path, digest = make_file(3 * MiB, "big.bin")
    store = worker_store(stores, redis_server, prefix, exclusive=False)
    with UpyunServer(tmp_path / "upyun") as upyun:
        with upclient.Client("upyun://op@svc", password="pw", endpoint=upyun.endpoint, store=store,
                             part_size=1 * MiB) as client:
            holder = worker_store(stores, redis_server, prefix)
            from upclient.resume import ResumePoint
            from upclient.source import open_source

            with open_source(path) as src:
                key = ResumePoint(store, "upyun", client.backend.destination(None, {}), src.identity(), "x").key
            with holder.lock(key) as got:
                assert got
                result = client.put(path)
        assert not result.resumed and upyun.stored_sha256("big.bin") == digest
    assert resume_points(store) == []


def test_a_store_on_a_given_redis_client_names_it_without_its_password(tmp_path):
    import redis

    if RedisServer.unavailable_reason():
        pytest.skip(RedisServer.unavailable_reason())
    with RedisServer(tmp_path / "redis", args=["--requirepass", "Sup3r-s3cret"]) as server:
        given = redis.Redis(host="127.0.0.1", port=server.port, password="Sup3r-s3cret")
        store = upclient.RedisStore(client=given)
        store.save("k", {"a": 1})
        assert store.load("k")["a"] == 1
        assert repr(store) == f"<RedisStore redis://127.0.0.1:{server.port}/0 prefix='upclient:'>"
        server.stop()
        with pytest.raises(StoreUnreachable) as caught:
            with store.lock("k"):
                pass
        assert "Sup3r-s3cret" not in str(caught.value)
