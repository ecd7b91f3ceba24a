"""Request shapes and error mapping of the community backend, with ``responses``.

End-to-end behaviour against the emulator (and the official SDK against the
same emulator) is in test_community.py and test_community_sdk.py.
"""

from __future__ import annotations

import hashlib
import json

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
