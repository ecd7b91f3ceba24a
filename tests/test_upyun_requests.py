"""Signatures, request shapes and error mapping of the UPYUN backend, with ``responses``.

End-to-end behaviour is in test_upyun.py (against the emulator) and
test_upyun_sdk.py (the official SDK against the same emulator).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time

import pytest
import responses

import upclient
from upclient import errors
from upclient.backends.upyun import signing

BASE = "http://127.0.0.1:9"
SECRET = "s3cr3t-pa55"


def client(**kw):
    kw.setdefault("store", None)
    kw.setdefault("retry", upclient.RetryPolicy(attempts=3, backoff=0))
    if "auth_server" not in kw and "password_md5" not in kw:
        kw.setdefault("password", SECRET)
    kw.setdefault("endpoint", "127.0.0.1:9")
    return upclient.Client("upyun://op@svc", **kw)


def check_signed(request, method, uri, *, password=SECRET, policy=None):
    """The request carries a valid UPYUN signature over ``uri``."""
    date = request.headers["Date"]
    assert abs(signing.parse_http_date(date) - time.time()) < 60
    expected = signing.authorization("op", signing.password_md5(password), method, uri, date, policy,
                                     request.headers.get("Content-MD5"))
    assert request.headers["Authorization"] == expected


# -- signatures -----------------------------------------------------------------------


def test_signature_matches_the_protocol_test_vectors():
    assert signing.signature(
        signing.password_md5("password123"), "PUT", "/upyun-temp/demo.jpg", "Wed, 09 Nov 2016 14:26:58 GMT",
        None, "7ac66c0f148de9519b8bd264312c4d64") == "YUaAZX+WNAcJdNGHS5SBlITME5A="
    assert signing.signature(
        hashlib.md5(b"password").hexdigest(), "POST", "/api/v1/echo", "Fri, 20 Jan 2017 08:46:20 GMT",
        None, "d36489794822f8d33fd28217d8a5bed4") == "W738BergX15B+jso8fSPzKd0/zQ="
    assert signing.password_md5("password123") == "482c811da5d5b4bc6d497ffa98491e38"


def test_optional_fields_are_left_out_with_their_ampersand():
    key = signing.password_md5("pw")
    base = signing.signature(key, "POST", "/svc/", "D")
    with_policy = signing.signature(key, "POST", "/svc/", "D", "cG9s")
    assert base != with_policy != signing.signature(key, "POST", "/svc/", "D", "cG9s", "abc")
    assert signing.signature(key, "post", "/svc/", "D") == base  # the method is upper-cased


def test_http_dates_round_trip_and_bad_dates_are_none():
    assert signing.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert signing.parse_http_date(signing.http_date(1_700_000_123)) == 1_700_000_123
    assert signing.parse_http_date("yesterday") is None


def test_purge_signature_shape():
    header = signing.purge_authorization("svc", "op", signing.password_md5("pw"), "http://a/b\n", "D")
    expected = hashlib.md5(("http://a/b\n&svc&D&" + signing.password_md5("pw")).encode()).hexdigest()
    assert header == f"UpYun svc:op:{expected}"


def callback_headers(body=b"code=200&url=%2Fa.jpg", uri="/notify", when=None, operator="op", password="pw"):
    date = signing.http_date(when)
    md5 = hashlib.md5(body).hexdigest()
    auth = signing.authorization(operator, signing.password_md5(password), "POST", uri, date, None, md5)
    return {"date": date, "content-md5": md5, "authorization": auth}, body


def test_verify_callback_accepts_a_genuine_callback_and_nothing_else():
    headers, body = callback_headers()
    assert upclient.upyun.verify_callback(headers, "/notify", "op", "pw", body=body)
    assert not upclient.upyun.verify_callback(headers, "/notify", "op", "wrong", body=body)
    assert not upclient.upyun.verify_callback(headers, "/other", "op", "pw", body=body)
    assert not upclient.upyun.verify_callback(headers, "/notify", "someone", "pw", body=body)
    assert not upclient.upyun.verify_callback(headers, "/notify", "op", "pw", body=body + b"x")
    assert not upclient.upyun.verify_callback({}, "/notify", "op", "pw")
    assert not upclient.upyun.verify_callback({**headers, "authorization": "Bearer x"}, "/notify", "op", "pw")
    stale, _ = callback_headers(when=time.time() - 31 * 60)
    assert not upclient.upyun.verify_callback(stale, "/notify", "op", "pw")
    assert upclient.upyun.verify_callback(stale, "/notify", "op", "pw", window=3600)


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize("url", ["upyun://svc", "upyun://op@", "upyun://op@svc/x", "tus://op@svc"])
def test_bad_urls_are_refused(url):
    with pytest.raises(errors.BadInput):
        upclient.Client(url, password="x", store=None)


def test_exactly_one_credential(monkeypatch):
    monkeypatch.delenv("UPYUN_PASSWORD", raising=False)
    with pytest.raises(errors.BadInput, match="exactly one"):
        upclient.Client("upyun://op@svc", store=None)
    with pytest.raises(errors.BadInput, match="exactly one"):
        upclient.Client("upyun://op@svc", password="a", auth_server="http://127.0.0.1:1/", store=None)
    with pytest.raises(errors.BadInput, match="32 hex"):
        upclient.Client("upyun://op@svc", password_md5="nope", store=None)
    monkeypatch.setenv("UPYUN_PASSWORD", "from-env")
    assert upclient.Client("upyun://op@svc", store=None).backend.signer.can_purge


@pytest.mark.parametrize("endpoint,base", [
    (None, "https://v0.api.upyun.com"),
    ("v1.api.upyun.com", "https://v1.api.upyun.com"),
    ("127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("localhost:81", "http://localhost:81"),
    ("http://proxy.internal:3128", "http://proxy.internal:3128"),
])
def test_endpoints(endpoint, base):
    c = upclient.Client("upyun://op@svc", password="x", store=None, **({"endpoint": endpoint} if endpoint else {}))
    assert c.backend.base == base


def test_secrets_stay_out_of_reprs():
    c = client()
    for text in (repr(c), repr(c.backend), repr(c.backend.signer), repr(c.settings)):
        assert SECRET not in text and signing.password_md5(SECRET) not in text


def _strings_held(root, depth=8):
    """Every str reachable from ``root`` through attributes, mappings and sequences."""
    seen, out, todo = set(), [], [(root, 0)]
    while todo:
        obj, level = todo.pop()
        if id(obj) in seen or level > depth or isinstance(obj, (type, type(os), type(len))):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            out.append(obj)
        elif isinstance(obj, bytes):
            out.append(obj.decode("latin-1"))
        elif isinstance(obj, dict):
            todo.extend((x, level + 1) for kv in obj.items() for x in kv)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend((x, level + 1) for x in obj)
        else:
            todo.extend((x, level + 1) for x in getattr(obj, "__dict__", {}).values())
            for name in getattr(type(obj), "__slots__", ()):
                todo.append((getattr(obj, name, None), level + 1))
    return out


@pytest.mark.parametrize("how", ["password", "environment"])
def test_only_the_password_md5_is_kept_and_the_operator_is_not_in_reprs(monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("UPYUN_PASSWORD", SECRET)
        c = upclient.Client("upyun://operat0r-name@svc", endpoint="127.0.0.1:9", store=None)
    else:
        c = upclient.Client("upyun://operat0r-name@svc", endpoint="127.0.0.1:9", store=None, password=SECRET)
    with c:
        assert "password" not in c.backend.options and "password_md5" not in c.backend.options
        held = _strings_held(c)
        assert not [s for s in held if SECRET in s]
        assert signing.password_md5(SECRET) in held  # what signing needs, and only that
        for text in (repr(c), repr(c.backend), repr(c.backend.signer), str(c.backend)):
            assert "operat0r-name" not in text and SECRET not in text
    monkeypatch.delenv("UPYUN_PASSWORD", raising=False)
    with upclient.Client("upyun://op@svc", endpoint="127.0.0.1:9", store=None,
                         password_md5=signing.password_md5(SECRET)) as c:
        assert "password_md5" not in c.backend.options
        assert repr(c.backend.signer).count(signing.password_md5(SECRET)) == 0


def test_auth_and_headers_go_only_to_the_upyun_endpoints():
    c = client(purge_endpoint="http://purge.test", process_endpoint="https://process.test:8443",
               trusted_origins=["https://cdn.test"], headers={"X-Custom": "v"})
    assert c.backend.home_origins() == ["http://127.0.0.1:9", "http://purge.test:80", "https://process.test:8443",
                                        "https://cdn.test:443"]


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "a/./b", "", "/", "a\x00b", "dir/"])
def test_keys_that_could_escape_are_refused_before_any_request(tmp_path, key):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    with responses.RequestsMock():  # any request would fail: none is registered
        with pytest.raises(errors.BadInput):
            client().put(src, key=key)


# -- uploads --------------------------------------------------------------------------


def test_small_put_is_one_signed_request_with_content_md5_and_headers(tmp_path):
    data = b"png bytes" * 10
    src = tmp_path / "local.png"
    src.write_bytes(data)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.PUT, BASE + "/svc/a/b/photo%20one.png", status=200,
                 headers={"x-upyun-width": "10", "x-upyun-height": "20"})
        result = client().put(src, key="a/b/photo one.png", headers={"x-gmkerl-rotate": "90"},
                              metadata={"owner": "me"}, checksum=True)
        req = rsps.calls[0].request
    assert req.headers["Content-MD5"] == hashlib.md5(data).hexdigest()
    assert req.headers["x-gmkerl-rotate"] == "90"
    assert req.headers["x-upyun-meta-owner"] == "me"
    assert req.headers["Content-Type"] == "image/png"
    check_signed(req, "PUT", "/svc/a/b/photo%20one.png")
    assert result.id == result.key == "a/b/photo one.png"
    assert result.extra["headers"]["width"] == "10"


def test_checksum_false_sends_no_md5(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"abc")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.PUT, BASE + "/svc/x.bin", status=200)
        client(checksum=False).put(src)
        assert "Content-MD5" not in rsps.calls[0].request.headers


def test_remote_signing_never_sends_the_password(tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(b"abc")
    asked = []

    def sign(request):
        fields = json.loads(request.body)
        asked.append(fields)
        return 200, {}, "UPYUN op:c2lnbmVk"

    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.POST, "http://signer.test/sign", callback=sign)
        rsps.add(responses.PUT, BASE + "/svc/x.bin", status=200)
        client(auth_server="http://signer.test/sign").put(src)
        put = rsps.calls[1].request
    assert put.headers["Authorization"] == "UPYUN op:c2lnbmVk"
    (fields,) = asked
    assert set(fields) == {"username", "method", "uri", "date", "content_md5"}
    assert fields["uri"] == "/svc/x.bin" and fields["method"] == "PUT" and fields["username"] == "op"
    assert fields["date"] == put.headers["Date"]


def test_purge_cannot_be_signed_remotely():
    with pytest.raises(errors.Unsupported, match="password"):
        client(auth_server="http://signer.test/sign").purge(["a.jpg"])


def test_purge_request_shape():
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, "https://purge.upyun.com/purge/", json={"invalid_domain_of_url": []})
        c = client(endpoint="v1.api.upyun.com")  # the service's purge host is its own
        assert c.purge(["a/b c.jpg", "http://cdn.example.com/x.png"]) == []
        req = rsps.calls[0].request
    field = "http://svc.b0.upaiyun.com/a/b%20c.jpg\nhttp://cdn.example.com/x.png\n"
    from urllib.parse import parse_qs

    assert parse_qs(req.body.decode())["purge"] == [field]
    assert req.headers["Authorization"] == signing.purge_authorization(
        "svc", "op", signing.password_md5(SECRET), field, req.headers["Date"])


# -- errors ---------------------------------------------------------------------------


def error_body(code, msg, rid="req-1"):
    return {"msg": msg, "code": code, "id": rid}


@pytest.mark.parametrize("status,code,cls", [
    (401, 40100005, errors.AuthError),
    (401, 40100002, errors.AuthError),
    (404, 40400001, errors.NotFound),
    (403, 40300005, errors.Conflict),
    (406, 40600002, errors.Conflict),
    (403, 40300011, errors.AuthError),
    (429, 42900001, errors.RateLimited),
    (503, 50300001, errors.ServiceError),
    (400, 40011058, errors.UploadExpired),
    (400, 40011061, errors.OffsetConflict),
    (403, 40300007, errors.ChecksumMismatch),
])
def test_errors_map_with_code_message_and_request_id(status, code, cls):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.DELETE, BASE + "/svc/k", status=status, json=error_body(code, "the message"),
                 headers={"X-Request-Id": "rid-9", "X-Upyun-Next-Part-Id": "3"})
        with pytest.raises(cls) as info:
            client(retry=upclient.RetryPolicy(attempts=1)).delete("k")
    err = info.value
    assert err.status == status and err.code == code and err.request_id == "rid-9"
    assert "the message" in str(err) and err.backend == "upyun" and err.operation == "delete"
    # what to do next is a hint the protocol returns (test_upyun_protocol.py), never an attribute
    assert not {"next_part_id", "upyun_uuid"} & set(vars(err))
    assert err.retryable is type(err).retryable


def test_credentials_never_reach_logs_or_errors(tmp_path, caplog):
    src = tmp_path / "x.bin"
    src.write_bytes(b"abc")
    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.PUT, BASE + "/svc/x.bin", status=401, json=error_body(40100005, "signature error"))
        with pytest.raises(errors.AuthError) as info:
            client().put(src)
    texts = [str(info.value), repr(info.value), caplog.text]
    for text in texts:
        assert SECRET not in text and signing.password_md5(SECRET) not in text
        assert "UPYUN op:" not in text  # not even the signature


def test_list_pages_follow_the_iterator_to_the_end_marker():
    pages = [
        ("a.txt\tN\t3\t1700000000\nsub\tF\t0\t1700000001", "tok1"),
        ("z.bin\tN\t7\t1700000002", upclient.upyun.LIST_END),
    ]
    with responses.RequestsMock() as rsps:
        for body, token in pages:
            rsps.add(responses.GET, BASE + "/svc/dir/", body=body, headers={"x-upyun-list-iter": token})
        entries = list(client().iter("dir/", limit=2, order="desc"))
        first, second = rsps.calls[0].request, rsps.calls[1].request
    assert [e.id for e in entries] == ["dir/a.txt", "dir/sub/", "dir/z.bin"]
    assert [e.extra["type"] for e in entries] == ["file", "folder", "file"]
    assert entries[0].size == 3 and entries[2].modified == 1700000002
    assert first.headers["X-List-Limit"] == "2" and first.headers["X-List-Order"] == "desc"
    assert "X-List-Iter" not in first.headers and second.headers["X-List-Iter"] == "tok1"


# -- multipart answers that steer the upload ----------------------------------------------

MiB = 1024 * 1024


class FakeMultipart:
    """A scripted multipart endpoint: ``script[(stage, part_id)]`` gives the answer once."""

    def __init__(self, script=None):
        self.script = dict(script or {})
        self.seen = []

    def __call__(self, request):
        stage = request.headers.get("X-Upyun-Multi-Stage", "")
        part = request.headers.get("X-Upyun-Part-Id")
        self.seen.append((stage, None if part is None else int(part)))
        scripted = self.script.pop((stage, None if part is None else int(part)), None)
        if scripted is not None:
            return scripted
        if stage == "initiate":
            return 204, {"x-upyun-multi-uuid": "U1", "x-upyun-next-part-id": "0"}, ""
        if stage == "upload":
            return 204, {"x-upyun-next-part-id": str(int(part) + 1)}, ""
        return 201, {"x-upyun-multi-uuid": "U1"}, ""

    def parts(self):
        return [p for stage, p in self.seen if stage == "upload"]


def fail(code, msg, status=400, **headers):
    return status, headers, json.dumps({"code": code, "msg": msg, "id": "r"})


def multipart_put(tmp_path, fake, size=3 * MiB + 1, **options):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(size))
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.PUT, BASE + "/svc/big.bin", callback=fake)
        if "info" in options:
            rsps.add(responses.HEAD, BASE + "/svc/big.bin", headers={"x-upyun-file-size": str(size)})
        options.pop("info", None)
        return client(part_size=MiB, concurrency=1).put(src, **options)


def test_serial_part_id_error_resumes_from_the_part_the_server_names(tmp_path):
    fake = FakeMultipart({("upload", 1): fail(40011061, "part id error", **{"X-Upyun-Next-Part-Id": "3"})})
    multipart_put(tmp_path, fake, serial=True)
    assert fake.parts() == [0, 1, 3]  # parts 1 and 2 were on the server already
    assert fake.seen[-1][0] == "complete"


def test_part_already_complete_goes_straight_to_complete(tmp_path):
    fake = FakeMultipart({("upload", 1): fail(40011062, "part already complete")})
    multipart_put(tmp_path, fake, serial=True)
    assert fake.parts() == [0, 1] and fake.seen[-1][0] == "complete"


def test_file_already_upload_is_success(tmp_path):
    fake = FakeMultipart({("complete", None): fail(40011059, "file already upload")})
    result = multipart_put(tmp_path, fake, info=True)
    assert result.size == 3 * MiB + 1 and result.key == "big.bin"


def test_an_upload_forgotten_midway_starts_afresh_and_resends_what_it_had(tmp_path):
    fake = FakeMultipart({("upload", 2): fail(40011058, "x-upyun-multi-uuid not found")})
    result = multipart_put(tmp_path, fake)
    assert [s for s, _ in fake.seen].count("initiate") == 2
    parts = fake.parts()
    assert parts[:3] == [0, 1, 2]  # part 2 found the upload gone
    assert sorted(parts[3:]) == [0, 1, 2, 3]  # every part went again under the new upload
    assert result.extra["restarts"] == 1


def spied_put(tmp_path, data, c, **options):
    fake = FakeMultipart()
    seen = []

    def spy(request):
        seen.append(dict(request.headers))
        return fake(request)

    src = tmp_path / "big.bin"
    if not src.exists():  # the same file each time: the digest cache knows it by its identity
        src.write_bytes(data)
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.PUT, BASE + "/svc/big.bin", callback=spy)
        c.put(src, **options)
    return seen


def test_whole_file_md5_is_sent_on_complete_when_asked_or_known(tmp_path):
    data = os.urandom(2 * MiB + 5)
    md5 = hashlib.md5(data).hexdigest()
    c = client(part_size=MiB, concurrency=2)
    assert "X-Upyun-Multi-MD5" not in spied_put(tmp_path, data, c)[-1]  # not free: not computed
    seen = spied_put(tmp_path, data, c, file_md5=True)  # hashed from the parts on their way
    complete = seen[-1]
    assert complete["X-Upyun-Multi-Stage"] == "complete"
    assert complete["X-Upyun-Multi-MD5"] == md5
    assert spied_put(tmp_path, data, c)[-1]["X-Upyun-Multi-MD5"] == md5  # now the cache knows it
    assert spied_put(tmp_path, data, c, file_md5=False)[-1].get("X-Upyun-Multi-MD5") is None
    given = spied_put(tmp_path, data, client(part_size=MiB), file_md5="A" * 32)[-1]
    assert given["X-Upyun-Multi-MD5"] == "a" * 32
    with pytest.raises(errors.BadInput, match="file_md5"):
        client().put(b"x", file_md5="nope")
    init = seen[0]
    assert init["X-Upyun-Multi-Disorder"] == "true" and init["X-Upyun-Multi-Length"] == str(len(data))
    assert init["X-Upyun-Multi-Part-Size"] == str(MiB)
    for h in seen[1:-1]:
        part = int(h["X-Upyun-Part-Id"])
        assert h["Content-MD5"] == hashlib.md5(data[part * MiB:(part + 1) * MiB]).hexdigest()


def test_part_size_must_suit_upyun(tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * (3 * 1000 * 1000))
    with responses.RequestsMock():
        with pytest.raises(errors.BadInput, match="multiple of 1 MiB"):
            client(part_size=1000 * 1000).put(src)


def test_parts_complete_finds_missing_go_again_through_the_engine_then_complete(tmp_path):
    size = 4 * MiB
    fake = FakeMultipart({("complete", None): fail(40011061, "part id error", **{"X-Upyun-Next-Part-Id": "2"})})
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(size))
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.PUT, BASE + "/svc/big.bin", callback=fake)
        rsps.add(responses.GET, BASE + "/svc/big.bin", json={"parts": [{"id": 0}, {"id": 1}, {"id": 3}]})
        result = client(part_size=MiB, concurrency=1).put(src)
        query = [c.request for c in rsps.calls if c.request.method == "GET"]
    assert [s for s, _ in fake.seen] == ["initiate"] + ["upload"] * 4 + ["complete", "upload", "complete"]
    assert fake.parts() == [0, 1, 2, 3, 2]
    assert len(query) == 1 and query[0].headers["X-Upyun-Multi-Uuid"] == "U1"
    assert result.sent_bytes == size + MiB  # the engine sent (and counted) part 2 again


def test_serial_parts_after_a_gap_the_server_names_go_again_in_order_through_the_engine(tmp_path):
    size = 4 * MiB
    fake = FakeMultipart({("upload", 3): fail(40011061, "part id error", **{"X-Upyun-Next-Part-Id": "1"})})
    seen = []
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(size))
    with responses.RequestsMock() as rsps:
        rsps.add_callback(responses.PUT, BASE + "/svc/big.bin", callback=fake)
        result = client(part_size=MiB).put(src, serial=True, on_progress=seen.append)
    assert fake.parts() == [0, 1, 2, 3, 1, 2, 3] and fake.seen[-1][0] == "complete"
    assert result.sent_bytes == 7 * MiB  # no part went outside the engine, uncounted
    assert seen[-1].bytes_done == size and seen[-1].parts_done == 4


@pytest.mark.parametrize("token", ["t\r\nX-Injected: 1", "t t", "t\x00"])
def test_a_listing_token_that_is_not_one_header_value_is_bad_input(token):
    with responses.RequestsMock():  # nothing registered: a request would be a NetworkError
        with pytest.raises(errors.BadInput, match="iter"):
            client().list_page("dir", iter=token)
