"""The community backend end to end against the emulator (a real HTTP server on
127.0.0.1 whose fidelity test_community_sdk.py checks with the official SDK):
the backend contract, then dedup, resume, expired URLs, faults and auth."""

from __future__ import annotations

import threading

import pytest

import upclient
from upclient import errors
from upclient.testing.community import CommunityServer

from .conftest import KiB, MiB
from .contract import BackendContract, HookedFileSource

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
