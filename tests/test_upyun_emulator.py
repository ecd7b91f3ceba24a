"""The UPYUN emulator (upclient.testing.upyun), driven with plain requests signed by signing.py.

The emulator checks them with its own signature code (upclient.testing.upyun.signatures),
so the two implementations check each other; both are held to the protocol's test vectors.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import re
import socket
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import emulator_process
from tests.conftest import sha256_bytes as sha256
from upclient.backends.upyun import signing
from upclient.testing.upyun import LIST_END, UpyunServer
from upclient.testing.upyun import signatures as emulator_signatures

KiB = 1024
MiB = 1024 * KiB
SVC, OP, PW = "svc", "op", "pw"
TIMEOUT = 10
START = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UpyunServer]:
    with UpyunServer(
        tmp_path / "upyun",
        service=SVC,
        operator=OP,
        password=PW,
        operators={"other": "pw2"},
        services=["svc2"],
        permissions={"svc2": ["other"]},
        domains=["cdn.example.com"],
        clock=lambda: START,  # time stands still but for server.advance()
        task_duration=10,
    ) as srv:
        yield srv


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """One keep-alive session per test."""
    session = requests.Session()
    try:
        yield session
    finally:
        session.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def call(
    http: requests.Session,
    server: UpyunServer,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Optional[Dict[str, str]] = None,
    data: Any = None,
    operator: str = OP,
    password: str = PW,
    sign_uri: Optional[str] = None,
    date: Optional[str] = None,
    scheme: str = "UPYUN",
    sign_md5: bool = True,
) -> requests.Response:
    """A request signed as the service wants it (the URI signed is the path with its query)."""
    uri = signing.quote_path(path) + (f"?{query}" if query else "")
    date = date or signing.http_date(server.clock())
    hdrs = {"Date": date, **(headers or {})}
    content_md5 = hdrs.get("Content-MD5") if sign_md5 else None
    sig = signing.signature(signing.password_md5(password), method, sign_uri or uri, date, None, content_md5)
    hdrs["Authorization"] = f"{scheme} {operator}:{sig}"
    return http.request(method, server.url + uri, headers=hdrs, data=data, timeout=TIMEOUT)


def refused(resp: requests.Response, status: int, code: int, msg: Optional[str] = None) -> Dict[str, Any]:
    """The response is an UPYUN error answer."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code, body
    assert body["id"] == resp.headers["X-Request-Id"]
    if msg is not None:
        assert body["msg"] == msg
    return body


def put(http: requests.Session, server: UpyunServer, key: str, data: bytes, **kw: Any) -> requests.Response:
    resp = call(http, server, "PUT", f"/{SVC}/{key}", data=data, **kw)
    assert resp.status_code == 200, resp.text
    return resp


# ------------------------------------------------------------------- auth


def test_every_auth_error_has_its_code(server: UpyunServer, http: requests.Session) -> None:
    url = server.url + "/svc/"
    date = signing.http_date(server.clock())
    refused(http.get(url, headers={"Date": date}, timeout=TIMEOUT), 401, 40100004, "need authorization header")
    refused(http.get(url, headers={"Date": date, "Authorization": "Bearer x"}, timeout=TIMEOUT), 401, 40100003)
    good = signing.authorization(OP, signing.password_md5(PW), "GET", "/svc/", date)
    refused(http.get(url, headers={"Authorization": good}, timeout=TIMEOUT), 401, 40100001, "need date header")
    refused(
        http.get(url, headers={"Authorization": good, "Date": "yesterday"}, timeout=TIMEOUT),
        401, 40100016, "invalid date value in header",
    )  # fmt: skip
    refused(call(http, server, "GET", "/svc/", password="wrong"), 401, 40100005, "signature error")
    refused(call(http, server, "GET", "/nosuch/"), 401, 40100012, "bucket not exist")
    refused(call(http, server, "GET", "/svc/", operator="nobody"), 401, 40100006, "user not exists")
    refused(call(http, server, "GET", "/svc2/"), 401, 40100017, "user need permission")
    assert call(http, server, "GET", "/svc2/", operator="other", password="pw2").status_code == 200
    assert call(http, server, "GET", "/svc/", operator="other", password="pw2").status_code == 200
    # a refused request does not reach its route's handler, but is counted
    assert server.request_count("list") >= 8


def test_both_uri_variants_any_scheme_case_and_x_date(server: UpyunServer, http: requests.Session) -> None:
    put(http, server, "a.txt", b"12345")
    with_query = call(http, server, "GET", "/svc/", query="usage")
    path_only = call(http, server, "GET", "/svc/", query="usage", sign_uri="/svc/")
    assert with_query.text == path_only.text == "5"
    assert call(http, server, "GET", "/svc/", query="usage", scheme="UpYun").status_code == 200
    assert call(http, server, "GET", "/svc/", query="usage", scheme="upyun").status_code == 200
    date = signing.http_date(server.clock())
    auth = signing.authorization(OP, signing.password_md5(PW), "GET", "/svc/a.txt", date)
    resp = http.get(server.url + "/svc/a.txt", headers={"X-Date": date, "Authorization": auth}, timeout=TIMEOUT)
    assert resp.content == b"12345"
    # every answer has a request id, successes included
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])


def test_the_date_window_follows_the_server_clock(server: UpyunServer, http: requests.Session) -> None:
    then = signing.http_date(server.clock())
    assert call(http, server, "GET", "/svc/", date=then).status_code == 200
    server.advance(29 * 60)
    assert call(http, server, "GET", "/svc/", date=then).status_code == 200
    server.advance(2 * 60)
    refused(call(http, server, "GET", "/svc/", date=then), 401, 40100002, "date offset error")
    assert call(http, server, "GET", "/svc/").status_code == 200  # a fresh date is fine
    ahead = signing.http_date(server.clock() + 31 * 60)
    refused(call(http, server, "GET", "/svc/", date=ahead), 401, 40100002)


# The protocol page's test vectors (UPYUN's API documentation): the emulator's
# own signature code must reproduce them, without the client's signing.py.
VECTORS = [
    (
        "password123", "482c811da5d5b4bc6d497ffa98491e38", "PUT", "/upyun-temp/demo.jpg",
        "Wed, 09 Nov 2016 14:26:58 GMT", "7ac66c0f148de9519b8bd264312c4d64", "YUaAZX+WNAcJdNGHS5SBlITME5A=",
    ),
    (
        "password", "5f4dcc3b5aa765d61d8327deb882cf99", "POST", "/api/v1/echo",
        "Fri, 20 Jan 2017 08:46:20 GMT", "d36489794822f8d33fd28217d8a5bed4", "W738BergX15B+jso8fSPzKd0/zQ=",
    ),
]  # fmt: skip


@pytest.mark.parametrize("password, key, method, uri, date, content_md5, sig", VECTORS)
def test_the_emulator_signs_the_documented_vectors_with_its_own_code(
    password: str, key: str, method: str, uri: str, date: str, content_md5: str, sig: str
) -> None:
    assert emulator_signatures.signing_key(password) == key.encode("ascii")
    assert emulator_signatures.rest_signature(password, method, uri, date, None, content_md5) == sig
    assert emulator_signatures.rest_authorization("op", password, method, uri, date, content_md5) == f"UPYUN op:{sig}"
    assert emulator_signatures.format_date(emulator_signatures.parse_date(date) or 0) == date


def test_the_emulator_accepts_the_documented_signature_and_no_other(tmp_path: Path) -> None:
    password, _, method, uri, date, content_md5, sig = VECTORS[0]
    when = emulator_signatures.parse_date(date)
    assert when == 1478701618.0
    with UpyunServer(tmp_path / "v", service="upyun-temp", operator="op", password=password, clock=lambda: when) as srv:
        headers = {"Date": date, "Content-MD5": content_md5}
        with requests.Session() as http:
            # signed well: the request gets past auth to the body check (b"x" is not that MD5)
            good = http.put(
                srv.url + uri, data=b"x", headers={**headers, "Authorization": f"UPYUN op:{sig}"}, timeout=TIMEOUT
            )
            refused(good, 403, 40300007, "content md5 not match")
            forged = "UPYUN op:" + sig.replace("Y", "Z", 1)
            forged_headers = {**headers, "Authorization": forged}
            refused(http.put(srv.url + uri, data=b"x", headers=forged_headers, timeout=TIMEOUT), 401, 40100005)
            unsigned_md5 = {"Date": date, "Content-MD5": "0" * 32, "Authorization": f"UPYUN op:{sig}"}
            refused(http.put(srv.url + uri, data=b"x", headers=unsigned_md5, timeout=TIMEOUT), 401, 40100005)


def test_the_emulator_does_not_import_the_client_backends() -> None:
    package = Path(emulator_signatures.__file__).parent
    for source in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            assert not any(n.startswith("upclient.backends") for n in names), (source.name, names)


def test_content_md5_must_be_signed_well_formed_and_right(server: UpyunServer, http: requests.Session) -> None:
    data = b"payload"
    refused(
        call(http, server, "PUT", "/svc/m.bin", data=data, headers={"Content-MD5": md5(data)}, sign_md5=False),
        401, 40100005,
    )  # fmt: skip
    refused(
        call(http, server, "PUT", "/svc/m.bin", data=data, headers={"Content-MD5": "xyz"}),
        400, 40001001, "wrong content-md5",
    )  # fmt: skip
    refused(
        call(http, server, "PUT", "/svc/m.bin", data=data, headers={"Content-MD5": md5(b"other")}),
        403, 40300007, "content md5 not match",
    )  # fmt: skip
    assert not server.exists("m.bin")
    put(http, server, "m.bin", data, headers={"Content-MD5": md5(data).upper()})
    assert server.stored_bytes("m.bin") == data


# ------------------------------------------------------------------- REST


def test_put_stores_bytes_type_metadata_and_secret(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(200 * KiB)
    resp = put(http, server, "dir/sub/a.txt", data, headers={"x-upyun-meta-color": "blue", "Content-Secret": "abc1"})
    assert resp.headers["ETag"] == f'"{md5(data)}"'
    assert server.stored_sha256("dir/sub/a.txt") == sha256(data)
    assert server.stored_path("/dir/sub/a.txt").read_bytes() == data
    meta = server.metadata("dir/sub/a.txt")
    assert meta["content_type"] == "text/plain" and meta["md5"] == md5(data) and meta["size"] == len(data)
    assert meta["meta"] == {"x-upyun-meta-color": "blue"} and meta["secret"] == "abc1"
    assert meta["mtime"] == START
    put(http, server, "blob", b"x", headers={"Content-Type": "application/x-thing"})
    assert server.metadata("blob")["content_type"] == "application/x-thing"
    put(http, server, "noext", b"x")
    assert server.metadata("noext")["content_type"] == "application/octet-stream"
    # the parents were made on the way
    assert server.exists("dir") and server.exists("dir/sub")
    refused(call(http, server, "PUT", "/svc/s.bin", data=b"x", headers={"Content-Secret": "no-dash"}), 403, 40300016)
    # a chunked body
    resp = call(http, server, "PUT", "/svc/chunked.bin", data=iter([b"a" * 1000, b"b" * 70000]))
    assert resp.status_code == 200
    assert server.stored_bytes("chunked.bin") == b"a" * 1000 + b"b" * 70000
    # an image says what it is
    png = (
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\x0dIHDR"
        + (640).to_bytes(4, "big")
        + (480).to_bytes(4, "big")
        + b"\0" * 20
    )
    resp = put(http, server, "pic.png", png)
    assert (resp.headers["x-upyun-width"], resp.headers["x-upyun-height"]) == ("640", "480")
    assert resp.headers["x-upyun-file-type"] == "PNG"


def test_get_whole_and_one_range(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(3000)
    put(http, server, "r.bin", data, headers={"x-upyun-meta-k": "v"})
    whole = call(http, server, "GET", "/svc/r.bin")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Content-MD5"] == md5(data) and whole.headers["x-upyun-meta-k"] == "v"
    part = call(http, server, "GET", "/svc/r.bin", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == "bytes 100-199/3000"
    tail = call(http, server, "GET", "/svc/r.bin", headers={"Range": "bytes=-10"})
    assert tail.content == data[-10:]
    for bad in ("bytes=5000-", "bytes=0-1,5-6", "lines=1-2", "bytes=9-3"):
        refused(call(http, server, "GET", "/svc/r.bin", headers={"Range": bad}), 400, 40001161, "wrong range")
    refused(call(http, server, "GET", "/svc/missing.bin"), 404, 40400001, "file or directory not found")


def test_head_tells_files_from_folders(server: UpyunServer, http: requests.Session) -> None:
    put(http, server, "f/x.json", b"{}", headers={"x-upyun-meta-a": "1"})
    info = call(http, server, "HEAD", "/svc/f/x.json")
    assert info.status_code == 200
    assert info.headers["x-upyun-file-type"] == "file"
    assert info.headers["x-upyun-file-size"] == "2"
    assert info.headers["x-upyun-file-date"] == str(int(START))
    assert info.headers["Content-Md5"] == md5(b"{}")
    assert info.headers["x-upyun-meta-a"] == "1"
    folder = call(http, server, "HEAD", "/svc/f")
    assert folder.headers["x-upyun-file-type"] == "folder"
    root = call(http, server, "HEAD", "/svc/")
    assert root.headers["x-upyun-file-type"] == "folder"
    missing = call(http, server, "HEAD", "/svc/nope")
    assert missing.status_code == 404 and missing.content == b""


def test_delete_files_and_empty_folders(server: UpyunServer, http: requests.Session) -> None:
    put(http, server, "d/one.txt", b"1")
    refused(call(http, server, "DELETE", "/svc/d"), 403, 40300005, "directory not empty")
    assert call(http, server, "DELETE", "/svc/d/one.txt", headers={"x-upyun-async": "true"}).status_code == 200
    assert not server.exists("d/one.txt")
    with pytest.raises(KeyError):
        server.metadata("d/one.txt")
    assert call(http, server, "DELETE", "/svc/d/").status_code == 200
    assert not server.exists("d")
    refused(call(http, server, "DELETE", "/svc/d"), 404, 40400001)
    refused(call(http, server, "DELETE", "/svc/"), 403, 40300011)


def test_mkdir_and_file_folder_conflicts(server: UpyunServer, http: requests.Session) -> None:
    assert call(http, server, "POST", "/svc/a/b", headers={"Folder": "true"}).status_code == 200
    assert server.exists("a/b") and server.stored_path("a/b").is_dir()
    refused(call(http, server, "POST", "/svc/a/b/", headers={"Folder": "true"}), 406, 40600002, "folder already exists")
    assert call(http, server, "POST", "/svc/c", headers={"x-upyun-folder": "true"}).status_code == 200
    put(http, server, "file.txt", b"x")
    refused(call(http, server, "POST", "/svc/file.txt", headers={"Folder": "true"}), 406, 40600001)
    refused(call(http, server, "PUT", "/svc/a/b", data=b"x"), 406, 40600001, "dir not acceptable")
    refused(call(http, server, "PUT", "/svc/file.txt/below", data=b"x"), 406, 40600001)
    refused(call(http, server, "POST", "/svc/other"), 405, 40500000)


def raw_request(
    server: UpyunServer, method: str, target: str, headers: Dict[str, str], body: bytes = b""
) -> Tuple[int, bytes]:
    """A request sent as written (requests would normalise dot segments away)."""
    conn = HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def signed_headers(server: UpyunServer, method: str, uri: str) -> Dict[str, str]:
    date = signing.http_date(server.clock())
    return {"Date": date, "Authorization": signing.authorization(OP, signing.password_md5(PW), method, uri, date)}


def test_keys_that_would_leave_the_directory_are_refused(server: UpyunServer, http: requests.Session) -> None:
    for target in ("/svc/../escape.txt", "/svc/a/../../escape.txt", "/svc/./x", "/svc/a%00b", "/svc/%2e%2e/x"):
        status, body = raw_request(server, "PUT", target, signed_headers(server, "PUT", target), b"data")
        assert status == 400, (target, body)
        assert json.loads(body)["code"] == 40000015
    status, body = raw_request(server, "PUT", "/svc/a%09b", signed_headers(server, "PUT", "/svc/a%09b"), b"x")
    assert status == 403 and json.loads(body)["code"] == 40300001
    root = server.directory.parent
    assert not list(root.glob("escape*")) and not (server.directory / "files" / "escape.txt").exists()
    # empty segments are dropped
    put(http, server, "p//q", b"x")
    assert server.stored_bytes("p/q") == b"x"


def test_a_cut_off_upload_stores_nothing(server: UpyunServer) -> None:
    headers = signed_headers(server, "PUT", "/svc/cut.bin")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"PUT /svc/cut.bin HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 100000\r\n\r\n".encode())
        sock.sendall(b"z" * 40000)
    assert server.wait_idle(disconnected=True)
    assert not server.exists("cut.bin")
    assert list((server.directory / "tmp").iterdir()) == []


def test_list_pages_with_iter_order_end_marker_and_json(server: UpyunServer, http: requests.Session) -> None:
    for name in ("b.txt", "a.txt", "e.txt", "d.txt"):
        put(http, server, f"l/{name}", name.encode())
    assert call(http, server, "POST", "/svc/l/c", headers={"Folder": "true"}).status_code == 200
    everything = call(http, server, "GET", "/svc/l")
    lines = everything.text.split("\n")
    assert lines == [
        f"a.txt\tN\t5\t{int(START)}", f"b.txt\tN\t5\t{int(START)}", f"c\tF\t0\t{int(START)}",
        f"d.txt\tN\t5\t{int(START)}", f"e.txt\tN\t5\t{int(START)}",
    ]  # fmt: skip
    assert everything.headers["x-upyun-list-iter"] == LIST_END
    names: List[str] = []
    token = None
    pages = 0
    while True:
        hdrs = {"X-List-Limit": "2", **({"X-List-Iter": token} if token else {})}
        page = call(http, server, "GET", "/svc/l/", headers=hdrs)
        names += [line.split("\t")[0] for line in page.text.split("\n") if line]
        token = page.headers["x-upyun-list-iter"]
        pages += 1
        if token == LIST_END:
            break
    assert names == ["a.txt", "b.txt", "c", "d.txt", "e.txt"] and pages == 3
    after_end = call(http, server, "GET", "/svc/l/", headers={"X-List-Iter": LIST_END})
    assert after_end.text == "" and after_end.headers["x-upyun-list-iter"] == LIST_END
    desc = call(http, server, "GET", "/svc/l", headers={"X-List-Order": "desc", "X-List-Limit": "3"})
    assert [line.split("\t")[0] for line in desc.text.split("\n")] == ["e.txt", "d.txt", "c"]
    more = call(
        http,
        server,
        "GET",
        "/svc/l",
        headers={"X-List-Order": "desc", "X-List-Iter": desc.headers["x-upyun-list-iter"]},
    )
    assert [line.split("\t")[0] for line in more.text.split("\n")] == ["b.txt", "a.txt"]
    as_json = call(http, server, "GET", "/svc/l", headers={"Accept": "application/json", "X-List-Limit": "4"})
    payload = as_json.json()
    assert payload["files"][0] == {"type": "text/plain", "length": 5, "name": "a.txt", "last_modified": int(START)}
    assert payload["files"][2] == {"type": "folder", "length": 0, "name": "c", "last_modified": int(START)}
    assert payload["iter"] == as_json.headers["x-upyun-list-iter"] != LIST_END
    empty = call(http, server, "GET", "/svc/l/c")
    assert empty.status_code == 200 and empty.text == "" and empty.headers["x-upyun-list-iter"] == LIST_END
    root = call(http, server, "GET", "/svc/")
    assert root.text == f"l\tF\t0\t{int(START)}"
    refused(call(http, server, "GET", "/svc/l", headers={"X-List-Order": "up"}), 403, 40300014)
    refused(call(http, server, "GET", "/svc/l", headers={"X-List-Limit": "many"}), 400, 40000015)


def test_usage_counts_the_bytes_of_the_service(server: UpyunServer, http: requests.Session) -> None:
    assert call(http, server, "GET", "/svc/", query="usage").text == "0"
    put(http, server, "a", b"x" * 1000)
    put(http, server, "b/c", b"y" * 24)
    assert call(http, server, "GET", "/svc/", query="usage").text == "1024"


def test_move_and_copy(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(5000)
    put(http, server, "src.bin", data, headers={"x-upyun-meta-a": "1"})
    assert (
        call(http, server, "PUT", "/svc/copy/one.bin", headers={"X-Upyun-Copy-Source": "/svc/src.bin"}).status_code
        == 200
    )
    assert server.stored_bytes("copy/one.bin") == data and server.stored_bytes("src.bin") == data
    assert server.metadata("copy/one.bin")["meta"] == {"x-upyun-meta-a": "1"}
    replaced = call(
        http, server, "PUT", "/svc/copy/two.bin",
        headers={"X-Upyun-Copy-Source": "/svc/src.bin", "X-Upyun-Metadata-Directive": "replace",
                 "x-upyun-meta-b": "2"},
    )  # fmt: skip
    assert replaced.status_code == 200
    assert server.metadata("copy/two.bin")["meta"] == {"x-upyun-meta-b": "2"}
    assert (
        call(http, server, "PUT", "/svc/moved.bin", headers={"X-Upyun-Move-Source": "/svc/src.bin"}).status_code == 200
    )
    assert not server.exists("src.bin") and server.stored_sha256("moved.bin") == sha256(data)
    refused(
        call(http, server, "PUT", "/svc/moved.bin", headers={"X-Upyun-Move-Source": "/svc/moved.bin"}), 400, 40000041
    )
    for source in ("/svc2/moved.bin", "svc/moved.bin", "/svc/copy", "/svc/"):
        refused(call(http, server, "PUT", "/svc/x.bin", headers={"X-Upyun-Copy-Source": source}), 400, 40000042)
    refused(call(http, server, "PUT", "/svc/x.bin", headers={"X-Upyun-Copy-Source": "/svc/gone.bin"}), 404, 40400001)


def test_patch_metadata(server: UpyunServer, http: requests.Session) -> None:
    put(http, server, "m.txt", b"m", headers={"x-upyun-meta-a": "1", "x-upyun-meta-b": "2"})
    assert (
        call(http, server, "PATCH", "/svc/m.txt", query="metadata=merge", headers={"x-upyun-meta-c": "3"}).status_code
        == 200
    )
    assert server.metadata("m.txt")["meta"] == {"x-upyun-meta-a": "1", "x-upyun-meta-b": "2", "x-upyun-meta-c": "3"}
    call(http, server, "PATCH", "/svc/m.txt", query="metadata=delete", headers={"x-upyun-meta-a": ""})
    assert server.metadata("m.txt")["meta"] == {"x-upyun-meta-b": "2", "x-upyun-meta-c": "3"}
    call(http, server, "PATCH", "/svc/m.txt", query="metadata=replace", headers={"x-upyun-meta-z": "9"})
    assert server.metadata("m.txt")["meta"] == {"x-upyun-meta-z": "9"}
    assert call(http, server, "HEAD", "/svc/m.txt").headers["x-upyun-meta-z"] == "9"
    refused(call(http, server, "PATCH", "/svc/m.txt", query="metadata=swap"), 400, 40000015)
    refused(call(http, server, "PATCH", "/svc/none.txt", query="metadata=merge"), 404, 40400001)


# -------------------------------------------------------------- multipart


def initiate(
    http: requests.Session, server: UpyunServer, key: str, length: int, *,
    part_size: int = MiB, disorder: bool = False, extra: Optional[Dict[str, str]] = None,
) -> str:  # fmt: skip
    headers = {
        "X-Upyun-Multi-Stage": "initiate",
        "X-Upyun-Multi-Length": str(length),
        "X-Upyun-Multi-Part-Size": str(part_size),
        **(extra or {}),
    }
    if disorder:
        headers["X-Upyun-Multi-Disorder"] = "true"
    resp = call(http, server, "PUT", f"/svc/{key}", headers=headers)
    assert resp.status_code == 204, resp.text
    assert resp.headers["x-upyun-next-part-id"] == "0"
    return resp.headers["x-upyun-multi-uuid"]


def send_part(
    http: requests.Session, server: UpyunServer, key: str, upload: str, part_id: int, data: bytes, *,
    stage: str = "upload", extra: Optional[Dict[str, str]] = None,
) -> requests.Response:  # fmt: skip
    headers = {
        "X-Upyun-Multi-Stage": stage,
        "X-Upyun-Multi-Uuid": upload,
        "X-Upyun-Part-Id": str(part_id),
        "Content-MD5": md5(data),
        **(extra or {}),
    }
    return call(http, server, "PUT", f"/svc/{key}", headers=headers, data=data)


def complete(
    http: requests.Session, server: UpyunServer, key: str, upload: str, whole_md5: Optional[str] = None
) -> requests.Response:
    headers = {"X-Upyun-Multi-Stage": "complete", "X-Upyun-Multi-Uuid": upload}
    if whole_md5:
        headers["X-Upyun-Multi-MD5"] = whole_md5
    return call(http, server, "PUT", f"/svc/{key}", headers=headers)


def chunks(data: bytes, size: int = MiB) -> List[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_serial_multipart_and_its_errors(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(3 * MiB + 512 * KiB)
    parts = chunks(data)
    upload = initiate(http, server, "big/serial.bin", len(data), extra={"x-upyun-meta-origin": "test"})
    assert server.uploads()[upload]["parts"] == [] and server.uploads()[upload]["next_part_id"] == 0
    wrong = send_part(http, server, "big/serial.bin", upload, 1, parts[1])
    refused(wrong, 400, 40011061, "part id error")
    assert wrong.headers["X-Upyun-Next-Part-Id"] == "0"
    resp = send_part(http, server, "big/serial.bin", upload, 0, parts[0])
    assert resp.status_code == 204 and resp.headers["x-upyun-next-part-id"] == "1"
    assert resp.headers["x-upyun-multi-uuid"] == upload
    refused(send_part(http, server, "big/serial.bin", upload, 1, parts[1][:-1]), 403, 40300030, "wrong content-length")
    refused(
        send_part(http, server, "big/serial.bin", upload, 1, parts[1], extra={"Content-MD5": md5(b"no")}),
        403, 40300007,
    )  # fmt: skip
    again = send_part(http, server, "big/serial.bin", upload, 0, parts[0])
    refused(again, 400, 40011061)
    assert again.headers["X-Upyun-Next-Part-Id"] == "1"
    for i in (1, 2):
        assert send_part(http, server, "big/serial.bin", upload, i, parts[i]).headers["x-upyun-next-part-id"] == str(
            i + 1
        )
    refused(send_part(http, server, "big/serial.bin", upload, 3, parts[3] + b"x"), 403, 40300030)
    last = send_part(http, server, "big/serial.bin", upload, 3, parts[3])
    assert last.headers["x-upyun-next-part-id"] == "-1"
    refused(send_part(http, server, "big/serial.bin", upload, 3, parts[3]), 400, 40011062, "part already complete")
    refused(send_part(http, server, "big/serial.bin", upload, 4, b"x"), 400, 40011061)
    done = complete(http, server, "big/serial.bin", upload, md5(data))
    assert done.status_code == 201
    assert done.headers["x-upyun-multi-uuid"] == upload
    assert done.headers["x-upyun-multi-length"] == str(len(data))
    assert done.headers["x-upyun-multi-type"] == "application/octet-stream"
    assert server.stored_sha256("big/serial.bin") == sha256(data)
    assert server.metadata("big/serial.bin")["meta"] == {"x-upyun-meta-origin": "test"}
    refused(complete(http, server, "big/serial.bin", upload), 400, 40011059, "file already upload")
    refused(send_part(http, server, "big/serial.bin", upload, 0, parts[0]), 400, 40011059)
    assert upload not in server.uploads()
    assert list((server.directory / "multipart").iterdir()) == []
    # the same path again: 204, the file replaced
    small = os.urandom(10)
    second = initiate(http, server, "big/serial.bin", len(small))
    assert send_part(http, server, "big/serial.bin", second, 0, small).status_code == 204
    assert complete(http, server, "big/serial.bin", second).status_code == 204
    assert server.stored_bytes("big/serial.bin") == small


def test_disorder_multipart_query_and_info(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(2 * MiB + 10)
    parts = chunks(data, MiB)
    upload = initiate(http, server, "par.bin", len(data), disorder=True, extra={"X-Upyun-Multi-Type": "video/mp4"})
    assert send_part(http, server, "par.bin", upload, 2, parts[2]).headers["x-upyun-next-part-id"] == "0"
    assert send_part(http, server, "par.bin", upload, 0, parts[0]).headers["x-upyun-next-part-id"] == "1"
    query = call(http, server, "GET", "/svc/par.bin", headers={"X-Upyun-Multi-Uuid": upload})
    assert query.json() == {
        "parts": [{"id": 0, "size": MiB, "etag": md5(parts[0])}, {"id": 2, "size": 10, "etag": md5(parts[2])}]
    }
    info = call(
        http, server, "GET", "/svc/par.bin", headers={"X-Upyun-Multi-Uuid": upload, "X-Upyun-Multi-Info": "true"}
    )
    assert info.status_code == 200
    assert info.headers["X-Upyun-Next-Part-Id"] == "1"
    assert info.headers["X-Upyun-Multi-Length"] == str(len(data))
    assert info.headers["X-Upyun-Multi-Part-Size"] == str(MiB)
    assert info.headers["X-Upyun-Multi-Uuid"] == upload
    missing = complete(http, server, "par.bin", upload)
    refused(missing, 400, 40011061)
    assert missing.headers["X-Upyun-Next-Part-Id"] == "1"
    # a part sent again replaces it
    assert send_part(http, server, "par.bin", upload, 0, parts[0]).status_code == 204
    assert send_part(http, server, "par.bin", upload, 1, parts[1]).headers["x-upyun-next-part-id"] == "-1"
    done = complete(http, server, "par.bin", upload, md5(data))
    assert done.status_code == 201 and done.headers["x-upyun-multi-type"] == "video/mp4"
    assert server.stored_sha256("par.bin") == sha256(data)
    assert server.metadata("par.bin")["content_type"] == "video/mp4"
    assert server.part_receipts(upload) == {0: 2, 1: 1, 2: 1}
    assert [(p, s) for u, p, s, _ in server.part_log if u == upload] == [(2, 204), (0, 204), (0, 204), (1, 204)]


def test_whole_file_md5_mismatch_drops_the_upload(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(1000)
    upload = initiate(http, server, "bad.bin", len(data))
    send_part(http, server, "bad.bin", upload, 0, data)
    refused(complete(http, server, "bad.bin", upload, md5(b"something else")), 400, 40011060, "file md5 not match")
    assert not server.exists("bad.bin")
    refused(complete(http, server, "bad.bin", upload), 400, 40011058, "x-upyun-multi-uuid not found")


def test_unfinished_uploads_expire_after_24_hours(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(MiB + 1)
    upload = initiate(http, server, "exp.bin", len(data))
    send_part(http, server, "exp.bin", upload, 0, data[:MiB])
    server.advance(23 * 3600)
    assert upload in server.uploads()
    server.advance(2 * 3600)
    assert server.uploads() == {}
    refused(send_part(http, server, "exp.bin", upload, 1, data[MiB:]), 400, 40011058, "x-upyun-multi-uuid not found")
    refused(call(http, server, "GET", "/svc/exp.bin", headers={"X-Upyun-Multi-Uuid": upload}), 400, 40011058)
    assert not (server.directory / "multipart" / upload).exists()


def test_uuids_are_bound_to_their_path_and_checked(server: UpyunServer, http: requests.Session) -> None:
    upload = initiate(http, server, "one.bin", 10)
    refused(send_part(http, server, "two.bin", upload, 0, b"0123456789"), 400, 40011058)
    refused(send_part(http, server, "one.bin", "no-such-uuid", 0, b"0123456789"), 400, 40011058)
    bad = {"X-Upyun-Multi-Stage": "initiate", "X-Upyun-Multi-Length": "10"}
    refused(
        call(http, server, "PUT", "/svc/x", headers={**bad, "X-Upyun-Multi-Part-Size": str(MiB + 1)}), 400, 40000015
    )
    refused(
        call(http, server, "PUT", "/svc/x", headers={**bad, "X-Upyun-Multi-Part-Size": str(51 * MiB)}), 400, 40000015
    )
    refused(call(http, server, "PUT", "/svc/x", headers={"X-Upyun-Multi-Stage": "initiate"}), 400, 40000015)
    refused(
        call(http, server, "PUT", "/svc/x", headers={**bad, "X-Upyun-Multi-Stage": "complete,initiate"}), 400, 40000015
    )


def test_combined_stages(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(2 * MiB + 100)
    parts = chunks(data)
    first = call(
        http, server, "PUT", "/svc/combo.bin", data=parts[0],
        headers={"X-Upyun-Multi-Stage": "initiate,upload", "X-Upyun-Multi-Length": str(len(data)),
                 "X-Upyun-Multi-Part-Size": str(MiB), "X-Upyun-Part-Id": "0", "Content-MD5": md5(parts[0]),
                 "x-upyun-meta-via": "combined"},
    )  # fmt: skip
    assert first.status_code == 204 and first.headers["x-upyun-next-part-id"] == "1"
    upload = first.headers["x-upyun-multi-uuid"]
    assert send_part(http, server, "combo.bin", upload, 1, parts[1]).status_code == 204
    last = send_part(
        http, server, "combo.bin", upload, 2, parts[2], stage="upload,complete", extra={"X-Upyun-Multi-MD5": md5(data)}
    )
    assert last.status_code == 201 and last.headers["x-upyun-multi-length"] == str(len(data))
    assert server.stored_sha256("combo.bin") == sha256(data)
    assert server.metadata("combo.bin")["meta"] == {"x-upyun-meta-via": "combined"}
    small = b"tiny file"
    once = call(
        http, server, "PUT", "/svc/once.txt", data=small,
        headers={"X-Upyun-Multi-Stage": "initiate,upload,complete", "X-Upyun-Multi-Length": str(len(small)),
                 "X-Upyun-Part-Id": "0", "X-Upyun-Multi-MD5": md5(small)},
    )  # fmt: skip
    assert once.status_code == 201 and server.stored_bytes("once.txt") == small
    assert server.metadata("once.txt")["content_type"] == "text/plain"
    stages = {"X-Upyun-Multi-Stage": "initiate,upload,complete", "X-Upyun-Part-Id": "0"}
    empty = call(http, server, "PUT", "/svc/empty.bin", data=b"", headers={**stages, "X-Upyun-Multi-Length": "0"})
    assert empty.status_code == 201 and server.stored_bytes("empty.bin") == b""
    assert server.request_count("initiate") == 3 and server.request_count("complete") == 3
    # an error after an initiate in the same request names the new upload
    stages = {"X-Upyun-Multi-Stage": "initiate,upload", "X-Upyun-Part-Id": "0"}
    half = call(
        http, server, "PUT", "/svc/half.bin", data=b"short", headers={**stages, "X-Upyun-Multi-Length": str(MiB + 1)}
    )
    refused(half, 403, 40300030)
    assert half.headers["x-upyun-multi-uuid"] in server.uploads()


def test_cancel(server: UpyunServer, http: requests.Session) -> None:
    upload = initiate(http, server, "c.bin", 3 * MiB)
    send_part(http, server, "c.bin", upload, 0, os.urandom(MiB))
    assert call(http, server, "DELETE", "/svc/c.bin", headers={"X-Upyun-Multi-Uuid": upload}).status_code == 204
    assert server.uploads() == {} and not (server.directory / "multipart" / upload).exists()
    refused(call(http, server, "DELETE", "/svc/c.bin", headers={"X-Upyun-Multi-Uuid": upload}), 400, 40011058)
    assert server.requests["cancel"] == 2


# ------------------------------------------------------------------- FORM


def policy_b64(policy: Dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(policy).encode()).decode()


def form_post(
    http: requests.Session,
    server: UpyunServer,
    policy: Dict[str, Any],
    file: Optional[Tuple[str, bytes]] = ("test.png", b"not really a png"),
    *,
    uri: str = "/svc/",
    password: str = PW,
    header_auth: bool = False,
    raw_policy: Optional[str] = None,
    allow_redirects: bool = True,
) -> requests.Response:
    encoded = raw_policy if raw_policy is not None else policy_b64(policy)
    auth = signing.authorization(
        OP, signing.password_md5(password), "POST", uri, str(policy.get("date", "")), encoded, policy.get("content-md5")
    )
    fields: List[Tuple[str, Any]] = [("policy", (None, encoded))]
    headers = {}
    if header_auth:
        headers["Authorization"] = auth
    else:
        fields.append(("authorization", (None, auth)))
    if file is not None:
        fields.append(("file", file))
    return http.post(server.url + uri, files=fields, headers=headers, timeout=TIMEOUT, allow_redirects=allow_redirects)


def base_policy(server: UpyunServer, **extra: Any) -> Dict[str, Any]:
    return {
        "bucket": SVC,
        "save-key": "/form/{filename}{.suffix}",
        "expiration": int(server.clock()) + 600,
        "date": signing.http_date(server.clock()),
        **extra,
    }


def test_form_upload_and_save_key_placeholders(server: UpyunServer, http: requests.Session) -> None:
    data = os.urandom(50 * KiB)
    resp = form_post(
        http, server, base_policy(server, **{"save-key": "/{filename}{filename}.{suffix}{.suffix}"}), ("test.png", data)
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"code": 200, "message": "ok", "url": "/testtest.png.png", "time": int(START)}
    assert server.stored_sha256("testtest.png.png") == sha256(data)
    template = "/{year}/{mon}/{day}/{hour}{min}{sec}_{filemd5}_{random}_{random32}{.suffix}"
    resp = form_post(
        http, server, base_policy(server, **{"save-key": template}), ("a.bin", data), uri="/svc", header_auth=True
    )
    url = resp.json()["url"]
    match = re.fullmatch(rf"/2025/10/09/085320_{md5(data)}_([0-9a-z]{{16}})_([0-9a-z]{{32}})\.bin", url)
    assert match, url
    assert server.stored_bytes(url) == data
    # the SDK's policy says "service" rather than "bucket"; extra fields go to the file
    policy = base_policy(
        server, **{"content-type": "text/x-custom", "x-upyun-meta-who": "form", "content-secret": "s3"}
    )
    policy["service"] = policy.pop("bucket")
    resp = form_post(http, server, policy, ("notes.txt", b"hello"))
    assert resp.json()["url"] == "/form/notes.txt"
    meta = server.metadata("form/notes.txt")
    assert (meta["content_type"], meta["meta"], meta["secret"]) == ("text/x-custom", {"x-upyun-meta-who": "form"}, "s3")
    # an image answers its size; ext-param comes back
    gif = b"GIF89a" + (3).to_bytes(2, "little") + (2).to_bytes(2, "little") + b"\0" * 30
    answer = form_post(http, server, base_policy(server, **{"ext-param": "ctx-1"}), ("x.gif", gif)).json()
    assert (answer["image-width"], answer["image-height"], answer["image-type"]) == (3, 2, "GIF")
    assert answer["ext-param"] == "ctx-1"
    # the file part may come first
    encoded = policy_b64(base_policy(server, **{"save-key": "/first.bin"}))
    auth = signing.authorization(OP, signing.password_md5(PW), "POST", "/svc/", base_policy(server)["date"], encoded)
    resp = http.post(
        server.url + "/svc/",
        files=[("file", ("f.bin", b"file first")), ("policy", (None, encoded)), ("authorization", (None, auth))],
        timeout=TIMEOUT,
    )
    assert resp.status_code == 200 and server.stored_bytes("first.bin") == b"file first"


def test_form_policy_checks(server: UpyunServer, http: requests.Session) -> None:
    data = b"0123456789"
    refused(form_post(http, server, base_policy(server), ("t.png", data), raw_policy=""), 400, 40000007, "need policy")
    refused(
        form_post(http, server, base_policy(server), raw_policy="!!notbase64"), 400, 40000009, "decode policy error"
    )
    refused(form_post(http, server, base_policy(server), raw_policy=base64.b64encode(b"[1]").decode()), 400, 40000009)
    refused(form_post(http, server, base_policy(server, bucket="svc2")), 400, 40000003)
    refused(form_post(http, server, base_policy(server), password="nope"), 401, 40100005)
    refused(
        form_post(http, server, base_policy(server, expiration=int(START) - 1)),
        403,
        40300006,
        "authorization has expired",
    )
    no_key = base_policy(server)
    del no_key["save-key"]
    refused(form_post(http, server, no_key), 400, 40000001, "need save-key")
    no_exp = base_policy(server)
    del no_exp["expiration"]
    refused(form_post(http, server, no_exp), 400, 40000004, "need expiration")
    refused(
        form_post(http, server, base_policy(server, **{"content-length-range": "11,100"}), ("t.png", data)),
        403,
        40300008,
    )
    refused(
        form_post(http, server, base_policy(server, **{"content-length-range": "0,9"}), ("t.png", data)), 403, 40300009
    )
    assert (
        form_post(http, server, base_policy(server, **{"content-length-range": "10,10"}), ("t.png", data)).status_code
        == 200
    )
    refused(
        form_post(http, server, base_policy(server, **{"allow-file-type": "jpg,gif"}), ("t.png", data)), 403, 40300010
    )
    assert (
        form_post(http, server, base_policy(server, **{"allow-file-type": "jpg,PNG"}), ("t.png", data)).status_code
        == 200
    )
    refused(form_post(http, server, base_policy(server, **{"content-md5": md5(b"x")}), ("t.png", data)), 403, 40300007)
    ok = form_post(
        http, server, base_policy(server, **{"content-md5": md5(data), "save-key": "/md5.bin"}), ("t.png", data)
    )
    assert ok.status_code == 200 and server.stored_bytes("md5.bin") == data
    refused(form_post(http, server, base_policy(server), None), 400, 40000005, "need file")
    not_form = call(http, server, "POST", "/svc/", data=b"x", headers={"Content-Type": "text/plain"})
    refused(not_form, 415, 41500001)
    assert server.request_count("form") == 17


def test_form_return_url_redirects_with_the_result(server: UpyunServer, http: requests.Session) -> None:
    policy = base_policy(server, **{"return-url": "http://app.example/done?x=1", "save-key": "/r.txt"})
    resp = form_post(http, server, policy, ("r.txt", b"r"), allow_redirects=False)
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.netloc == "app.example" and location.path == "/done"
    assert parse_qs(location.query) == {
        "x": ["1"],
        "code": ["200"],
        "message": ["ok"],
        "url": ["/r.txt"],
        "time": [str(int(START))],
    }
    policy = base_policy(server, **{"return-url": "http://app.example/done", "allow-file-type": "jpg"})
    resp = form_post(http, server, policy, ("r.txt", b"r"), allow_redirects=False)
    assert resp.status_code == 302
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["code"] == ["40300010"]


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that records the POSTs it gets (notify-url callbacks)."""

    def __init__(self) -> None:
        self.got: List[Dict[str, Any]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                outer.arrived.set()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_form_notify_url_gets_a_signed_callback(
    server: UpyunServer, http: requests.Session, receiver: Receiver
) -> None:
    policy = base_policy(server, **{"notify-url": receiver.url + "/hook?from=upyun", "save-key": "/n.bin"})
    resp = form_post(http, server, policy, ("n.bin", b"notify me"))
    assert resp.status_code == 200
    assert server.wait_callbacks(TIMEOUT)
    assert len(receiver.got) == 1
    got = receiver.got[0]
    assert got["path"] == "/hook?from=upyun"
    assert parse_qs(got["body"].decode()) == {
        "code": ["200"],
        "message": ["ok"],
        "url": ["/n.bin"],
        "time": [str(int(START))],
    }
    assert got["headers"]["Content-MD5"] == md5(got["body"])
    assert signing.verify_callback(got["headers"], got["path"], OP, PW, body=got["body"], now=server.clock())
    assert not signing.verify_callback(got["headers"], got["path"], OP, "wrong", body=got["body"], now=server.clock())
    [record] = server.callbacks
    assert record["kind"] == "form" and record["status"] == 200 and record["error"] is None and record["done"]
    # a URL elsewhere is recorded, never called
    policy = base_policy(server, **{"notify-url": "http://example.com/hook", "save-key": "/m.bin"})
    assert form_post(http, server, policy, ("m.bin", b"x")).status_code == 200
    elsewhere = server.callbacks[1]
    assert elsewhere["status"] is None and "not sent" in elsewhere["error"] and len(receiver.got) == 1


# ------------------------------------------------------------------- purge


def purge_request(
    http: requests.Session, server: UpyunServer, urls: List[str], *, password: str = PW, service: str = SVC
) -> requests.Response:
    text = "\n".join(urls) + "\n"
    date = signing.http_date(server.clock())
    auth = signing.purge_authorization(service, OP, signing.password_md5(password), text, date)
    return http.post(
        server.url + "/purge/", data={"purge": text}, headers={"Date": date, "Authorization": auth}, timeout=TIMEOUT
    )


def test_purge(server: UpyunServer, http: requests.Session) -> None:
    urls = ["http://svc.b0.upaiyun.com/a.png", "http://elsewhere.com/b.png", "http://cdn.example.com/c.png"]
    resp = purge_request(http, server, urls)
    assert resp.status_code == 200 and resp.json() == {"invalid_domain_of_url": ["http://elsewhere.com/b.png"]}
    assert server.purged == [urls[0], urls[2]]
    refused(purge_request(http, server, urls, password="bad"), 401, 40100005)
    refused(purge_request(http, server, urls, service="nosuch"), 401, 40100012)
    refused(http.post(server.url + "/purge/", data={"purge": "x"}, timeout=TIMEOUT), 401, 40100004)
    many = [f"http://svc.b0.upaiyun.com/{i}" for i in range(300)]
    assert purge_request(http, server, many).status_code == 200
    refused(purge_request(http, server, many), 406, 40600003)
    server.advance(61)
    assert purge_request(http, server, many).status_code == 200
    refused(http.get(server.url + "/purge/", timeout=TIMEOUT), 405, 40500000)


def test_absolute_form_targets_reach_the_apis(server: UpyunServer, http: requests.Session) -> None:
    """As through an HTTP proxy: the SDK's fixed hosts land on the emulator."""
    http.proxies = {"http": server.url}
    text = "http://svc.b0.upaiyun.com/x\n"
    date = signing.http_date(server.clock())
    auth = signing.purge_authorization(SVC, OP, signing.password_md5(PW), text, date)
    headers = {"Date": date, "Authorization": auth}
    resp = http.post("http://purge.upyun.com/purge/", data={"purge": text}, headers=headers, timeout=TIMEOUT)
    assert resp.status_code == 200 and server.purged == ["http://svc.b0.upaiyun.com/x"]
    headers = signed_headers(server, "GET", "/svc/?usage")
    assert http.get("http://v0.api.upyun.com/svc/?usage", headers=headers, timeout=TIMEOUT).text == "0"


# ------------------------------------------------------------------- tasks


def submit_tasks(
    http: requests.Session, server: UpyunServer, tasks: List[Any], *, notify: str = "", tamper: bool = False
) -> requests.Response:
    form = {
        "service": SVC,
        "notify_url": notify,
        "source": "/video.mp4",
        "tasks": base64.b64encode(json.dumps(tasks).encode()).decode(),
        "accept": "json",
    }
    body = "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in form.items()).encode()
    headers = {"Content-MD5": md5(body), "Content-Type": "application/x-www-form-urlencoded"}
    return call(http, server, "POST", "/pretreatment/", data=body + (b"&x=1" if tamper else b""), headers=headers)


def task_query(http: requests.Session, server: UpyunServer, what: str, ids: List[str]) -> Dict[str, Any]:
    resp = call(http, server, "GET", f"/{what}/", query=f"service={SVC}&task_ids={'%2C'.join(ids)}")
    assert resp.status_code == 200, resp.text
    return resp.json()["tasks"]


def test_processing_tasks(server: UpyunServer, http: requests.Session, receiver: Receiver) -> None:
    resp = submit_tasks(
        http, server, [{"type": "video", "save_as": "/out.mp4"}, {"type": "thumbnail"}], notify=receiver.url + "/t"
    )
    assert resp.status_code == 200, resp.text
    ids = resp.json()
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert task_query(http, server, "status", ids + ["f" * 32]) == {ids[0]: 0, ids[1]: 0, "f" * 32: None}
    server.advance(5)
    assert task_query(http, server, "status", ids) == {ids[0]: 50, ids[1]: 50}
    assert task_query(http, server, "result", ids) == {ids[0]: None, ids[1]: None}
    server.advance(5)
    assert task_query(http, server, "status", ids) == {ids[0]: 100, ids[1]: 100}
    results = task_query(http, server, "result", ids)
    assert results[ids[0]]["path"] == ["/out.mp4"] and results[ids[0]]["task_id"] == ids[0]
    assert results[ids[1]]["status_code"] == 200
    deadline = time.monotonic() + TIMEOUT
    while len(receiver.got) < 2 and time.monotonic() < deadline:
        receiver.arrived.wait(0.1)
    assert server.wait_callbacks(TIMEOUT)
    assert sorted(json.loads(g["body"])["task_id"] for g in receiver.got) == sorted(ids)
    for got in receiver.got:
        assert signing.verify_callback(got["headers"], got["path"], OP, PW, body=got["body"], now=server.clock())
    assert set(server.tasks()) == set(ids)
    refused(submit_tasks(http, server, [{}] * 11), 400, 40000015)
    refused(submit_tasks(http, server, [{}], tamper=True), 403, 40300007)
    refused(
        call(http, server, "GET", "/status/", query=f"service={SVC}&task_ids={'%2C'.join(['a'] * 21)}"), 400, 40000015
    )
    refused(call(http, server, "GET", "/status/", query="service=svc2&task_ids=a"), 401, 40100017)


# ------------------------------------------------------------------- faults


def test_faults_on_demand(server: UpyunServer, http: requests.Session) -> None:
    server.fail("put", status=429, retry_after=2)
    busy = call(http, server, "PUT", "/svc/f.bin", data=b"x")
    refused(busy, 429, 42900001, "too many requests")
    assert busy.headers["Retry-After"] == "2" and not server.exists("f.bin")
    put(http, server, "f.bin", b"x")
    # an unauthenticated request does not use a fault up
    server.fail("get", status=503)
    refused(call(http, server, "GET", "/svc/f.bin", password="bad"), 401, 40100005)
    refused(call(http, server, "GET", "/svc/f.bin"), 503, 50300000, "unknown error")
    assert call(http, server, "GET", "/svc/f.bin").content == b"x"
    # a dropped connection
    server.fail("head", status=0)
    with pytest.raises(requests.ConnectionError):
        call(http, server, "HEAD", "/svc/f.bin")
    # by part id, and forever until cleared
    data = os.urandom(2 * MiB)
    upload = initiate(http, server, "p.bin", len(data), disorder=True)
    server.fail("part", status=503, part_id=1, times=None)
    assert server.pending_faults == ["<fault fail route=part part_id=1 status=503 forever>"]
    assert send_part(http, server, "p.bin", upload, 0, data[:MiB]).status_code == 204
    for _ in range(2):
        refused(send_part(http, server, "p.bin", upload, 1, data[MiB:]), 503, 50300000)
    server.clear_faults()
    assert send_part(http, server, "p.bin", upload, 1, data[MiB:]).status_code == 204
    assert server.part_receipts(upload) == {0: 1, 1: 3}  # the refused bodies came in full too
    # commit: the complete happens, its answer is lost
    server.fail("complete", status=0, commit=True)
    with pytest.raises(requests.ConnectionError):
        complete(http, server, "p.bin", upload)
    assert server.stored_sha256("p.bin") == sha256(data)
    refused(complete(http, server, "p.bin", upload), 400, 40011059)
    server.fail("*", status=500, code=50000001, msg="boom", key="other.bin")
    put(http, server, "f2.bin", b"y")
    refused(call(http, server, "PUT", "/svc/other.bin", data=b"z"), 500, 50000001, "boom")
    with pytest.raises(ValueError):
        server.fail("nosuch")


def test_restart_keeps_files_and_port(server: UpyunServer, http: requests.Session) -> None:
    put(http, server, "keep.txt", b"kept", headers={"x-upyun-meta-k": "v"})
    port = server.port
    server.stop()
    assert not server.running
    server.start()
    assert server.port == port
    assert call(http, server, "GET", "/svc/keep.txt").content == b"kept"
    assert server.metadata("keep.txt")["meta"] == {"x-upyun-meta-k": "v"}


def test_a_temporary_directory_is_removed_at_close() -> None:
    server = UpyunServer().start()
    directory = server.directory
    try:
        assert (directory / "files" / "svc").is_dir()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", server.endpoint)
    finally:
        server.close()
    assert not directory.exists()
    with pytest.raises(ValueError):
        UpyunServer(service="purge")


# ------------------------------------------------------------------- CLI


def test_command_line_server(tmp_path: Path) -> None:
    storage = tmp_path / "cli"
    args = ["upyun", "--host", "127.0.0.1", "--port", "0", "--dir", str(storage), "--service", "clisvc",
            "--operator", "cliop", "--password", "clipw"]
    with emulator_process(*args) as (proc, printed):
        assert printed["url"] == "upyun://cliop@clisvc"
        assert re.fullmatch(r"--endpoint 127\.0\.0\.1:\d+ --password clipw", printed["flags"]), printed
        endpoint = printed["flags"].split()[1]
        date = signing.http_date()
        auth = signing.authorization("cliop", signing.password_md5("clipw"), "PUT", "/clisvc/hello.txt", date)
        headers = {"Date": date, "Authorization": auth}
        resp = requests.put(f"http://{endpoint}/clisvc/hello.txt", data=b"hi", headers=headers, timeout=TIMEOUT)
        assert resp.status_code == 200, resp.text
        assert (storage / "files" / "clisvc" / "hello.txt").read_bytes() == b"hi"
        proc.terminate()  # SIGTERM
        assert proc.wait(timeout=10) == 0
