"""Request shapes and error mapping of the community backend, with ``responses``.

End-to-end behaviour against the emulator (and the official SDK against the
same emulator) is in test_community.py and test_community_sdk.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile

import pytest
import responses

import upclient
from upclient import errors
from upclient.digest import DigestCache, file_digest
from upclient.source import FileSource

BASE = "http://api.test"
INIT = BASE + "/api/community/file/upload/init"
COMPLETE = BASE + "/api/community/file/upload/complete"
DATA = b"0123456789" * 3  # 30 bytes: parts of 10


def ok(data):
    return {"code": 0, "message": "ok", "data": data}


def file_obj(**kw):
    d = {"id": "f1", "file_key": "community/generals/2026/11/f1.bin", "file_size": 30,
         "file_md5": hashlib.md5(DATA).hexdigest(), "status": "confirmed",
         "oss_url": BASE + "/oss/f1.bin", "cdn_url": BASE + "/cdn/f1.bin"}
    d.update(kw)
    return d


def parts(uploaded=()):
    return [{"part_number": n, "start": (n - 1) * 10, "end": n * 10, "size": 10,
             "upload_url": f"http://store.test/p{n}?sig=s{n}", "uploaded": n in uploaded, "etag": None}
            for n in (1, 2, 3)]


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(DATA)
    return path


def client(**kw):
    kw.setdefault("store", None)
    kw.setdefault("retry", upclient.RetryPolicy(attempts=3, backoff=0))
    kw.setdefault("token", "t0k")
    return upclient.Client("community+" + BASE, part_size=10, **kw)


def test_init_parts_and_complete_carry_what_the_protocol_asks(src):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, INIT, json=ok({"file_id": "f1", "status": "pending", "parts": parts()}))
        for n in (1, 2, 3):
            rsps.add(responses.PUT, f"http://store.test/p{n}", status=200, headers={"ETag": f'"e{n}"'})
        rsps.add(responses.POST, COMPLETE, json=ok(file_obj()))
        r = client().put(src, category="video", metadata={"title": "x"})
        init = rsps.calls[0].request
        body = json.loads(init.body)
        assert body["file_ext"] == "mp4" and body["file_size"] == 30 and body["category"] == "video"
        assert body["file_md5"] == hashlib.md5(DATA).hexdigest() and body["metadata"] == {"title": "x"}
        assert init.headers["Authorization"] == "Bearer t0k"
        puts = sorted(rsps.calls[1:4], key=lambda c: c.request.url)
        for n, call in enumerate(puts, 1):
            assert "Content-Type" not in call.request.headers, "a Content-Type breaks the store's signature"
            assert "Authorization" not in call.request.headers, "the token must not go to the object store"
            assert call.request.url == f"http://store.test/p{n}?sig=s{n}"  # exactly as signed
        assert json.loads(rsps.calls[4].request.body) == {"file_id": "f1"}
        assert (r.id, r.deduplicated, r.key) == ("f1", False, file_obj()["file_key"])
        assert r.file.cdn_url == BASE + "/cdn/f1.bin"


def test_dedup_sends_no_bytes(src):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, INIT, json=ok({"status": "completed", "file": file_obj()}))
        r = client().put(src)
        assert len(rsps.calls) == 1
        assert r.deduplicated and r.sent_bytes == 0 and r.file.id == "f1"


def test_server_side_resume_skips_uploaded_parts(src):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, INIT, json=ok({"file_id": "f1", "status": "resuming", "parts": parts((1, 3))}))
        rsps.add(responses.PUT, "http://store.test/p2", status=200)
        rsps.add(responses.POST, COMPLETE, json=ok(file_obj()))
        r = client().put(src)
        assert [c.request.method for c in rsps.calls] == ["POST", "PUT", "POST"]
        assert r.resumed and r.sent_bytes == 10


def test_a_refused_part_url_gets_fresh_urls_from_a_new_init(src):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, INIT, json=ok({"file_id": "f1", "status": "pending", "parts": parts()}))
        rsps.add(responses.PUT, "http://store.test/p1", status=403, body="Request has expired")
        fresh = parts()
        for p in fresh:
            p["upload_url"] = p["upload_url"].replace("store.test/", "store.test/new-")
        rsps.add(responses.POST, INIT, json=ok({"file_id": "f1", "status": "resuming", "parts": fresh}))
        for n in (1, 2, 3):
            rsps.add(responses.PUT, f"http://store.test/new-p{n}", status=200)
        rsps.add(responses.POST, COMPLETE, json=ok(file_obj()))
        c = client(concurrency=1)
        c.put(src)
        urls = [call.request.url for call in rsps.calls if call.request.method == "PUT"]
        assert urls[0].startswith("http://store.test/p1") and any("new-p1" in u for u in urls)


@pytest.mark.parametrize(
    "status,body,error,code",
    [
        (401, {"code": 401, "message": "token expired"}, errors.AuthError, 401),
        (200, {"code": 2001, "message": "quota exceeded"}, errors.RequestRejected, 2001),
        (400, {"code": 400, "message": "bad md5"}, errors.RequestRejected, 400),
        (404, {"code": 404, "message": "no such file"}, errors.NotFound, 404),
    ],
)
def test_the_envelope_maps_into_the_shared_errors(src, status, body, error, code):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, INIT, json=body, status=status)
        with pytest.raises(error) as info:
            client().put(src)
        assert info.value.code == code and body["message"] in str(info.value)


def test_tokens_are_asked_for_on_every_request_and_api_keys_carry_the_user(src):
    tokens = iter(["a", "Bearer b", "c"])
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, BASE + "/api/community/file/f1", json=ok(file_obj()))
        rsps.add(responses.GET, BASE + "/api/community/file/f1", json=ok(file_obj()))
        c = client(token=lambda: next(tokens))
        c.info("f1")
        c.info("f1")
        assert [x.request.headers["Authorization"] for x in rsps.calls] == ["Bearer a", "Bearer b"]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, INIT, json=ok({"status": "completed", "file": file_obj()}))
        client(token=None, api_key="k", user_id="u1", org_id="o1").put(src)
        req = rsps.calls[0].request
        assert req.headers["X-API-Key"] == "k" and "Authorization" not in req.headers
        assert json.loads(req.body)["user_id"] == "u1" and json.loads(req.body)["org_id"] == "o1"


def test_bad_input_fails_before_any_request(tmp_path, src):
    with responses.RequestsMock():
        with pytest.raises(errors.BadInput, match="category"):
            client().put(src, category="music")
        noext = tmp_path / "README"
        noext.write_bytes(b"x")
        with pytest.raises(errors.BadInput, match="extension"):
            client().put(noext)
    with pytest.raises(errors.BadInput, match="token"):
        upclient.Client("community+" + BASE, store=None)
    with pytest.raises(errors.BadInput, match="user_id"):
        upclient.Client("community+" + BASE, api_key="k", store=None)


def test_list_follows_every_page():
    with responses.RequestsMock() as rsps:
        for page, ids in ((1, ["a", "b"]), (2, ["c"])):
            rsps.add(responses.GET, BASE + "/api/community/file",
                     json=ok({"list": [file_obj(id=i) for i in ids], "pagination": {"total": 3}}),
                     match=[responses.matchers.query_param_matcher(
                         {"page": str(page), "page_size": "2", "category": "video"})])
        ids = [f.id for f in client().iter_files(category="video", page_size=2)]
        assert ids == ["a", "b", "c"]


def test_md5_is_read_once_and_remembered_while_the_file_is_unchanged(src, tmp_path):
    store = upclient.FileStore(tmp_path / "store")
    cache = DigestCache(store)
    expected = hashlib.md5(DATA).hexdigest()
    with FileSource(src) as s:
        assert file_digest(s) == expected
    seen = []
    with FileSource(src) as s:
        assert cache.digest(s, on_progress=seen.append) == expected
    assert seen and seen[-1].bytes_done == 30
    with FileSource(src) as s:
        assert DigestCache(upclient.FileStore(tmp_path / "store")).digest(
            s, on_progress=lambda p: pytest.fail("read again")) == expected
    src.write_bytes(DATA[::-1])
    with FileSource(src) as s:
        assert cache.digest(s) == hashlib.md5(DATA[::-1]).hexdigest()


# -- the protocol without sockets -------------------------------------------------------------

from upclient.backends.community import protocol  # noqa: E402
from upclient.transfer import Restart, Resync  # noqa: E402


def answer(status, body=b"", **headers):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return protocol.Answer(status, headers, body, "PUT", "http://store.test/p1?Signature=secret")


def xml(code, message):
    return f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def test_part_answers_are_hint_values_not_tagged_exceptions():
    assert protocol.read_part(answer(200, ETag='"e1"'), "f1") == '"e1"'
    refused = protocol.read_part(answer(403, xml("AccessDenied", "Request has expired.")), "f1")
    assert type(refused) is Resync and "AccessDenied" in refused.reason and refused.upload_id == "f1"
    gone = protocol.read_part(answer(404, xml("NoSuchUpload", "gone")), "f1")
    assert isinstance(gone, Restart) and gone.upload_id == "f1"
    busy = protocol.read_part(answer(409, xml("OperationConflict", "being completed")), "f1")
    assert isinstance(busy, protocol.BeingCompleted)
    with pytest.raises(errors.ServiceError) as info:
        protocol.read_part(answer(503, xml("SlowDown", "busy"), **{"Retry-After": "2"}), "f1")
    assert (info.value.status, info.value.code, info.value.retry_after) == (503, "SlowDown", 2.0)
    assert "secret" not in str(info.value)


def test_complete_answers_say_what_is_missing_or_that_the_upload_is_gone():
    missing = protocol.read_complete(answer(200, {"code": 1011, "message": "2 of 3 parts missing",
                                                  "data": {"missing_parts": [2, 3]}}))
    assert missing == protocol.PartsMissing((2, 3))
    assert isinstance(protocol.read_complete(answer(404, {"code": 404, "message": "no such file"})), Restart)
    assert isinstance(protocol.read_complete(answer(200, {"code": 1013, "message": "failed"})), Restart)
    done = protocol.read_complete(answer(200, ok(file_obj())))
    assert done.id == "f1" and done.holds(hashlib.md5(DATA).hexdigest(), 30)
    with pytest.raises(errors.RequestRejected) as info:
        protocol.read_complete(answer(200, {"code": 1012, "message": "MD5 mismatch"}))
    assert info.value.code == 1012


def test_init_answers_are_a_layout_or_the_file_itself():
    layout = protocol.read_init(answer(200, ok({"file_id": "f1", "status": "resuming", "parts": parts((1,))})))
    assert layout.file_id == "f1" and [p.uploaded for p in layout.parts] == [True, False, False]
    dedup = protocol.read_init(answer(200, ok({"status": "completed", "file": file_obj()})))
    assert isinstance(dedup, protocol.Deduplicated) and dedup.file.id == "f1"
    with pytest.raises(errors.ServiceError, match="file_id"):
        protocol.read_init(answer(200, b"<html>a proxy's page</html>"))


# -- what a session does, and when ------------------------------------------------------------

INFO = BASE + "/api/community/file/f1"


def test_opening_an_upload_sends_nothing_until_start(src):
    from upclient.source import open_source

    c = client()
    with responses.RequestsMock() as rsps, open_source(src) as source:
        session = c.backend.open_upload(source, key=None, metadata={}, options={}, state={"file_id": "f1"})
        assert len(rsps.calls) == 0
        rsps.add(responses.GET, INFO, json=ok(file_obj()))
        session.start()
        assert [call.request.method for call in rsps.calls] == ["GET"]
        assert session.pending_parts() == [] and session.finish().id == "f1"


def stored_record(tmp_path, src, state):
    """A FileStore holding a resume point for ``src`` (as a killed run left it)."""
    from upclient.resume import ResumePoint
    from upclient.source import FileSource

    store = upclient.FileStore(tmp_path / "store")
    c = client(store=store)
    with FileSource(src) as source:
        point = ResumePoint(store, "community", c.backend.destination(None, {}), source.identity(), source.name)

        class Session:
            upload_id = "f1"
            expires = None

            def state(self):
                return state

        point.save(Session())
    return store


def test_a_rerun_whose_parts_were_all_sent_completes_again_without_init(src, tmp_path):
    store = stored_record(tmp_path, src, {"file_id": "f1", "parts": 3, "sent": 3})
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, INFO, json=ok(file_obj(status="uploading")))
        rsps.add(responses.POST, COMPLETE, json=ok(file_obj()))
        r = client(store=store).put(src)
        assert [(c.request.method, c.request.url) for c in rsps.calls] == [("GET", INFO), ("POST", COMPLETE)]
    assert r.id == "f1" and r.resumed and r.sent_bytes == 0 and not r.deduplicated
    assert [k for k in store.keys() if not k.startswith("digest-")] == []


def test_a_rerun_with_parts_left_resumes_by_init_and_records_no_secrets(src, tmp_path):
    store = stored_record(tmp_path, src, {"file_id": "f1", "parts": 3, "sent": 1})
    saved = []
    real_save = store.save
    store.save = lambda key, record: (saved.append(record), real_save(key, record))  # type: ignore[method-assign]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, INFO, json=ok(file_obj(status="uploading")))
        rsps.add(responses.POST, INIT, json=ok({"file_id": "f1", "status": "resuming", "parts": parts((1,))}))
        for n in (2, 3):
            rsps.add(responses.PUT, f"http://store.test/p{n}", status=200)
        rsps.add(responses.POST, COMPLETE, json=ok(file_obj()))
        r = client(store=store, concurrency=1).put(src)
        assert [c.request.method for c in rsps.calls] == ["GET", "POST", "PUT", "PUT", "POST"]
    assert r.resumed and r.sent_bytes == 20
    states = [rec["state"] for rec in saved if "state" in rec]
    assert states[-1] == {"file_id": "f1", "parts": 3, "sent": 3}
    assert "sig=" not in json.dumps(saved) and "upload_url" not in json.dumps(saved)


def test_a_stored_upload_that_is_gone_starts_afresh(src, tmp_path):
    store = stored_record(tmp_path, src, {"file_id": "f1", "parts": 3, "sent": 3})
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, INFO, status=404, json={"code": 404, "message": "file f1 not found"})
        rsps.add(responses.POST, INIT, json=ok({"file_id": "f2", "status": "pending", "parts": parts()}))
        for n in (1, 2, 3):
            rsps.add(responses.PUT, f"http://store.test/p{n}", status=200)
        rsps.add(responses.POST, COMPLETE, json=ok(file_obj(id="f2")))
        r = client(store=store).put(src)
        assert json.loads(rsps.calls[-1].request.body) == {"file_id": "f2"}
    assert r.id == "f2" and r.sent_bytes == 30


class Stream(io.RawIOBase):
    """A non-seekable stream of DATA."""

    def __init__(self):
        self.inner = io.BytesIO(DATA)

    def readable(self):
        return True

    def read(self, n=-1):
        return self.inner.read(n)


def test_a_stream_is_read_and_hashed_before_init_and_sent_from_the_spool():
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, INIT, json=ok({"file_id": "f1", "status": "pending", "parts": parts()}))
        for n in (1, 2, 3):
            rsps.add(responses.PUT, f"http://store.test/p{n}", status=200)
        rsps.add(responses.POST, COMPLETE, json=ok(file_obj()))
        r = client().put(Stream(), key="clip.mp4", size=len(DATA))
        body = json.loads(rsps.calls[0].request.body)
        assert (body["file_md5"], body["file_size"]) == (hashlib.md5(DATA).hexdigest(), 30)
        sent = {c.request.url.split("?")[0]: bytes(c.request.body.read()) if hasattr(c.request.body, "read")
                else bytes(c.request.body) for c in rsps.calls[1:4]}
    assert b"".join(sent[f"http://store.test/p{n}"] for n in (1, 2, 3)) == DATA
    assert r.id == "f1" and r.sent_bytes == 30


def test_extensions_the_api_refuses_are_bad_input_before_any_request(tmp_path):
    odd = tmp_path / "x.tar-gz"
    odd.write_bytes(b"x")
    with responses.RequestsMock():
        with pytest.raises(errors.BadInput, match="extension"):
            client().put(odd)
        with pytest.raises(errors.BadInput, match="md5"):
            client().put(b"xyz", key="a.bin", md5="not-hex")


def test_a_stream_that_cannot_be_spooled_fails_clearly_before_any_request(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    with responses.RequestsMock():
        with pytest.raises(errors.UpClientError, match="TMPDIR") as info:
            client().put(Stream(), key="clip.mp4")
    assert not isinstance(info.value, errors.TransportError)


def test_a_part_layout_s_repr_hides_the_presigned_urls():
    from upclient.backends.community import protocol

    body = json.dumps(ok({"file_id": "f1", "status": "pending", "parts": parts()})).encode()
    layout = protocol.read_init(protocol.Answer(200, {}, body, "POST", INIT))
    assert layout.parts[0].url == "http://store.test/p1?sig=s1"  # kept whole: it is sent as signed
    assert "sig=" not in repr(layout) and "sig=" not in repr(layout.parts[0])


def test_a_user_and_password_in_the_url_is_bad_input_that_does_not_show_it():
    # HTTP Basic would replace the bearer token; and the password would ride in every URL
    with pytest.raises(errors.BadInput, match="token=") as info:
        upclient.Client("community+http://user:S3CRET-pw@api.test", token="t0k", store=None)
    assert "S3CRET" not in str(info.value)
