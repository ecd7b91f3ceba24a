"""Credentials go only to the server's own origin, end to end over 127.0.0.1.

Two recording reverse proxies stand in front of one real server: ``home``
is the origin the client is given, ``other`` another origin (another port)
in front of the same server, so a request sent there is answered as it
would be at home.  Each proxy records the headers it receives.  What must
hold (issue 11, item 2):

- the client's ``auth``, ``headers`` and a user:password given in the tus
  URL reach ``home``, and reach ``other`` only when it is in
  ``trusted_origins``;
- a caller's tus id on ``other`` is BadInput unless ``other`` is trusted;
- an upload URL on ``other`` that the server itself handed out (here: in a
  resume record) is used, but gets none of the credentials;
- the community token never reaches part or download URLs, whatever is trusted.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Tuple

import pytest

import upclient
from upclient import errors
from upclient.testing import CommunityServer

from .conftest import KiB, sha256_bytes
from .contract import HookedFileSource, resume_points

HEADER = ("X-Custom-Secret", "c0nfigured-header-value")
BEARER = "Bearer 0rigin-t0ken"
USER, PASSWORD = "us3r", "pa55w0rd-in-url"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
COMMUNITY_TOKEN = "c0mmunity-t0ken"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate", "content-length"}


class RecordingProxy:
    """A reverse proxy on 127.0.0.1 that forwards every request to ``upstream``
    (``http://host:port``) and records its method, path and headers."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.seen: List[Tuple[str, str, Dict[str, str]]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if not size:
                            return b"".join(chunks)
                        chunks.append(chunk)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                with proxy._lock:
                    proxy.seen.append((self.command, self.path, dict(self.headers.items())))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("POST", "PUT", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_BY_HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()
                self.close_connection = True

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="RecordingProxy", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "RecordingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def requests(self) -> List[Tuple[str, str, Dict[str, str]]]:
        with self._lock:
            return list(self.seen)


def credentials(headers: Dict[str, str]) -> Dict[str, str]:
    """The credential headers among ``headers`` (names in any case)."""
    wanted = {"authorization", HEADER[0].lower(), "x-api-key"}
    return {k.lower(): v for k, v in headers.items() if k.lower() in wanted}


def on(proxy: RecordingProxy, url: str) -> str:
    """``url`` with its origin replaced by the proxy's."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(proxy.origin)[:2] + parts[2:])


@pytest.fixture
def home(rus_server):
    with RecordingProxy(rus_server.url) as proxy:
        yield proxy


@pytest.fixture
def other(rus_server):
    with RecordingProxy(rus_server.url) as proxy:
        yield proxy


#: How a client is given its credentials, and what they look like on the wire.
WAYS = {
    "auth and headers": ({"auth": lambda: {"Authorization": BEARER}, "headers": dict([HEADER])},
                         {"authorization": BEARER, HEADER[0].lower(): HEADER[1]}),
    "password in the URL": ({}, {"authorization": BASIC}),
}


def tus_client(home, way, store=None, **kw):
    settings, _ = WAYS[way]
    userinfo = f"{USER}:{PASSWORD}@" if way == "password in the URL" else ""
    url = f"tus+http://{userinfo}{home.origin.partition('://')[2]}/files/"
    kw.setdefault("retry", upclient.RetryPolicy(attempts=3, backoff=0.01))
    return upclient.Client(url, store=store, concat=False, **settings, **kw)


@pytest.mark.parametrize("way", sorted(WAYS))
def test_the_endpoint_gets_the_credentials_and_an_id_elsewhere_is_refused(home, other, rus_server, way):
    data = b"home and away" * 1000
    with tus_client(home, way) as client:
        result = client.put(data, key="a.bin")
        elsewhere = on(other, result.id)
        for verb in (client.info, client.get, client.delete, client.exists):
            with pytest.raises(errors.BadInput, match="trusted_origins"):
                verb(elsewhere)
    assert rus_server.stored_sha256(result.id) == sha256_bytes(data)
    assert home.requests() and all(credentials(h) == WAYS[way][1] for _, _, h in home.requests())
    assert other.requests() == []
    assert PASSWORD not in result.id and PASSWORD not in repr(result)


@pytest.mark.parametrize("way", sorted(WAYS))
def test_a_trusted_origin_gets_the_credentials(home, other, rus_server, way):
    data = b"trusted" * 1000
    with tus_client(home, way, trusted_origins=[other.origin]) as client:
        result = client.put(data, key="t.bin")
        info = client.info(on(other, result.id))
    assert info.size == len(data) and info.complete
    assert other.requests() and all(credentials(h) == WAYS[way][1] for _, _, h in other.requests())


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
@pytest.mark.parametrize("way", sorted(WAYS))
def test_an_upload_url_the_server_handed_out_elsewhere_gets_credentials_only_if_trusted(
    home, other, rus_server, make_file, tmp_path, way, trusted
):
    path, digest = make_file(256 * KiB, name="moved.bin")
    store = upclient.FileStore(tmp_path / "store")
    trust = {"trusted_origins": [other.origin]} if trusted else {}
    cancel = threading.Event()
    with tus_client(home, way, store=store, part_size=64 * KiB, concurrency=1, **trust) as client:
        with HookedFileSource(path, lambda off: off >= 128 * KiB and cancel.set()) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, cancel=cancel)
        (key,) = resume_points(store)
        record = store.load(key)
        # the server said (say) the upload lives on another origin now
        record["state"]["url"] = record["id"] = on(other, record["state"]["url"])
        store.save(key, record)
        result = client.put(path)
    assert result.resumed and result.id == record["id"]
    assert rus_server.stored_sha256(result.id) == digest
    seen = other.requests()
    assert {m for m, _, _ in seen} >= {"HEAD", "PATCH"}
    expected = WAYS[way][1] if trusted else {}
    assert all(credentials(h) == expected for _, _, h in seen), [credentials(h) for _, _, h in seen]


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_the_community_token_never_reaches_part_or_download_urls(tmp_path, trusted):
    data = bytes(range(256)) * 1024  # 256 KiB: four parts
    with CommunityServer(tmp_path / "community", tokens={COMMUNITY_TOKEN}, min_part_size=64 * KiB) as server:
        with RecordingProxy(server.url) as home, RecordingProxy(server.url) as storage:
            server.public_url = storage.origin  # part, object and CDN URLs on another origin
            trust = {"trusted_origins": [storage.origin]} if trusted else {}
            with upclient.Client("community+" + home.origin, token=COMMUNITY_TOKEN, store=None,
                                 part_size=64 * KiB, headers=dict([HEADER]), **trust) as client:
                result = client.put(data, key="clip.mp4")
                assert client.get(result.id) == data
            assert server.stored_sha256(result.id) == hashlib.sha256(data).hexdigest()
            api, parts = home.requests(), storage.requests()
    assert {m for m, _, _ in parts} == {"PUT", "GET"} and len(parts) == 5
    assert all(credentials(h) == {} for _, _, h in parts), [credentials(h) for _, _, h in parts]
    assert api and all(credentials(h) == {"authorization": f"Bearer {COMMUNITY_TOKEN}",
                                          HEADER[0].lower(): HEADER[1]} for _, _, h in api)
