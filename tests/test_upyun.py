"""The UPYUN backend end to end against the emulator (``upclient.testing.upyun``),
byte-exact on the server side: the shared contract, multipart in parallel and
in order, faults, auth failures, a skewed clock, awkward keys, FORM uploads
with policies and callbacks, the other verbs, remote signing, and the CLI."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

import upclient
from upclient import cli, errors
from upclient.backends.upyun import signing
from upclient.source import FileSource
from upclient.testing import UpyunServer

from .conftest import MiB, sha256_bytes
from .contract import BackendContract, HookedFileSource, resume_points

PASSWORD = "emulator-pa55"


@pytest.fixture
def later(monkeypatch):
    """later(server, seconds): time passes for the server and for the client alike."""
    shift = [0.0]
    from upclient.backends.upyun import backend

    monkeypatch.setattr(backend, "http_date", lambda: signing.http_date(time.time() + shift[0]))

    def advance(server, seconds):
        shift[0] += seconds
        server.advance(seconds)

    return advance


@pytest.fixture
def server(tmp_path):
    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password=PASSWORD) as srv:
        yield srv


def make_client(server, **kw):
    kw.setdefault("store", None)
    kw.setdefault("password", PASSWORD)
    kw.setdefault("part_size", MiB)
    kw.setdefault("retry", upclient.RetryPolicy(attempts=4, backoff=0.01))
    for name in ("endpoint", "purge_endpoint", "process_endpoint"):
        kw.setdefault(name, server.endpoint)
    return upclient.Client("upyun://op@svc", **kw)


class TestUpyunContract(BackendContract):
    __test__ = True
    part = MiB

    @pytest.fixture
    def client_factory(self, server):
        return lambda **settings: make_client(server, **settings)

    @pytest.fixture
    def stored_sha256(self, server):
        return lambda result: server.stored_sha256(result.key)


# -- uploads ----------------------------------------------------------------------------


def test_small_put_carries_headers_metadata_and_checksum(server, make_file):
    path, digest = make_file(1000, name="local.png")
    with make_client(server) as client:
        result = client.put(path, key="a/b/photo.png", headers={"x-gmkerl-rotate": "90"},
                            metadata={"owner": "me"}, checksum=True)
        info = client.info("a/b/photo.png")
    assert server.stored_sha256("a/b/photo.png") == digest
    assert result.key == "a/b/photo.png" and result.size == 1000
    assert info.size == 1000 and info.metadata == {"owner": "me"} and info.content_type == "image/png"
    assert info.extra["md5"] == hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("serial", [False, True], ids=["parallel", "serial"])
def test_multipart_both_ways_is_byte_exact(server, make_file, serial):
    path, digest = make_file(5 * MiB + 7)
    with make_client(server, concurrency=3) as client:
        result = client.put(path, key="big/file.iso", serial=serial)
    assert server.stored_sha256("big/file.iso") == digest
    assert result.extra["uuid"]
    assert sorted(server.part_receipts(result.extra["uuid"]).items()) == [(i, 1) for i in range(6)]


def test_a_part_failing_once_is_sent_again_and_only_it(server, make_file):
    path, digest = make_file(4 * MiB)
    server.fail("part", status=503, part_id=2, times=1)
    with make_client(server) as client:
        result = client.put(path, key="f.bin")
    assert server.stored_sha256("f.bin") == digest
    tries = [(part, status) for uuid, part, status, _ in server.part_log if uuid == result.extra["uuid"]]
    assert sorted(tries) == [(0, 204), (1, 204), (2, 204), (2, 503), (3, 204)]


def test_rate_limited_put_waits_and_goes_again(server, make_file):
    path, digest = make_file(10)
    server.fail("put", status=429, retry_after=0.2, times=1)
    with make_client(server) as client:
        started = time.monotonic()
        client.put(path, key="rl.bin")
    assert time.monotonic() - started >= 0.2
    assert server.stored_sha256("rl.bin") == digest


def test_wrong_password_is_an_auth_error_at_once(server, make_file):
    path, _ = make_file(10)
    with make_client(server, password="wrong") as client:
        with pytest.raises(errors.AuthError) as info:
            client.put(path, key="x.bin")
    assert info.value.code == 40100005 and info.value.status == 401 and info.value.request_id
    assert not server.exists("x.bin")


def test_a_clock_31_minutes_off_is_refused_with_date_offset_error(server, make_file):
    path, _ = make_file(10)
    server.advance(31 * 60)
    with make_client(server) as client:
        with pytest.raises(errors.AuthError) as info:
            client.put(path, key="x.bin")
    assert info.value.code == 40100002


@pytest.mark.parametrize("key", ["目录/照片 一.png", "with space/and+plus & more.txt", "a%20b/100%.bin"])
def test_unicode_and_space_keys_round_trip(server, make_file, key):
    path, digest = make_file(MiB + 3)
    with make_client(server) as client:
        client.put(path, key=key)
        assert sha256_bytes(client.get(key)) == digest
        folder = key.rsplit("/", 1)[0] + "/"
        assert [e.id for e in client.iter(folder)] == [key]
    assert server.stored_sha256(key) == digest


def test_dot_dot_keys_never_reach_the_server(server, make_file):
    path, _ = make_file(10)
    with make_client(server) as client:
        with pytest.raises(errors.BadInput):
            client.put(path, key="a/../../etc/passwd")
    assert server.request_count() == 0


def test_an_upload_expired_on_the_server_restarts_cleanly(server, make_file, store, later):
    size = 6 * MiB
    path, digest = make_file(size)
    cancel = threading.Event()
    with make_client(server, store=store, concurrency=1) as client:
        with HookedFileSource(path, lambda off: cancel.set() if off >= 3 * MiB else None) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, key="exp.bin", cancel=cancel)
        assert resume_points(store)
        later(server, 25 * 3600)  # the server forgets unfinished uploads after 24 h
        result = client.put(path, key="exp.bin")
    assert not result.resumed and result.sent_bytes == size
    assert server.stored_sha256("exp.bin") == digest


def test_an_upload_forgotten_midway_restarts_under_a_new_uuid(server, make_file):
    size = 6 * MiB
    path, digest = make_file(size)
    server.fail("part", status=400, code=40011058, msg="x-upyun-multi-uuid not found", part_id=3)
    with make_client(server, concurrency=1) as client:
        result = client.put(path, key="mid.bin")
    assert result.extra["restarts"] == 1
    assert server.stored_sha256("mid.bin") == digest
    assert server.part_receipts(result.extra["uuid"]) == {i: 1 for i in range(6)}  # all again, once each


def test_opening_a_multipart_session_sends_nothing_until_start(server, make_file):
    path, _ = make_file(3 * MiB)
    stored = {"key": "o.bin", "uuid": "forgotten", "size": 3 * MiB, "part_size": MiB, "serial": False,
              "done": [0], "initiated": time.time()}
    with make_client(server) as client, FileSource(path) as src:
        def open_upload(state=None, **options):
            return client.backend.open_upload(src, key="o.bin", metadata={}, options=options, state=state)

        fresh, resumed, adopted = open_upload(), open_upload(stored), open_upload(uuid="nobody-began-it")
        assert server.request_count() == 0  # constructors decide; the engine's start() talks
        fresh.start()
        assert server.request_count("initiate") == 1 and fresh.upload_id
        resumed.start()  # the stored upload is unknown: asked about, then begun afresh
        assert server.request_count("query") == 1 and server.request_count("initiate") == 2
        assert not resumed.resumed and resumed.pending_parts() == fresh.pending_parts()
        with pytest.raises(errors.UploadExpired):
            adopted.start()


def forget_part(server, part_id, route="part"):
    server.fail(route, status=400, code=40011058, msg="x-upyun-multi-uuid not found",
                **({"part_id": part_id} if route == "part" else {}))


@pytest.mark.parametrize("serial", [False, True], ids=["parallel", "serial"])
def test_parts_a_forgotten_upload_had_go_again_through_the_engine(server, make_file, serial):
    size = 6 * MiB
    path, digest = make_file(size)
    forget_part(server, 3)
    seen = []
    with make_client(server, concurrency=1) as client:
        result = client.put(path, key="gaps.bin", serial=serial, on_progress=seen.append)
    assert server.stored_sha256("gaps.bin") == digest and result.extra["restarts"] == 1
    assert server.part_receipts(result.extra["uuid"]) == {i: 1 for i in range(6)}
    # the engine read (and counted) the resent parts: no uncounted side channel
    assert result.sent_bytes >= size + 3 * MiB
    assert (seen[-1].bytes_done, seen[-1].parts_done) == (size, 6)
    assert max(p.bytes_done for p in seen) == size
    if serial:  # a serial upload's parts reach the new upload in order
        parts = [part for uuid, part, status, _ in server.part_log if uuid == result.extra["uuid"]]
        assert parts == sorted(parts)


def test_parts_in_flight_that_find_an_upload_forgotten_restart_it_once(server, make_file):
    size = 8 * MiB
    path, digest = make_file(size)
    server.fail("part", status=400, code=40011058, msg="x-upyun-multi-uuid not found", times=3)
    with make_client(server, concurrency=4) as client:
        result = client.put(path, key="many.bin")
    assert server.stored_sha256("many.bin") == digest
    forgotten = {uuid for uuid, _, status, _ in server.part_log if status == 400}
    # one restart per forgotten upload, however many parts in flight learnt of it
    assert result.extra["restarts"] == len(forgotten) == server.request_count("initiate") - 1
    assert server.part_receipts(result.extra["uuid"]) == {i: 1 for i in range(8)}


def test_an_upload_forgotten_just_before_complete_is_sent_again_whole(server, make_file):
    size = 4 * MiB + 5
    path, digest = make_file(size)
    forget_part(server, None, route="complete")
    seen = []
    with make_client(server, concurrency=2) as client:
        result = client.put(path, key="late.bin", on_progress=seen.append)
    assert server.stored_sha256("late.bin") == digest and result.extra["restarts"] == 1
    assert server.part_receipts(result.extra["uuid"]) == {i: 1 for i in range(5)}
    assert seen[-1].bytes_done == size and result.sent_bytes == 2 * size


def test_a_cancel_while_the_gaps_go_stops_them_and_keeps_the_new_upload(server, make_file, store):
    size = 6 * MiB
    path, digest = make_file(size)
    forget_part(server, 3)
    cancel = threading.Event()
    reads = []

    def hook(offset):
        reads.append(offset)
        if reads.count(MiB) == 2:  # part 1 read again: the gaps are going
            cancel.set()

    with make_client(server, store=store, concurrency=1) as client:
        with HookedFileSource(path, hook) as src, pytest.raises(errors.Cancelled):
            client.put(src, key="cg.bin", cancel=cancel)
        (record,) = [store.load(k) for k in resume_points(store)]
        held = server.uploads()[record["state"]["uuid"]]["parts"]  # the new upload's
        assert 3 <= len(held) < 6 and sorted(record["state"]["done"]) == held
        result = client.put(path, key="cg.bin")
    assert result.resumed and server.stored_sha256("cg.bin") == digest
    assert result.sent_bytes == size - len(held) * MiB


def test_a_whole_file_md5_mismatch_is_not_retried(server, make_file):
    path, _ = make_file(3 * MiB)
    with make_client(server) as client, pytest.raises(errors.ChecksumMismatch) as info:
        client.put(path, key="md5.bin", file_md5="0" * 32)
    assert not info.value.retryable and "retryable" not in vars(info.value)
    assert server.request_count("complete") == 1 and not server.exists("md5.bin")


def test_resume_asks_the_server_and_sends_only_the_missing_parts(server, make_file, store):
    size = 8 * MiB
    path, digest = make_file(size)
    cancel = threading.Event()
    with make_client(server, store=store, concurrency=2) as client:
        with HookedFileSource(path, lambda off: cancel.set() if off >= 4 * MiB else None) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, key="r.bin", cancel=cancel)
        # the cancel shuts the parts in flight down at once: let the server finish with them first
        held = -1
        for _ in range(20):
            assert server.wait_idle()
            (upload,) = server.uploads().values()
            if len(upload["parts"]) == held:
                break
            held = len(upload["parts"])
            time.sleep(0.2)
        result = client.put(path, key="r.bin")
    assert result.resumed and result.sent_bytes == size - held * MiB
    assert server.stored_sha256("r.bin") == digest


def test_abort_drops_the_servers_unfinished_upload(server, make_file, store):
    path, _ = make_file(4 * MiB)
    cancel = threading.Event()
    with make_client(server, store=store, concurrency=1) as client:
        with HookedFileSource(path, lambda off: cancel.set() if off >= 2 * MiB else None) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, key="ab.bin", cancel=cancel)
        assert server.uploads()
        assert client.abort(path) == 1
    assert not server.uploads() and not resume_points(store)


# -- FORM -------------------------------------------------------------------------------


class _Callbacks(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def callback_server():
    handler = type("Handler", (_Callbacks,), {"received": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", handler.received
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_form_upload_with_policy_and_a_verified_callback(server, make_file, callback_server):
    url, received = callback_server
    path, digest = make_file(3000, name="x.jpg")
    with make_client(server) as client:
        result = client.put(path, key="form/{filename}-{filemd5}{.suffix}", form=True,
                            policy={"allow-file-type": "jpg,png", "notify-url": url + "/notify"})
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    assert result.key == f"form/x-{md5}.jpg"
    assert server.stored_sha256(result.key) == digest
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.02)
    ((notify_path, headers, body),) = received
    assert notify_path == "/notify"
    assert upclient.upyun.verify_callback(headers, "/notify", "op", PASSWORD, body=body)
    assert not upclient.upyun.verify_callback(headers, "/notify", "op", "not-it", body=body)
    assert unquote(body.decode()).count(result.key) == 1


def test_form_policy_refusals_are_typed(server, make_file):
    path, _ = make_file(10, name="x.exe")
    with make_client(server) as client:
        with pytest.raises(errors.ServerError) as info:
            client.put(path, key="x.exe", form=True, policy={"allow-file-type": "jpg"})
    assert info.value.code == 40300010
    with make_client(server) as client, pytest.raises(errors.BadInput, match="form=True"):
        client.put(path, key="x.exe", policy={"allow-file-type": "jpg"})


# -- the other verbs --------------------------------------------------------------------


def test_folders_listing_moves_copies_metadata_and_usage(server, make_file):
    with make_client(server) as client:
        client.mkdir("dir/")
        with pytest.raises(errors.Conflict):
            client.mkdir("dir")
        names = [f"f{i:03d}.txt" for i in range(25)]
        for n in names:
            client.put(n.encode(), key=f"dir/{n}")
        assert [e.id for e in client.iter("dir/", limit=7)] == [f"dir/{n}" for n in names]
        assert [e.id for e in client.iter("dir/", limit=10, order="desc")] == [f"dir/{n}" for n in names[::-1]]
        assert [e.extra["type"] for e in client.iter("")] == ["folder"]
        client.move("dir/f000.txt", "moved/a.txt")
        client.copy("moved/a.txt", "copied/a.txt")
        assert not client.exists("dir/f000.txt")
        assert client.get("moved/a.txt") == client.get("copied/a.txt") == b"f000.txt"
        client.set_metadata("moved/a.txt", {"k1": "v1", "k2": "v2"})
        client.set_metadata("moved/a.txt", {"k2": "w"}, mode="merge")
        assert client.info("moved/a.txt").metadata == {"k1": "v1", "k2": "w"}
        client.set_metadata("moved/a.txt", {"k1": ""}, mode="delete")
        assert client.info("moved/a.txt").metadata == {"k2": "w"}
        assert client.usage() == sum(len(n) for n in names) + len(b"f000.txt")
        with pytest.raises(errors.Conflict):
            client.delete("dir/")  # not empty
        client.delete("copied/a.txt")
        with pytest.raises(errors.NotFound):
            client.info("copied/a.txt")


def test_purge_and_processing_tasks(server, later):
    with make_client(server) as client:
        assert client.purge(["a.jpg", "http://elsewhere.example/b.jpg"]) == ["http://elsewhere.example/b.jpg"]
        assert "http://svc.b0.upaiyun.com/a.jpg" in server.purged
        ids = client.pretreat([{"type": "video", "avopts": "/s/240p"}], "/src.mp4", "http://127.0.0.1:1/n")
        assert len(ids) == 1 and len(ids[0]) == 32
        assert client.task_status(ids)[ids[0]] in range(0, 101)
        later(server, 3600)
        assert client.task_status(ids) == {ids[0]: 100}
        assert client.task_results(ids)[ids[0]]
        more = client.put_tasks([{"sources": ["/a"], "save_as": "/a.zip"}], "http://127.0.0.1:1/n", app="compress")
        assert len(more) == 1


def test_remote_signing_keeps_the_password_on_the_auth_server(server, make_file):
    asked = []

    class Signer(BaseHTTPRequestHandler):
        def do_POST(self):
            fields = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append(fields)
            header = signing.authorization(fields["username"], signing.password_md5(PASSWORD), fields["method"],
                                           fields["uri"], fields["date"], fields.get("policy"),
                                           fields.get("content_md5")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(header)))
            self.end_headers()
            self.wfile.write(header)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Signer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        path, digest = make_file(3 * MiB + 1)
        with make_client(server, password=None, auth_server=f"http://127.0.0.1:{httpd.server_port}/sign") as c:
            c.put(path, key="signed.bin")
            small = c.put(b"tiny", key="tiny.txt", form=True)
        assert server.stored_sha256("signed.bin") == digest and small.key == "tiny.txt"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert asked and all("password" not in f for f in asked)


# -- the CLI ----------------------------------------------------------------------------


def test_cli_verbs_with_an_upyun_url(server, make_file, tmp_path, capsys):
    path, digest = make_file(2 * MiB + 1, name="photo.png")
    common = ["--from", "upyun://op@svc", "--password", PASSWORD, "--endpoint", server.endpoint, "--json"]

    def run(*argv, to=False):
        args = list(argv) + (["--to"] + common[1:] if to else common)
        code = cli.main(args)
        out = capsys.readouterr().out
        return code, [json.loads(line) for line in out.splitlines() if line.strip()]

    code, out = run("put", str(path), "--key", "a/photo.png", "--part-size", "1M", "--no-resume", to=True)
    assert code == 0 and out[0]["ok"], out
    assert server.stored_sha256("a/photo.png") == digest
    assert run("mkdir", "b/")[0] == 0
    assert run("cp", "a/photo.png", "b/copy.png")[0] == 0
    assert run("mv", "b/copy.png", "b/moved.png")[0] == 0
    code, listing = run("ls", "b/")
    assert code == 0 and [e["id"] for e in listing] == ["b/moved.png"]
    code, info = run("info", "b/moved.png")
    assert code == 0 and info[0]["size"] == 2 * MiB + 1
    dest = tmp_path / "back.png"
    assert run("get", "b/moved.png", str(dest))[0] == 0
    assert sha256_bytes(dest.read_bytes()) == digest
    code, purged = run("purge", "b/moved.png", "--domain", "svc.b0.upaiyun.com")
    assert code == 0 and purged[0]["result"] == []
    assert run("rm", "b/moved.png")[0] == 0
    assert not server.exists("b/moved.png")
    assert PASSWORD not in json.dumps(out + listing + info + purged)
