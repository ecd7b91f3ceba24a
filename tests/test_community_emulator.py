"""The community multipart API emulator (upclient.testing.community), driven with plain requests."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from upclient.testing.community import (
    CODE_BAD_CATEGORY,
    CODE_BAD_EXT,
    CODE_BAD_MD5,
    CODE_BAD_PART_SIZE,
    CODE_BAD_REQUEST,
    CODE_BAD_SIZE,
    CODE_MD5_MISMATCH,
    CODE_PARTS_MISSING,
    CODE_USER_REQUIRED,
    CODE_WRONG_STATE,
    CommunityServer,
)

KiB = 1024
PART = 64 * KiB
API = "/api/community/file"
ALICE = "tok-alice"
BOB = "tok-bob"
API_KEY = "svc-key"
TIMEOUT = 10


class Clock:
    """A settable clock for the server."""

    def __init__(self) -> None:
        self.now = 1_760_000_000.0  # 2025-10-09

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(tmp_path: Path, clock: Clock) -> Iterator[CommunityServer]:
    with CommunityServer(
        tmp_path / "community",
        tokens={ALICE: "alice", BOB: "bob"},
        api_keys={API_KEY},
        default_part_size=PART,
        min_part_size=16 * KiB,
        url_lifetime=600,
        clock=clock,
    ) as srv:
        yield srv


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def call(
    http: requests.Session,
    server: CommunityServer,
    method: str,
    path: str,
    *,
    token: Optional[str] = ALICE,
    api_key: Optional[str] = None,
    **kwargs: Any,
) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if api_key is not None:
        headers["X-API-Key"] = api_key
    return http.request(method, server.url + path, headers=headers, timeout=TIMEOUT, **kwargs)


def ok(response: requests.Response) -> Any:
    """The ``data`` of a successful envelope."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0, body
    assert body["message"] == "ok"
    return body["data"]


def business(response: requests.Response) -> Dict[str, Any]:
    """A business error: HTTP 200 with a non-zero code."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] not in (0, 1000, None), body
    assert body["message"]
    return body


def init(
    http: requests.Session, server: CommunityServer, data: bytes, *, token: Optional[str] = ALICE, **fields: Any
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"file_ext": "bin", "file_size": len(data), "file_md5": md5(data), "category": "general"}
    body.update(fields)
    return ok(call(http, server, "POST", f"{API}/upload/init", token=token, json=body))


def put_part(http: requests.Session, part: Dict[str, Any], data: bytes, **kwargs: Any) -> requests.Response:
    return http.put(part["upload_url"], data=data[part["start"] : part["end"]], timeout=TIMEOUT, **kwargs)


def complete(
    http: requests.Session,
    server: CommunityServer,
    file_id: str,
    *,
    token: Optional[str] = ALICE,
    api_key: Optional[str] = None,
    **fields: Any,
) -> requests.Response:
    body = {"file_id": file_id, **fields}
    return call(http, server, "POST", f"{API}/upload/complete", token=token, api_key=api_key, json=body)


def upload(
    http: requests.Session, server: CommunityServer, data: bytes, *, token: Optional[str] = ALICE, **fields: Any
) -> Dict[str, Any]:
    """init + every part + complete; returns the file object."""
    answer = init(http, server, data, token=token, **fields)
    if answer["status"] == "completed":
        return answer["file"]
    for part in answer["parts"]:
        if not part["uploaded"]:
            assert put_part(http, part, data).status_code == 200
    return ok(complete(http, server, answer["file_id"], token=token))


def xml_code(response: requests.Response) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", response.text)
    assert match, response.text
    return match.group(1)


def tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    path = changes.pop("path", parts.path)
    query.update(changes)
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), ""))


# ------------------------------------------------------------------ auth


def test_auth_bearer_api_key_and_401(server: CommunityServer, http: requests.Session) -> None:
    assert ok(call(http, server, "GET", API))["list"] == []
    assert ok(call(http, server, "GET", API, token=None, api_key=API_KEY))["list"] == []

    for kwargs in ({"token": None}, {"token": "wrong"}, {"token": None, "api_key": "wrong"}):
        response = call(http, server, "GET", API, **kwargs)
        assert response.status_code == 401
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["code"] == 401 and response.json()["message"]
    basic = http.get(server.url + API, headers={"Authorization": "Basic dG9rLWFsaWNl"}, timeout=TIMEOUT)
    assert basic.status_code == 401

    data = os.urandom(1000)
    # An API key needs user_id in init and complete.
    body = {"file_ext": "bin", "file_size": len(data), "file_md5": md5(data), "category": "general"}
    no_user = call(http, server, "POST", f"{API}/upload/init", token=None, api_key=API_KEY, json=body)
    assert business(no_user)["code"] == CODE_USER_REQUIRED
    answer = ok(
        call(
            http,
            server,
            "POST",
            f"{API}/upload/init",
            token=None,
            api_key=API_KEY,
            json={**body, "user_id": "svc-user", "org_id": "org-1"},
        )
    )
    assert put_part(http, answer["parts"][0], data).status_code == 200
    response = complete(http, server, answer["file_id"], token=None, api_key=API_KEY)
    assert business(response)["code"] == CODE_USER_REQUIRED
    other = complete(http, server, answer["file_id"], token=None, api_key=API_KEY, user_id="someone-else")
    assert other.status_code == 403
    done = ok(complete(http, server, answer["file_id"], token=None, api_key=API_KEY, user_id="svc-user"))
    assert (done["user_id"], done["org_id"], done["status"]) == ("svc-user", "org-1", "confirmed")

    # With a bearer token the user is the token's, whatever the body says.
    mine = upload(http, server, os.urandom(10), user_id="mallory")
    assert mine["user_id"] == "alice"


def test_tokens_as_iterable_get_derived_users(tmp_path: Path, http: requests.Session) -> None:
    with CommunityServer(tmp_path / "c", tokens=["t1"]) as srv:
        assert upload(http, srv, b"hello", token="t1")["user_id"] == CommunityServer.user_for_token("t1")
    with pytest.raises(ValueError):
        CommunityServer(tmp_path / "d")


def test_owner_checks(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(2000)
    answer = init(http, server, data)
    assert put_part(http, answer["parts"][0], data).status_code == 200
    assert complete(http, server, answer["file_id"], token=BOB).status_code == 403
    abort = call(http, server, "POST", f"{API}/upload/abort", token=BOB, json={"file_id": answer["file_id"]})
    assert abort.status_code == 403
    ok(complete(http, server, answer["file_id"]))
    assert call(http, server, "DELETE", f"{API}/{answer['file_id']}", token=BOB).status_code == 403
    # Info is open to every authenticated caller.
    assert ok(call(http, server, "GET", f"{API}/{answer['file_id']}", token=BOB))["id"] == answer["file_id"]


# ----------------------------------------------------------------- init


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"category": "music"}, CODE_BAD_CATEGORY),
        ({"file_md5": "D41D8CD98F00B204E9800998ECF8427E"}, CODE_BAD_MD5),
        ({"file_md5": "d41d8cd98f00b204"}, CODE_BAD_MD5),
        ({"file_md5": None}, CODE_BAD_MD5),
        ({"file_ext": ".mp4"}, CODE_BAD_EXT),
        ({"file_ext": "MP4"}, CODE_BAD_EXT),
        ({"file_ext": "tar.gz"}, CODE_BAD_EXT),
        ({"file_ext": None}, CODE_BAD_EXT),
        ({"file_size": -1}, CODE_BAD_SIZE),
        ({"file_size": "10"}, CODE_BAD_SIZE),
        ({"file_size": 1.5}, CODE_BAD_SIZE),
        ({"file_size": True}, CODE_BAD_SIZE),
        ({"part_size": 0}, CODE_BAD_PART_SIZE),
        ({"part_size": "big"}, CODE_BAD_PART_SIZE),
        ({"metadata": ["a"]}, CODE_BAD_REQUEST),
        ({"content_type": 5}, CODE_BAD_REQUEST),
    ],
)
def test_init_validation(server: CommunityServer, http: requests.Session, fields: Dict[str, Any], code: int) -> None:
    body = {"file_ext": "mp4", "file_size": 10, "file_md5": md5(b"0123456789"), "category": "video", **fields}
    response = call(http, server, "POST", f"{API}/upload/init", json=body)
    assert business(response)["code"] == code
    assert server.file_ids() == []


def test_init_bad_bodies(server: CommunityServer, http: requests.Session) -> None:
    assert business(call(http, server, "POST", f"{API}/upload/init", json=[1, 2]))["code"] == CODE_BAD_REQUEST
    assert business(call(http, server, "POST", f"{API}/upload/init"))["code"] == CODE_BAD_REQUEST
    malformed = call(
        http, server, "POST", f"{API}/upload/init", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and malformed.json()["message"]
    # The empty extension is valid (the SDK sends it for a name without one).
    answer = init(http, server, b"abc", file_ext="")
    assert answer["file_key"].endswith("/" + answer["file_id"])


def test_unknown_route_and_wrong_method(server: CommunityServer, http: requests.Session) -> None:
    missing = call(http, server, "GET", "/api/community/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == 404
    wrong = call(http, server, "GET", f"{API}/upload/init")
    assert wrong.status_code == 405 and wrong.json()["code"] == 405


# ------------------------------------------------------------ full upload


def test_full_upload(server: CommunityServer, http: requests.Session, clock: Clock) -> None:
    data = os.urandom(5 * PART + 12345)
    answer = init(http, server, data, file_ext="mp4", category="video", metadata={"title": "clip"})
    assert answer["status"] == "pending"
    assert answer["part_size"] == PART and answer["total_parts"] == 6
    parts = answer["parts"]
    assert [p["part_number"] for p in parts] == list(range(1, 7))
    assert parts[0]["start"] == 0 and parts[-1]["end"] == len(data)
    for prev, part in zip(parts, parts[1:]):
        assert part["start"] == prev["end"]
    for part in parts:
        assert part["end"] == part["start"] + part["size"]  # end is exclusive
        assert part["uploaded"] is False and part["etag"] is None
    assert [p["size"] for p in parts] == [PART] * 5 + [12345]

    assert ok(call(http, server, "GET", f"{API}/{answer['file_id']}"))["status"] == "pending"
    for part in parts:
        response = put_part(http, part, data)
        assert response.status_code == 200, response.text
        piece = data[part["start"] : part["end"]]
        assert response.headers["ETag"] == f'"{md5(piece)}"'
    assert server.uploaded_parts(answer["file_id"]) == list(range(1, 7))
    assert ok(call(http, server, "GET", f"{API}/{answer['file_id']}"))["status"] == "uploading"

    clock.now += 60
    info = ok(complete(http, server, answer["file_id"]))
    expected_keys = {
        "id", "file_key", "file_size", "file_type", "file_ext", "file_md5", "bucket", "region", "oss_url",
        "imagekit_url", "cdn_url", "category", "user_id", "org_id", "status", "related_type", "related_id",
        "extra_metadata", "created_at", "updated_at", "confirmed_at", "deleted_at",
    }  # fmt: skip
    assert set(info) == expected_keys
    assert info["id"] == answer["file_id"]
    assert re.fullmatch(r"community/videos/2025/10/[0-9a-f]{32}\.mp4", info["file_key"])
    assert (info["file_size"], info["file_ext"], info["file_md5"]) == (len(data), "mp4", md5(data))
    assert (info["file_type"], info["category"], info["status"]) == ("video/mp4", "video", "confirmed")
    assert info["user_id"] == "alice" and info["extra_metadata"] == {"title": "clip"}
    assert info["created_at"] == "2025-10-09T08:53:20.000Z"
    assert info["confirmed_at"] == "2025-10-09T08:54:20.000Z" and info["deleted_at"] is None
    assert server.stored_sha256(info["id"]) == sha256(data)
    assert not (server.directory / "parts" / info["id"]).exists()
    for url_field in ("oss_url", "cdn_url", "imagekit_url"):
        assert info[url_field].startswith(server.url + "/")
        got = http.get(info[url_field], timeout=TIMEOUT)
        assert got.status_code == 200 and got.content == data
        assert got.headers["ETag"] == f'"{md5(data)}"' and got.headers["Content-Type"] == "video/mp4"
    # Complete is idempotent.
    assert ok(complete(http, server, info["id"]))["status"] == "confirmed"
    assert server.request_count("complete") == 2 and server.request_count("part") == 6


def test_part_layout_rules(server: CommunityServer, http: requests.Session, tmp_path: Path) -> None:
    data = os.urandom(100 * KiB)
    honoured = init(http, server, data, part_size=40 * KiB)
    assert [p["size"] for p in honoured["parts"]] == [40 * KiB, 40 * KiB, 20 * KiB]
    raised = init(http, server, data[:-1], part_size=1)
    assert raised["part_size"] == 16 * KiB and len(raised["parts"]) == 7
    one = init(http, server, data[:-2], part_size=10**9)
    assert [p["size"] for p in one["parts"]] == [len(data) - 2]

    empty = init(http, server, b"")
    assert empty["parts"] == [] and empty["total_parts"] == 0
    info = ok(complete(http, server, empty["file_id"]))
    assert info["file_size"] == 0 and server.stored_path(info["id"]).read_bytes() == b""

    with CommunityServer(tmp_path / "few", tokens=[ALICE], min_part_size=1, default_part_size=10, max_parts=4) as srv:
        capped = init(http, srv, os.urandom(100))
        assert [p["size"] for p in capped["parts"]] == [25, 25, 25, 25]


# ---------------------------------------------------------- dedup / resume


def test_dedup(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(3 * PART)
    first = upload(http, server, data)
    puts = server.part_puts
    again = init(http, server, data)
    assert again["status"] == "completed" and again["file_id"] == first["id"]
    assert again["file"] == first and "parts" not in again
    # Whoever asks, and whatever the extension: same MD5 and size is enough.
    by_bob = init(http, server, data, token=BOB, file_ext="mov")
    assert by_bob["status"] == "completed" and by_bob["file"]["id"] == first["id"]
    assert server.part_puts == puts
    # Same MD5 claimed with another size is not a hit.
    assert init(http, server, data + b"x", file_md5=md5(data))["status"] == "pending"


def test_server_side_resume(server: CommunityServer, http: requests.Session, clock: Clock) -> None:
    data = os.urandom(4 * PART + 100)
    first = init(http, server, data)
    parts = first["parts"]
    for index in (0, 2):
        assert put_part(http, parts[index], data).status_code == 200

    clock.now += 100
    again = init(http, server, data, part_size=20 * KiB)  # a new part size does not change the layout
    assert again["status"] == "resuming" and again["file_id"] == first["file_id"]
    assert [p["uploaded"] for p in again["parts"]] == [True, False, True, False, False]
    assert [p["size"] for p in again["parts"]] == [p["size"] for p in parts]
    assert again["parts"][0]["etag"] == f'"{md5(data[: PART])}"'
    assert again["parts"][1]["etag"] is None
    for old, new in zip(parts, again["parts"]):
        assert old["upload_url"] != new["upload_url"]  # fresh URLs
    assert again["url_expires_at"] == first["url_expires_at"] + 100

    # Another user does not resume alice's upload.
    assert init(http, server, data, token=BOB)["file_id"] != first["file_id"]

    for part in again["parts"]:
        if not part["uploaded"]:
            assert put_part(http, part, data).status_code == 200
    info = ok(complete(http, server, first["file_id"]))
    assert server.stored_sha256(info["id"]) == sha256(data)


def test_init_again_before_any_part_reuses_the_upload(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(PART + 1)
    first = init(http, server, data)
    second = init(http, server, data)
    assert second["file_id"] == first["file_id"] and second["status"] == "pending"
    assert len(server.file_ids()) == 1


# -------------------------------------------------------- presigned URLs


def test_presigned_url_rejections(server: CommunityServer, http: requests.Session, clock: Clock) -> None:
    data = os.urandom(3 * PART)
    answer = init(http, server, data)
    part = answer["parts"][1]
    url = part["upload_url"]
    body = data[part["start"] : part["end"]]
    query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    assert set(query) == {"Expires", "Gen", "Signature"}

    def put(target: str, payload: bytes = body, **kwargs: Any) -> requests.Response:
        return http.put(target, data=payload, timeout=TIMEOUT, **kwargs)

    cases = {
        "signature": tamper(url, Signature="0" * 64),
        "path": tamper(url, path=urlsplit(url).path.rsplit("/", 1)[0] + "/3"),
        "expires": tamper(url, Expires=str(int(query["Expires"]) + 3600)),
        "generation": tamper(url, Gen="5"),
    }
    for name, target in cases.items():
        response = put(target)
        assert response.status_code == 403, name
        assert xml_code(response) == "SignatureDoesNotMatch", name
    missing = put(urlunsplit(urlsplit(url)._replace(query="")))
    assert missing.status_code == 403 and xml_code(missing) == "AccessDenied"

    typed = put(url, headers={"Content-Type": "application/octet-stream"})
    assert typed.status_code == 403 and xml_code(typed) == "SignatureDoesNotMatch"

    short = put(url, body[:-1])
    long = put(url, body + b"x")
    assert (short.status_code, long.status_code) == (400, 400)
    assert xml_code(short) == "InvalidPartSize"
    assert server.uploaded_parts(answer["file_id"]) == []

    clock.now = int(query["Expires"]) + 1
    expired = put(url)
    assert expired.status_code == 403 and xml_code(expired) == "AccessDenied"
    clock.now -= 2
    assert put(url).status_code == 200  # one second before expiry it was still fine

    # A new init hands out fresh URLs that work.
    fresh = init(http, server, data)["parts"][1]["upload_url"]
    assert put(fresh).status_code == 200
    assert server.uploaded_parts(answer["file_id"]) == [2]
    assert server.part_puts == 11


def test_expire_urls(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(2 * PART)
    answer = init(http, server, data)
    server.expire_urls()
    response = put_part(http, answer["parts"][0], data)
    assert response.status_code == 403 and xml_code(response) == "AccessDenied"
    fresh = init(http, server, data)
    assert fresh["status"] == "pending"
    for part in fresh["parts"]:
        assert put_part(http, part, data).status_code == 200
    ok(complete(http, server, answer["file_id"]))


def test_chunked_part_bodies(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(2 * PART)
    answer = init(http, server, data)
    first, second = answer["parts"]

    def pieces(payload: bytes, size: int = 10_000) -> Iterator[bytes]:
        for i in range(0, len(payload), size):
            yield payload[i : i + size]

    good = http.put(first["upload_url"], data=pieces(data[: PART]), timeout=TIMEOUT)
    assert good.status_code == 200 and good.headers["ETag"] == f'"{md5(data[: PART])}"'
    bad = http.put(second["upload_url"], data=pieces(data[PART:] + b"!"), timeout=TIMEOUT)
    assert bad.status_code == 400 and xml_code(bad) == "InvalidPartSize"
    assert server.uploaded_parts(answer["file_id"]) == [1]
    good2 = http.put(second["upload_url"], data=pieces(data[PART:]), timeout=TIMEOUT)
    assert good2.status_code == 200
    assert server.stored_sha256(ok(complete(http, server, answer["file_id"]))["id"]) == sha256(data)


def test_part_sent_again_replaces_it(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(PART + 10)
    answer = init(http, server, data)
    part = answer["parts"][0]
    other = os.urandom(PART)
    assert http.put(part["upload_url"], data=other, timeout=TIMEOUT).status_code == 200
    assert put_part(http, part, data).status_code == 200
    assert put_part(http, answer["parts"][1], data).status_code == 200
    ok(complete(http, server, answer["file_id"]))
    assert server.stored_sha256(answer["file_id"]) == sha256(data)
    # The upload is over: its URLs answer 404.
    late = put_part(http, part, data)
    assert late.status_code == 404 and xml_code(late) == "NoSuchUpload"


# --------------------------------------------------------------- complete


def test_complete_with_missing_parts(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(3 * PART)
    answer = init(http, server, data)
    assert put_part(http, answer["parts"][1], data).status_code == 200
    error = business(complete(http, server, answer["file_id"]))
    assert error["code"] == CODE_PARTS_MISSING and error["data"] == {"missing_parts": [1, 3]}
    assert ok(call(http, server, "GET", f"{API}/{answer['file_id']}"))["status"] == "uploading"
    for index in (0, 2):
        assert put_part(http, answer["parts"][index], data).status_code == 200
    assert ok(complete(http, server, answer["file_id"]))["status"] == "confirmed"


def test_complete_with_wrong_md5(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(2 * PART)
    wrong = md5(b"something else")
    answer = init(http, server, data, file_md5=wrong)
    for part in answer["parts"]:
        assert put_part(http, part, data).status_code == 200
    error = business(complete(http, server, answer["file_id"]))
    assert error["code"] == CODE_MD5_MISMATCH
    assert error["data"] == {"file_id": answer["file_id"], "file_md5": md5(data)}
    assert ok(call(http, server, "GET", f"{API}/{answer['file_id']}"))["status"] == "failed"
    assert not server.stored_path(answer["file_id"]).exists()
    assert business(complete(http, server, answer["file_id"]))["code"] == CODE_WRONG_STATE
    assert put_part(http, answer["parts"][0], data).status_code == 404
    # A failed upload is not resumed: a new init starts over.
    assert init(http, server, data, file_md5=wrong)["file_id"] != answer["file_id"]


def test_complete_and_abort_bad_requests(server: CommunityServer, http: requests.Session) -> None:
    assert business(call(http, server, "POST", f"{API}/upload/complete", json={}))["code"] == CODE_BAD_REQUEST
    assert complete(http, server, "0" * 32).status_code == 404
    abort = call(http, server, "POST", f"{API}/upload/abort", json={"file_id": "nope"})
    assert abort.status_code == 404


# ------------------------------------------------------------------ faults


def test_fail_part(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(3 * PART)
    answer = init(http, server, data)
    fid = answer["file_id"]
    server.fail_part(2, status=503, times=2)
    assert server.pending_faults
    statuses = [put_part(http, answer["parts"][1], data).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert not server.pending_faults

    server.fail_part(1, status=0)  # connection closed, no answer
    with pytest.raises(requests.ConnectionError):
        put_part(http, answer["parts"][0], data)
    server.fail_part(3, status=500, file_id="another-upload")
    assert put_part(http, answer["parts"][2], data).status_code == 200
    server.clear_faults()
    assert put_part(http, answer["parts"][0], data).status_code == 200

    assert server.part_log == [(fid, 2, 503), (fid, 2, 503), (fid, 2, 200), (fid, 1, 0), (fid, 3, 200), (fid, 1, 200)]
    assert server.part_puts == 6 and server.part_bytes == 6 * PART
    ok(complete(http, server, fid))
    assert server.stored_sha256(fid) == sha256(data)

    server.fail_part(1, status=500, times=None)
    other = os.urandom(PART)
    answer2 = init(http, server, other)
    assert [put_part(http, answer2["parts"][0], other).status_code for _ in range(4)] == [500] * 4
    with pytest.raises(ValueError):
        server.fail_part(1, times=0)


def test_fail_complete(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(PART)
    answer = init(http, server, data)
    assert put_part(http, answer["parts"][0], data).status_code == 200
    fid = answer["file_id"]

    server.fail_complete(status=500)
    failed = complete(http, server, fid)
    assert failed.status_code == 500 and failed.json()["code"] == 500 and failed.json()["message"]
    assert server.file_object(fid)["status"] == "uploading"

    server.fail_complete(status=200, code=1099)
    assert business(complete(http, server, fid))["code"] == 1099

    server.fail_complete(status=0)
    with pytest.raises(requests.ConnectionError):
        complete(http, server, fid)

    server.fail_complete(status=502, commit=True)  # done, but the answer is lost
    assert complete(http, server, fid).status_code == 502
    assert server.file_object(fid)["status"] == "confirmed"
    assert ok(complete(http, server, fid))["status"] == "confirmed"
    assert server.request_count("complete") == 5


def test_fail_request(server: CommunityServer, http: requests.Session) -> None:
    server.fail_request("init", status=503, times=1)
    response = call(http, server, "POST", f"{API}/upload/init", json={})
    assert response.status_code == 503 and response.json()["code"] == 503
    server.fail_request("list", status=500)
    assert call(http, server, "GET", API).status_code == 500
    assert call(http, server, "GET", API).status_code == 200
    with pytest.raises(ValueError):
        server.fail_request("part")


def test_fail_download(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(PART)
    info = upload(http, server, data)
    server.fail_request("download", status=503)
    failed = http.get(info["oss_url"], timeout=TIMEOUT)
    assert failed.status_code == 503 and xml_code(failed) == "InjectedFault"
    server.fail_request("download", status=0)  # connection closed, no answer
    with pytest.raises(requests.ConnectionError):
        http.get(info["cdn_url"], timeout=TIMEOUT)
    assert http.get(info["imagekit_url"], timeout=TIMEOUT).content == data
    assert server.request_count("download") == 3
    with pytest.raises(ValueError):
        server.fail_request("download", commit=True)


def test_faults_are_shared_fault_records(server: CommunityServer) -> None:
    server.fail_part(2, status=503, times=2, file_id="f1")
    server.fail_request("info", status=0, times=None)
    assert server.pending_faults == [
        "<fault fail route=part part_number=2 file_id=f1 status=503 2x>",
        "<fault fail route=info status=0 code=None commit=False forever>",
    ]
    for bad in (42, 600, -1):
        with pytest.raises(ValueError):
            server.fail_request("info", status=bad)
    with pytest.raises(ValueError):
        server.fail_part(1, times=0)
    server.clear_faults()
    assert server.pending_faults == []


def test_counters(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(2 * PART + 1)
    info = upload(http, server, data)
    call(http, server, "GET", f"{API}/{info['id']}")
    call(http, server, "GET", f"{API}/by-key", params={"file_key": info["file_key"]})
    call(http, server, "GET", API)
    http.get(info["oss_url"], timeout=TIMEOUT)
    call(http, server, "DELETE", f"{API}/{info['id']}")
    assert server.requests == {
        "init": 1, "part": 3, "complete": 1, "info": 1, "by_key": 1, "list": 1, "download": 1, "delete": 1,
    }  # fmt: skip
    assert server.request_count() == 10
    assert server.part_bytes == len(data)
    server.reset_counters()
    assert server.requests == {} and server.part_puts == 0 and server.part_log == []
    assert server.wait_idle(1.0)


# ------------------------------------------------------- list / key / delete


def test_list_pagination_and_filters(server: CommunityServer, http: requests.Session, clock: Clock) -> None:
    ids = []
    for i, category in enumerate(["video", "image", "video", "document", "video"]):
        clock.now += 1
        ids.append(upload(http, server, os.urandom(100 + i), category=category)["id"])
    pending = init(http, server, os.urandom(50), category="video")["file_id"]
    bobs = upload(http, server, os.urandom(70), token=BOB, category="video")["id"]

    first = ok(call(http, server, "GET", API, params={"page": 1, "page_size": 2}))
    assert first["pagination"] == {"total": 6, "page": 1, "page_size": 2, "total_pages": 3}
    assert [f["id"] for f in first["list"]] == [pending, ids[4]]  # newest first
    last = ok(call(http, server, "GET", API, params={"page": 3, "page_size": 2}))
    assert [f["id"] for f in last["list"]] == [ids[1], ids[0]]
    beyond = ok(call(http, server, "GET", API, params={"page": 9, "page_size": 2}))
    assert beyond["list"] == [] and beyond["pagination"]["total"] == 6

    videos = ok(call(http, server, "GET", API, params={"category": "video"}))
    assert [f["id"] for f in videos["list"]] == [pending, ids[4], ids[2], ids[0]]
    confirmed_videos = ok(call(http, server, "GET", API, params={"category": "video", "status": "confirmed"}))
    assert [f["id"] for f in confirmed_videos["list"]] == [ids[4], ids[2], ids[0]]
    assert ok(call(http, server, "GET", API, params={"status": "pending"}))["pagination"]["total"] == 1
    defaults = ok(call(http, server, "GET", API))["pagination"]
    assert (defaults["page"], defaults["page_size"]) == (1, 20)

    assert [f["id"] for f in ok(call(http, server, "GET", API, token=BOB))["list"]] == [bobs]
    everyone = ok(call(http, server, "GET", API, token=None, api_key=API_KEY))
    assert everyone["pagination"]["total"] == 7
    one_user = ok(call(http, server, "GET", API, token=None, api_key=API_KEY, params={"user_id": "bob"}))
    assert [f["id"] for f in one_user["list"]] == [bobs]

    for params, code in (
        ({"status": "done"}, CODE_BAD_REQUEST),
        ({"page": 0}, CODE_BAD_REQUEST),
        ({"page_size": 101}, CODE_BAD_REQUEST),
        ({"page": "x"}, CODE_BAD_REQUEST),
        ({"category": "music"}, CODE_BAD_CATEGORY),
    ):
        assert business(call(http, server, "GET", API, params=params))["code"] == code


def test_by_key(server: CommunityServer, http: requests.Session) -> None:
    info = upload(http, server, os.urandom(500), file_ext="png", category="image")
    key = info["file_key"]
    assert key.startswith("community/images/")
    forms = [
        key,
        "/" + key,
        info["oss_url"],
        info["cdn_url"],
        info["imagekit_url"],
        "oss/" + key,  # what the SDK's extract_file_key makes of the emulator's oss_url
        "ik/" + key,
    ]
    for form in forms:
        found = ok(call(http, server, "GET", f"{API}/by-key", params={"file_key": form}))
        assert found["id"] == info["id"], form
    unknown = call(http, server, "GET", f"{API}/by-key", params={"file_key": "community/images/nope.png"})
    assert unknown.status_code == 404
    assert business(call(http, server, "GET", f"{API}/by-key"))["code"] == CODE_BAD_REQUEST


def test_delete(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(PART + 5)
    info = upload(http, server, data)
    path = server.stored_path(info["id"])
    assert path.exists()
    assert ok(call(http, server, "DELETE", f"{API}/{info['id']}")) is None
    assert call(http, server, "GET", f"{API}/{info['id']}").status_code == 404
    assert call(http, server, "GET", f"{API}/by-key", params={"file_key": info["file_key"]}).status_code == 404
    assert http.get(info["oss_url"], timeout=TIMEOUT).status_code == 404
    assert ok(call(http, server, "GET", API))["list"] == []
    assert call(http, server, "DELETE", f"{API}/{info['id']}").status_code == 404
    assert not path.exists()
    assert server.file_object(info["id"])["deleted_at"] is not None
    # A deleted file is no dedup target.
    assert init(http, server, data)["status"] == "pending"


def test_abort(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(2 * PART)
    answer = init(http, server, data)
    assert put_part(http, answer["parts"][0], data).status_code == 200
    assert server.part_path(answer["file_id"], 1).exists()
    abort = call(http, server, "POST", f"{API}/upload/abort", json={"file_id": answer["file_id"]})
    assert ok(abort) is None
    assert not server.part_path(answer["file_id"], 1).exists()
    assert call(http, server, "GET", f"{API}/{answer['file_id']}").status_code == 404
    assert put_part(http, answer["parts"][1], data).status_code == 404
    assert init(http, server, data)["file_id"] != answer["file_id"]

    done = upload(http, server, os.urandom(10))
    refused = call(http, server, "POST", f"{API}/upload/abort", json={"file_id": done["id"]})
    assert business(refused)["code"] == CODE_WRONG_STATE


# ---------------------------------------------------------------- download


def test_range_get(server: CommunityServer, http: requests.Session) -> None:
    data = os.urandom(3 * PART + 7)
    info = upload(http, server, data)
    url = info["cdn_url"]

    def get(range_header: str) -> requests.Response:
        return http.get(url, headers={"Range": range_header}, timeout=TIMEOUT)

    first = get("bytes=0-9")
    assert first.status_code == 206 and first.content == data[:10]
    assert first.headers["Content-Range"] == f"bytes 0-9/{len(data)}"
    tail = get(f"bytes={PART}-")
    assert tail.status_code == 206 and tail.content == data[PART:]
    suffix = get("bytes=-5")
    assert suffix.status_code == 206 and suffix.content == data[-5:]
    clipped = get(f"bytes=10-{10 * len(data)}")
    assert clipped.status_code == 206 and clipped.content == data[10:]
    unsatisfiable = get(f"bytes={len(data)}-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{len(data)}"
    multi = get("bytes=0-1,5-6")
    assert multi.status_code == 200 and multi.content == data
    head = http.head(url, timeout=TIMEOUT)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
    assert head.headers["Accept-Ranges"] == "bytes"

    # Not downloadable before complete.
    pending = init(http, server, os.urandom(10))
    assert http.get(server.url + "/oss/" + pending["file_key"], timeout=TIMEOUT).status_code == 404


def test_restart_keeps_state(server: CommunityServer, http: requests.Session) -> None:
    info = upload(http, server, os.urandom(1000))
    port = server.port
    server.stop()
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + API, timeout=2)
    server.start()
    assert server.port == port
    assert ok(call(http, server, "GET", f"{API}/{info['id']}"))["status"] == "confirmed"


def test_concurrent_parts(server: CommunityServer) -> None:
    data = os.urandom(12 * PART)
    with requests.Session() as http:
        answer = init(http, server, data)
    errors: List[BaseException] = []

    def worker(parts: List[Dict[str, Any]]) -> None:
        try:
            with requests.Session() as session:
                for part in parts:
                    assert put_part(session, part, data).status_code == 200
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(answer["parts"][i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not errors
    with requests.Session() as http:
        ok(complete(http, server, answer["file_id"]))
    assert server.stored_sha256(answer["file_id"]) == sha256(data)


# ------------------------------------------------------------------- CLI


def first_line(proc: "subprocess.Popen[bytes]", timeout: float = 15.0) -> str:
    """The first line the process writes to stdout, read within ``timeout`` seconds."""
    lines: List[bytes] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not lines or not lines[0]:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr is not None else ""
        pytest.fail(f"no first line within {timeout} s; stderr: {err[-2000:]}")
    return lines[0].decode().strip()


def test_command_line_server(tmp_path: Path) -> None:
    storage = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "upclient.testing", "community", "--host", "127.0.0.1", "--port", "0",
            "--dir", str(storage), "--token", "cli-token=carol", "--api-key", "cli-key", "--part-size", "64K",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        printed = first_line(proc)
        assert re.fullmatch(r"community\+http://127\.0\.0\.1:\d+", printed)
        url = printed.removeprefix("community+")
        with requests.Session() as http:
            listed = http.get(url + API, headers={"Authorization": "Bearer cli-token"}, timeout=TIMEOUT)
            assert listed.status_code == 200 and listed.json()["code"] == 0
            data = os.urandom(100 * KiB)
            body = {"file_ext": "bin", "file_size": len(data), "file_md5": md5(data), "category": "general"}
            answer = http.post(url + f"{API}/upload/init", json=body, headers={"X-API-Key": "cli-key"}, timeout=TIMEOUT)
            assert answer.json()["code"] == CODE_USER_REQUIRED
            answer = http.post(
                url + f"{API}/upload/init", json=body, headers={"Authorization": "Bearer cli-token"}, timeout=TIMEOUT
            )
            parts = answer.json()["data"]["parts"]
            assert [p["size"] for p in parts] == [64 * KiB, 36 * KiB]
        assert storage.is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_command_line_sigint_and_usage(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "upclient.testing", "community", "--dir", str(tmp_path / "s"), "--token", "t"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert first_line(proc).startswith("community+http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
    usage = subprocess.run(
        [sys.executable, "-m", "upclient.testing", "community", "--part-size", "0"],
        capture_output=True,
        env=env,
        timeout=30,
    )
    assert usage.returncode == 2 and b"--part-size" in usage.stderr
