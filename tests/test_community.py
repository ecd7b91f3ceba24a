"""The community backend end to end against the emulator (a real HTTP server on
127.0.0.1 whose fidelity test_community_sdk.py checks with the official SDK):
the backend contract, then dedup, resume, expired URLs, faults and auth."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time

import pytest

import upclient
from upclient import errors
from upclient.testing import CommunityServer

from .conftest import KiB, MiB, sha256_bytes
from .contract import BackendContract, HookedFileSource, resume_points

TOKEN = "t0k3n-for-tests"
PART = 256 * KiB  # the contract's part size; the emulator is told to accept it


@pytest.fixture(scope="module")
def community(tmp_path_factory):
    with CommunityServer(tmp_path_factory.mktemp("community"), tokens={TOKEN}, api_keys={"k3y"},
                         min_part_size=64 * KiB) as server:
        yield server


def make_client(server, **kw):
    kw.setdefault("store", None)
    kw.setdefault("token", TOKEN)
    return upclient.Client("community+" + server.url, **kw)


class TestCommunityContract(BackendContract):
    __test__ = True

    @pytest.fixture
    def client_factory(self, community):
        return lambda **settings: make_client(community, **settings)

    @pytest.fixture
    def stored_sha256(self, community):
        return lambda result: community.stored_sha256(result.id)


def test_the_same_bytes_twice_are_an_instant_upload(community, make_file):
    path, digest = make_file(3 * MiB, name="movie.mp4")
    with make_client(community, part_size=1 * MiB) as client:
        first = client.put(path, category="video", metadata={"title": "x"})
        before = community.part_puts
        second = client.put(path.read_bytes(), key="copy.mp4", category="video")
    assert not first.deduplicated and second.deduplicated
    assert second.sent_bytes == 0 and community.part_puts == before
    assert second.id == first.id and community.stored_sha256(first.id) == digest
    assert first.file.oss_url and first.file.cdn_url and first.file.file_key.endswith(".mp4")


def test_resume_sends_only_the_parts_the_server_lacks(community, make_file, tmp_path):
    path, digest = make_file(4 * MiB + 3, name="big.bin")
    store = upclient.FileStore(tmp_path / "store")
    cancel = threading.Event()
    with make_client(community, part_size=512 * KiB, concurrency=2, store=store) as client:
        with HookedFileSource(path, lambda off: off >= 2 * MiB and cancel.set()) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, cancel=cancel)
        held = len(community.uploaded_parts(store.load(
            [k for k in store.keys() if not k.startswith("digest-")][0])["id"]))
        assert held >= 2
        result = client.put(path)
    assert result.resumed
    assert result.sent_bytes <= 4 * MiB + 3 - held * 512 * KiB
    assert community.stored_sha256(result.id) == digest


def test_the_md5_of_a_file_is_read_once(community, make_file, tmp_path):
    path, _ = make_file(2 * MiB, name="a.bin")
    store = upclient.FileStore(tmp_path / "store")
    with make_client(community, store=store) as client:
        seen = []
        first = client.md5(path, on_progress=seen.append)
        assert seen and seen[-1].bytes_done == 2 * MiB
        assert client.md5(path, on_progress=lambda p: pytest.fail("read again")) == first
        client.put(path, on_md5_progress=lambda p: pytest.fail("read again"))


def test_expired_part_urls_are_renewed_by_a_new_init(community, make_file):
    path, digest = make_file(2 * MiB, name="e.bin")
    seen_expiry = []

    def hook(offset):
        if offset >= 512 * KiB and not seen_expiry:
            seen_expiry.append(offset)
            community.expire_urls()

    with make_client(community, part_size=256 * KiB, concurrency=1) as client:
        with HookedFileSource(path, hook) as src:
            result = client.put(src)
    assert seen_expiry
    assert community.stored_sha256(result.id) == digest


def test_a_part_failing_once_is_sent_again(community, make_file):
    path, digest = make_file(1 * MiB, name="f.bin")
    community.fail_part(2, status=500, times=1)
    with make_client(community, part_size=256 * KiB, retry=upclient.RetryPolicy(attempts=3, backoff=0)) as client:
        result = client.put(path)
    assert community.stored_sha256(result.id) == digest
    assert any(status == 500 for _, n, status in community.part_log if n == 2)


def test_a_lost_complete_answer_is_retried(community, make_file):
    path, digest = make_file(1 * MiB, name="c.bin")
    community.fail_complete(status=500, times=1)
    with make_client(community, part_size=256 * KiB, retry=upclient.RetryPolicy(attempts=3, backoff=0)) as client:
        result = client.put(path)
    assert community.stored_sha256(result.id) == digest


def test_auth_failures_and_api_keys(community, make_file):
    path, digest = make_file(300 * KiB, name="k.bin")
    with make_client(community, token="wrong") as client:
        with pytest.raises(errors.AuthError) as info:
            client.put(path)
        assert info.value.status == 401
    with make_client(community, token=None, api_key="k3y", user_id="svc-1") as client:
        result = client.put(path)
        assert result.file.raw.get("user_id") == "svc-1"
    assert community.stored_sha256(result.id) == digest


def test_info_by_key_list_delete_and_abort(community, make_file):
    path, _ = make_file(100 * KiB, name="doc.pdf")
    with make_client(community) as client:
        r = client.put(path, category="document")
        assert client.info_by_key(r.key).id == r.id
        assert client.info_by_key(r.file.cdn_url).id == r.id
        ids = [f.id for f in client.iter_files(category="document", page_size=1)]
        assert r.id in ids
        client.delete(r.id)
        assert not client.exists(r.id)


def test_resume_after_sigkill_sends_only_what_the_server_lacks(make_file, tmp_path):
    import random
    import signal

    from upclient.testing.shaping import ShapingProxy

    from .test_kill_resume import CONCURRENCY, run_child, settle

    class BehindProxy(CommunityServer):
        """An emulator whose part URLs name the proxy in front of it, as a real API behind a gateway."""

        public = ""

        @property
        def url(self) -> str:
            return self.public or super().url

    part = 256 * KiB  # the kill test's part size
    size = 48 * part
    path, digest = make_file(size, name="killed.bin")
    kill_at = random.randint(size // 5, size * 3 // 5)
    # The API and the part PUTs go through one slow link, so the upload can be killed half way.
    with BehindProxy(tmp_path / "srv", tokens={TOKEN}, min_part_size=64 * KiB) as community, \
            ShapingProxy(community.url, delay=0.001, rate=6e6) as proxy:
        community.public = url = proxy.url_for(community.url).rstrip("/")
        url = "community+" + url
        first = run_child(url, path, tmp_path / "store", kill_at=kill_at, options={"token": TOKEN})
        assert not first["done"] and first["code"] == -signal.SIGKILL
        settle(proxy)
        records = [r for r in (upclient.FileStore(tmp_path / "store").load(k)
                               for k in upclient.FileStore(tmp_path / "store").keys()) if r and r.get("state")]
        (record,) = records
        held = sum(min(part, size - (n - 1) * part) for n in community.uploaded_parts(record["id"]))
        second = run_child(url, path, tmp_path / "store", options={"token": TOKEN})
    assert second["done"] and second["resumed"], second
    assert size - held <= second["sent"] <= size - held + CONCURRENCY * part, (held, second)
    assert community.stored_sha256(second["id"]) == digest


def test_unicode_file_names_and_metadata(community, make_file):
    path, digest = make_file(70 * KiB, name="фото-照片 ✓.jpg")
    with make_client(community) as client:
        r = client.put(path, metadata={"título": "ñandú 🐦"})
        info = client.info(r.id)
    assert community.stored_sha256(r.id) == digest
    assert r.key.endswith(".jpg") and info.metadata.get("título") == "ñandú 🐦"


def test_a_business_error_is_typed_and_keeps_its_code_and_is_not_retried(community, make_file):
    path, _ = make_file(100 * KiB, name="biz.bin")
    community.fail_request("init", status=200, code=2001, times=1)
    before = community.request_count("init")
    with make_client(community, retry=upclient.RetryPolicy(attempts=3, backoff=0)) as client:
        with pytest.raises(errors.RequestRejected) as info:
            client.put(path)
    assert info.value.code == 2001 and info.value.backend == "community"
    assert community.request_count("init") == before + 1


def test_a_file_changed_between_hashing_and_sending_is_caught(community, make_file):
    path, _ = make_file(1 * MiB, name="moving.bin")
    with make_client(community, part_size=256 * KiB, concurrency=1) as client:
        client.md5(path)  # hashed (and remembered) while it was one file
        grown = {"done": False}

        def hook(offset):
            if offset >= 256 * KiB and not grown["done"]:
                grown["done"] = True
                with open(path, "ab") as f:
                    f.write(b"more")

        with HookedFileSource(path, hook) as src, pytest.raises(errors.SourceChanged):
            client.put(src)


# -- a re-run after a kill while complete was in flight; two clients at once ------------------


def confirmed_copies(server, md5):
    """The ids of the finished, undeleted files on ``server`` with this MD5."""
    objects = [server.file_object(i) for i in server.file_ids()]
    return [o["id"] for o in objects if o["status"] == "confirmed" and o["file_md5"] == md5 and not o["deleted_at"]]


def md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def test_a_rerun_after_a_lost_complete_answer_takes_the_stored_file(community, make_file, tmp_path):
    path, digest = make_file(1 * MiB + 5, name="lost.bin")
    store = upclient.FileStore(tmp_path / "store")
    community.fail_complete(status=0, commit=True)  # the file is finished, its answer never comes
    with make_client(community, part_size=256 * KiB, store=store, retry=upclient.RetryPolicy.never()) as client:
        with pytest.raises(errors.NetworkError):
            client.put(path)
    (key,) = resume_points(store)
    file_id = store.load(key)["id"]
    assert community.file_object(file_id)["status"] == "confirmed"
    inits, puts = community.request_count("init"), community.part_puts
    with make_client(community, part_size=256 * KiB, store=store) as client:
        result = client.put(path)
    assert result.id == file_id and result.resumed and not result.deduplicated and result.sent_bytes == 0
    assert community.request_count("init") == inits and community.part_puts == puts
    assert confirmed_copies(community, md5_of(path)) == [file_id]
    assert community.stored_sha256(file_id) == digest
    assert resume_points(store) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="holds the server's assembly on a named pipe")
def test_a_rerun_while_the_killed_complete_still_runs_makes_no_second_copy(make_file, tmp_path):
    """The run is stopped while the server is still joining the parts (its
    complete in flight); the re-run must not start a second upload of the file."""
    path, digest = make_file(1 * MiB, name="slow.bin")
    data = path.read_bytes()
    store = upclient.FileStore(tmp_path / "store")
    cancel = threading.Event()
    held = {}

    with CommunityServer(tmp_path / "srv", tokens={TOKEN}, min_part_size=64 * KiB) as server:

        def hold_part_one(offset):
            # Part 1 is stored by now (parts go one at a time): swap its file for a named
            # pipe, so the server's assembly waits on it until the test feeds it.
            if offset >= 2 * 256 * KiB and not held:
                (file_id,) = server.file_ids()
                held["path"] = server.part_path(file_id, 1)
                os.unlink(held["path"])
                os.mkfifo(held["path"])

        def feed_when(complete_count):
            wait_for(lambda: server.request_count("complete") >= complete_count, 20)
            with open(held["path"], "wb") as pipe:
                pipe.write(data[: 256 * KiB])

        threading.Thread(target=lambda: (wait_for(lambda: server.request_count("complete") >= 1, 20),
                                          time.sleep(0.1), cancel.set()), daemon=True).start()
        with make_client(server, part_size=256 * KiB, concurrency=1, store=store) as client:
            with HookedFileSource(path, hold_part_one) as src, pytest.raises(errors.Cancelled):
                client.put(src, cancel=cancel)  # stopped while the server assembles
        assert held and resume_points(store)
        feeder = threading.Thread(target=feed_when, args=(2,), daemon=True)
        feeder.start()
        with make_client(server, part_size=256 * KiB, store=store) as client:
            result = client.put(path)
        feeder.join(20)
        assert confirmed_copies(server, md5_of(path)) == [result.id]
        assert server.stored_sha256(result.id) == digest and result.resumed
    assert resume_points(store) == []


def test_two_clients_on_one_store_directory_putting_the_same_file_both_get_it(community, make_file, tmp_path):
    """A holds the resume point; B (no resume point: A has it) finishes the upload
    while A is still sending: A's last part finds the upload closed, and takes the file."""
    path, digest = make_file(2 * MiB, name="twice.bin")
    a_started, b_done = threading.Event(), threading.Event()
    results, failures = {}, []

    def hook(offset):
        if offset >= 256 * KiB:
            a_started.set()
        if offset >= 2 * MiB - 256 * KiB:  # A's last part waits for B to finish
            b_done.wait(30)

    def run_a():
        try:
            with make_client(community, part_size=256 * KiB, concurrency=1,
                             store=upclient.FileStore(tmp_path / "store")) as client, \
                    HookedFileSource(path, hook) as src:
                results["a"] = client.put(src)
        except BaseException as exc:  # reported below
            failures.append(exc)

    a = threading.Thread(target=run_a)
    a.start()
    assert a_started.wait(30)
    try:
        with make_client(community, part_size=256 * KiB, store=upclient.FileStore(tmp_path / "store")) as client:
            results["b"] = client.put(path)
    finally:
        b_done.set()
        a.join(30)
    assert not failures, failures
    assert results["a"].id == results["b"].id
    assert confirmed_copies(community, md5_of(path)) == [results["a"].id]
    assert community.stored_sha256(results["a"].id) == digest
    assert resume_points(upclient.FileStore(tmp_path / "store")) == []



@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="holds the server's assembly on a named pipe")
def test_a_part_refused_because_another_client_is_completing_gets_the_outcome_of_that_complete(
        make_file, tmp_path):
    """B completes the upload A is still sending; A's last part meets the assembly
    (409), asks complete for its outcome, and takes the one file."""
    path, digest = make_file(1 * MiB, name="busy.bin")
    data = path.read_bytes()
    results, failures = {}, []

    with CommunityServer(tmp_path / "srv", tokens={TOKEN}, min_part_size=64 * KiB) as server:

        def run_b():
            try:
                with make_client(server, part_size=256 * KiB) as client:
                    results["b"] = client.put(path)
            except BaseException as exc:  # reported below
                failures.append(exc)

        b = threading.Thread(target=run_b)

        def hook(offset):
            if offset >= 3 * 256 * KiB and not b.is_alive() and "b" not in results:
                (file_id,) = server.file_ids()
                held = server.part_path(file_id, 1)
                os.unlink(held)
                os.mkfifo(held)  # B's assembly waits on it
                b.start()
                wait_for(lambda: server.request_count("complete") >= 1, 20)
                time.sleep(0.2)  # B's complete reaches the pipe

                def feed():
                    wait_for(lambda: server.request_count("complete") >= 2, 20)  # A asks too
                    with open(held, "wb") as pipe:
                        pipe.write(data[: 256 * KiB])

                threading.Thread(target=feed, daemon=True).start()

        with make_client(server, part_size=256 * KiB, concurrency=1) as client, HookedFileSource(path, hook) as src:
            results["a"] = client.put(src)
        b.join(30)
        assert not failures, failures
        assert results["a"].id == results["b"].id
        assert any(status == 409 for _, n, status in server.part_log if n == 4)
        assert confirmed_copies(server, md5_of(path)) == [results["a"].id]
        assert server.stored_sha256(results["a"].id) == digest


# -- streams ---------------------------------------------------------------------------------


class Pipe(io.RawIOBase):
    """A non-seekable stream of ``data``, handed out in reads of at most 64 KiB."""

    def __init__(self, data):
        self._data = memoryview(data)
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return False

    def read(self, n=-1):
        n = len(self._data) - self._pos if n is None or n < 0 else min(n, 64 * KiB)
        block = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(block)
        return block


@pytest.mark.parametrize("known_size", [True, False])
def test_a_stream_is_hashed_as_it_is_read_and_then_uploaded(community, known_size):
    data = os.urandom(1 * MiB + 17)
    size = len(data) if known_size else None
    with make_client(community, part_size=256 * KiB) as client:
        seen = []
        first = client.put(Pipe(data), key="stream.bin", size=size, on_progress=seen.append)
        puts = community.part_puts
        again = client.put(Pipe(data), key="again.bin", size=size)
    assert not first.deduplicated and first.size == len(data)
    assert community.stored_sha256(first.id) == sha256_bytes(data)
    assert seen[-1].bytes_done == len(data) and seen[-1].total == len(data)
    assert again.deduplicated and again.id == first.id and again.sent_bytes == 0 and community.part_puts == puts


def test_a_stream_with_a_wrong_md5_is_bad_input_before_init(community):
    data = os.urandom(300 * KiB)
    inits = community.request_count("init")
    with make_client(community, part_size=256 * KiB) as client, pytest.raises(errors.BadInput, match="md5"):
        client.put(Pipe(data), key="s.bin", size=len(data), md5="0" * 32)
    assert community.request_count("init") == inits


def test_an_empty_stream_is_an_empty_file(community):
    with make_client(community) as client:
        result = client.put(Pipe(b""), key="empty.txt", size=0)
    assert result.size == 0 and community.stored_sha256(result.id) == sha256_bytes(b"")
