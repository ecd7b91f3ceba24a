"""The backends of test_secrets.py on their real servers, each with its secrets, clients and faults.

A :class:`Rig` starts a backend's server(s) on 127.0.0.1, makes clients
holding distinctive secrets (and clients with credentials the server
refuses, secrets too), arms a 5xx or a dropped connection on demand, and
gives the CLI flags of the same.  Secrets learnt while the run goes (the
signatures of community part URLs, UPYUN's Authorization values) are added
to the rig's :class:`~tests.secrets_flow.Secrets` as they are made.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import itertools
import json
import os
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import upclient
from upclient import errors
from upclient.backends.fdfs.protocol import Cmd
from upclient.testing import CommunityServer, FaultProxy, FdfsServer, TusNodeServer, UpyunServer
from upclient.testing.servers import free_port

from .conftest import KiB, MiB
from .contract import HookedFileSource, resume_points
from .secrets_flow import Evidence, Secrets, run_cli

__all__ = ["Rig", "TusRig", "TusRelativeRig", "CommunityRig", "UpyunRig", "FdfsRig", "RETRY", "write_file"]

RETRY = upclient.RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.05)


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def write_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# -- one rig per backend: its servers, its secrets, its clients and its faults ---------------


class Rig:
    """A backend on its real server, with secrets; subclasses fill in the backend's part."""

    name = ""
    part = 256 * KiB
    #: The prefix ``iter`` lists under; None when the backend has no listing.
    prefix: Optional[str] = None
    #: The exit status of ``upclient ls`` for this backend.
    ls_status = 0
    #: Secrets the run learns as it goes (signatures): a library run that saw none did not test them.
    derived: Tuple[str, ...] = ()

    def __init__(self, work: Path, stack: contextlib.ExitStack) -> None:
        """``stack`` stops the servers the rig starts, also those of a constructor that fails midway."""
        self.work = work
        self.secrets = Secrets()
        self.stack = stack

    def key(self, name: str) -> str:
        return name

    def client(self, store: Any, **kw: Any) -> upclient.Client:
        raise NotImplementedError

    def wrong_client(self, store: Any, **kw: Any) -> Optional[upclient.Client]:
        """A client whose credentials (secrets too) the server refuses; None without credentials."""
        return None

    def stored_sha256(self, result: upclient.UploadResult) -> str:
        raise NotImplementedError

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """While the server refuses the wrong client's credentials (it does so itself by default)."""
        yield

    def server_error(self) -> "contextlib.AbstractContextManager[None]":
        raise NotImplementedError

    def dropped(self) -> "contextlib.AbstractContextManager[None]":
        raise NotImplementedError

    def extra_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        """Steps only this backend has."""

    def cli_args(self, wrong: bool = False) -> Tuple[List[str], Dict[str, str]]:
        """The flags (URL and credentials) of a CLI run, and its environment; ``wrong``: refused ones."""
        raise NotImplementedError

    def cli_extra(self, ev: Evidence, env: Dict[str, str], flags: List[str]) -> None:
        """CLI runs only this backend has; ``flags``: part size and store."""

    @contextlib.contextmanager
    def _armed(self, server: Any, arm: Callable[[], None]) -> Iterator[None]:
        arm()
        try:
            yield
        finally:
            server.clear_faults()


class TusRig(Rig):
    name = "tus"
    relative = False
    ls_status = 1  # tus has no listing

    def __init__(self, work: Path, stack: contextlib.ExitStack, node: TusNodeServer) -> None:
        super().__init__(work, stack)
        s = self.secrets
        self.user = "alice"
        self.password = s.add("tus URL password", "tusPW-S3CRET-4d1e7a")
        self.wrong_password = s.add("tus wrong URL password", "tusWRONG-S3CRET-77c2")
        s.add("Basic credentials of the URL", basic(self.user, self.password))
        s.add("Basic credentials of the wrong URL", basic(self.user, self.wrong_password))
        self.header_token = s.add("bearer token in headers=", "hdrTOKEN-S3CRET-90ab3f")
        self.auth_token = s.add("token from auth=", "authTOKEN-S3CRET-5e61c0")
        if self.relative:
            node = self.stack.enter_context(TusNodeServer(work / "tus-relative", relative_location=True))
        self.node = node
        self.proxy = self.stack.enter_context(FaultProxy(node.url))
        self.endpoint = self.proxy.url_for(node.url)

    def url(self, password: str) -> str:
        scheme, _, rest = self.endpoint.partition("://")
        return f"tus+{scheme}://{self.user}:{password}@{rest}"

    def client(self, store: Any, **kw: Any) -> upclient.Client:
        return upclient.Client(self.url(self.password), store=store, headers={"X-Api-Token": self.header_token},
                               **kw)

    def token_client(self, store: Any, **kw: Any) -> upclient.Client:
        """Credentials as headers: a bearer token in ``headers=``, another from ``auth=`` (no URL password)."""
        return upclient.Client("tus+" + self.endpoint, store=store,
                               headers={"Authorization": f"Bearer {self.header_token}"},
                               auth=lambda: {"X-Session-Token": self.auth_token}, **kw)

    def wrong_client(self, store: Any, **kw: Any) -> Optional[upclient.Client]:
        return upclient.Client(self.url(self.wrong_password), store=store, **kw)

    def stored_sha256(self, result: upclient.UploadResult) -> str:
        return self.node.stored_sha256(result.id)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        # @tus/server checks no credentials: the proxy in front refuses them, as a gateway would
        with self._armed(self.proxy, lambda: self.proxy.respond(401, {}, times=None, body="bad credentials")):
            yield

    def server_error(self) -> "contextlib.AbstractContextManager[None]":
        return self._armed(self.proxy, lambda: self.proxy.respond(503, {"Retry-After": "0"}, times=None))

    def dropped(self) -> "contextlib.AbstractContextManager[None]":
        # cut within the request head: the server gets no byte, so the tries make no progress and end
        return self._armed(self.proxy, lambda: self.proxy.reset_after(100, "PATCH", times=None))

    def extra_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        self.token_flow(ev, store)
        self.gone_flow(ev, store)

    def token_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        """The verbs and failures again, with the credentials in headers."""
        path = self.work / "tokens.bin"
        digest = write_file(path, 5 * self.part + 7)
        with self.token_client(store, part_size=self.part, concurrency=2, retry=RETRY) as client:
            ev.objects("tus: client with tokens", client, client.backend, client.settings)
            result = ev.attempt("tus: put with tokens", lambda: client.put(path, key="tokens.bin"))
            assert self.stored_sha256(result) == digest
            ev.attempt("tus: info with tokens", lambda: client.info(result.id))
            assert hashlib.sha256(client.get(result.id)).hexdigest() == digest
            with self.refusing():
                ev.attempt("tus: info with refused tokens (401)", lambda: client.info(result.id),
                           expect=errors.AuthError)
            with self.server_error():
                ev.attempt("tus: put with tokens meeting a 5xx", lambda: client.put(path, key="t5xx.bin"),
                           expect=errors.ServiceError)
            with self.dropped():
                ev.attempt("tus: put with tokens whose connection drops",
                           lambda: client.put(path.read_bytes(), key="tdrop.bin"), expect=errors.TransportError)
            client.delete(result.id)
            ev.attempt("tus: get with tokens of a deleted upload (404)", lambda: client.get(result.id),
                       expect=errors.NotFound)

    def gone_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        """A stored upload the server no longer has: the client says so (logs) and starts afresh."""
        path = self.work / "gone.bin"
        digest = write_file(path, 8 * self.part + 1)
        with self.client(store, part_size=self.part, retry=RETRY) as client:
            cancel = threading.Event()
            with HookedFileSource(path, lambda off: off >= 3 * self.part and cancel.set()) as src:
                ev.attempt("tus: put interrupted before its upload is deleted",
                           lambda: client.put(src, key="gone.bin", cancel=cancel), expect=errors.Cancelled)
            (record,) = [r for r in (store.load(k) for k in resume_points(store)) if r and r["id"]]
            ev.store("tus: a resume record", store.directory)
            client.delete(record["id"])
            ev.attempt("tus: info of the deleted upload", lambda: client.info(record["id"]), expect=errors.NotFound)
            result = ev.attempt("tus: put after its stored upload is gone", lambda: client.put(path, key="gone.bin"))
            assert not result.resumed and self.stored_sha256(result) == digest

    def cli_args(self, wrong: bool = False) -> Tuple[List[str], Dict[str, str]]:
        if wrong:
            return ["--to", self.url(self.wrong_password)], {}
        return ["--to", self.url(self.password), "-H", f"X-Api-Token: {self.header_token}"], {}


class TusRelativeRig(TusRig):
    """A tus server that answers with a relative ``Location``: the upload URLs are joined to the endpoint."""

    name = "tus-relative-location"
    relative = True


class CommunityRig(Rig):
    name = "community"
    prefix = ""
    derived = ("presigned part URL signature",)

    def __init__(self, work: Path, stack: contextlib.ExitStack) -> None:
        super().__init__(work, stack)
        s = self.secrets
        self.token = s.add("community token", "cmTOKEN-S3CRET-1b2c3d")
        self.api_key = s.add("community api_key", "cmAPIKEY-S3CRET-4e5f60")
        self.revoked = s.add("community revoked token", "cmREVOKED-S3CRET-7a8b9c")
        self.server = self.stack.enter_context(CommunityServer(
            work / "community", tokens={self.token: "user-1"}, api_keys={self.api_key}, min_part_size=64 * KiB))
        issue = self.server.part_urls.url

        def issued(*args: Any, **kw: Any) -> str:  # each presigned URL the server hands out: its signature
            url = issue(*args, **kw)
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            s.add("presigned part URL signature", query["Signature"][0])
            self.issued += 1
            return url

        self.issued = 0
        self.server.part_urls.url = issued  # type: ignore[method-assign]

    def client(self, store: Any, **kw: Any) -> upclient.Client:
        return upclient.Client("community+" + self.server.url, store=store, token=self.token, **kw)

    def wrong_client(self, store: Any, **kw: Any) -> Optional[upclient.Client]:
        return upclient.Client("community+" + self.server.url, store=store, token=self.revoked, **kw)

    def stored_sha256(self, result: upclient.UploadResult) -> str:
        return self.server.stored_sha256(result.id)

    def server_error(self) -> "contextlib.AbstractContextManager[None]":
        return self._armed(self.server, lambda: self.server.fail_part(1, status=503, times=None))

    def dropped(self) -> "contextlib.AbstractContextManager[None]":
        return self._armed(self.server, lambda: self.server.fail_part(2, status=0, times=None))

    def extra_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        path = self.work / "community-extra.bin"
        digest = write_file(path, 3 * self.part + 9)
        kw = dict(store=store, part_size=self.part, retry=RETRY)
        with upclient.Client("community+" + self.server.url, api_key=self.api_key, user_id="svc-1", **kw) as c:
            ev.objects("community: api-key client", c, c.backend)
            result = ev.attempt("community: put with an API key", lambda: c.put(path, category="document"))
            assert self.stored_sha256(result) == digest
            ev.attempt("community: info_by_key", lambda: c.info_by_key(result.key))
            ev.attempt("community: iter_files", lambda: list(itertools.islice(c.iter_files(page_size=2), 5)))
        # a password in the API URL too: refused (BadInput), or sent as Basic auth beside the API key
        url_password = self.secrets.add("community URL password", "cmURLPW-S3CRET-2c3d4e")
        self.secrets.add("Basic credentials of the community URL", basic("gateway", url_password))
        userinfo = "community+" + self.server.url.replace("://", f"://gateway:{url_password}@", 1)
        made = ev.attempt("community: a client of a URL with a password",
                          lambda: upclient.Client(userinfo, api_key=self.api_key, user_id="svc-1", **kw),
                          may_fail=True)
        if isinstance(made, upclient.Client):
            with made as c:
                ev.objects("community: client of a URL with a password", c, c.backend)
                ev.attempt("community: info of no such file through a URL with a password",
                           lambda: c.info("f" * 32), expect=errors.NotFound)
        with upclient.Client("community+" + self.server.url, api_key="cmWRONGKEY-S3CRET-d0e1", user_id="svc-1",
                             **kw) as c:
            self.secrets.add("community wrong api_key", "cmWRONGKEY-S3CRET-d0e1")
            ev.attempt("community: put with a wrong API key", lambda: c.put(path), expect=errors.AuthError)
        # part URLs that expire mid-upload (403 from the store), then a store nobody listens on
        other = self.work / "community-expiring.bin"
        digest = write_file(other, 4 * self.part)
        expired = threading.Event()

        def expire_once(offset: int) -> None:
            if offset >= self.part and not expired.is_set():
                expired.set()
                self.server.expire_urls()

        with self.client(store, part_size=self.part, concurrency=1, retry=RETRY) as c:
            with HookedFileSource(other, expire_once) as src:
                result = ev.attempt("community: put whose part URLs expire", lambda: c.put(src))
            assert expired.is_set() and self.stored_sha256(result) == digest
            self.server.public_url = f"http://127.0.0.1:{free_port()}"
            try:
                ev.attempt("community: part URLs on a closed port",
                           lambda: c.put(other.read_bytes() + b"x", key="refused.bin"), expect=errors.NetworkError)
            finally:
                self.server.public_url = None

    def cli_args(self, wrong: bool = False) -> Tuple[List[str], Dict[str, str]]:
        if wrong:
            return ["--to", "community+" + self.server.url], {"UPCLIENT_TOKEN": self.revoked}
        return ["--to", "community+" + self.server.url, "--token", self.token], {}


class SigningServer:
    """A user's UPYUN auth server on 127.0.0.1: it holds the password and signs what it is sent.

    Its own URL carries credentials (``http://signer:PASSWORD@host:port/sign?key=KEY``), as a real
    one might; ``refuse`` makes it answer 403.
    """

    def __init__(self, password: str, url_password: str, url_key: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from upclient.backends.upyun import signing

        owner = self
        self.refuse = False
        self.signed = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                f = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = signing.authorization(f["username"], md5_hex(password), f["method"], f["uri"], f["date"],
                                               f.get("policy"), f.get("content_md5")).encode()
                if owner.refuse:
                    answer = b"not signing that"
                owner.signed += 1
                self.send_response(403 if owner.refuse else 200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://signer:{url_password}@127.0.0.1:{self.httpd.server_port}/sign?key={url_key}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="signing-server", daemon=True)

    def __enter__(self) -> "SigningServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class UpyunRig(Rig):
    name = "upyun"
    part = MiB  # UPYUN's parts are whole MiB
    prefix = "flow/"
    derived = ("an UPYUN signature", "an UPYUN purge signature")

    def __init__(self, work: Path, stack: contextlib.ExitStack) -> None:
        super().__init__(work, stack)
        s = self.secrets
        self.password = s.add("UPYUN password", "upPW-S3CRET-6c5d4e")
        s.add("UPYUN signing key (the password's MD5)", md5_hex(self.password))
        self.wrong = s.add("UPYUN wrong password", "upWRONG-S3CRET-3f2a1b")
        s.add("UPYUN wrong signing key", md5_hex(self.wrong))
        # computed in a CLI process, where the test cannot see them
        s.add_pattern("an UPYUN Authorization header", r"UPYUN op:[A-Za-z0-9+/]{27}=")
        s.add_pattern("an UPYUN purge Authorization header", r"UpYun svc:op:[0-9a-f]{32}")
        self.server = self.stack.enter_context(UpyunServer(work / "upyun", service="svc", operator="op",
                                                            password=self.password))
        self.signer = self.stack.enter_context(SigningServer(
            self.password, s.add("auth server URL password", "signPW-S3CRET-8e7d6c"),
            s.add("auth server URL key", "signKEY-S3CRET-5b4a39")))

    def key(self, name: str) -> str:
        return "flow/" + name

    def _make(self, store: Any, kw: Dict[str, Any], **credentials: Any) -> upclient.Client:
        for name in ("endpoint", "purge_endpoint", "process_endpoint"):
            kw.setdefault(name, self.server.endpoint)
        client = upclient.Client("upyun://op@svc", store=store, **credentials, **kw)
        signer = client.backend.signer
        sign, sign_purge = signer.sign, signer.sign_purge

        def recorded_sign(*args: Any, **kwargs: Any) -> str:  # what goes in Authorization: a secret
            value = sign(*args, **kwargs)
            self.secrets.add("an UPYUN signature", value.rpartition(":")[2])
            return value

        def recorded_purge(*args: Any, **kwargs: Any) -> str:
            value = sign_purge(*args, **kwargs)
            self.secrets.add("an UPYUN purge signature", value.rpartition(":")[2])
            return value

        signer.sign, signer.sign_purge = recorded_sign, recorded_purge  # type: ignore[method-assign]
        return client

    def client(self, store: Any, **kw: Any) -> upclient.Client:
        return self._make(store, kw, password=self.password)

    def wrong_client(self, store: Any, **kw: Any) -> Optional[upclient.Client]:
        return self._make(store, kw, password=self.wrong)

    def stored_sha256(self, result: upclient.UploadResult) -> str:
        return self.server.stored_sha256(result.key)

    def server_error(self) -> "contextlib.AbstractContextManager[None]":
        return self._armed(self.server, lambda: self.server.fail("part", status=503, times=None))

    def dropped(self) -> "contextlib.AbstractContextManager[None]":
        return self._armed(self.server, lambda: self.server.fail("part", status=0, times=None))

    def extra_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        self.auth_server_flow(ev, store)
        endpoint_password = self.secrets.add("UPYUN endpoint URL password", "upENDPW-S3CRET-9a8b7c")
        ev.attempt("upyun: an endpoint with a password",  # BadInput, or a client that never shows it
                   lambda: self._make(store, {"endpoint": f"http://op:{endpoint_password}@{self.server.endpoint}"},
                                      password=self.password).put(b"x", key="flow/endpoint.txt"), may_fail=True)
        with self._make(store, {"retry": RETRY}, password_md5=md5_hex(self.password)) as c:
            ev.objects("upyun: client given the password's MD5", c, c.backend)
            small = ev.attempt("upyun: FORM put", lambda: c.put(b"form bytes", key="flow/form.txt", form=True))
            ev.attempt("upyun: purge", lambda: c.purge(["flow/form.txt"]))
            ev.attempt("upyun: usage", lambda: c.usage())
            ev.attempt("upyun: move", lambda: c.move(small.key, "flow/moved.txt"))
        with self._make(store, {"retry": RETRY}, password=self.wrong) as c:
            ev.attempt("upyun: FORM put with the wrong password", lambda: c.put(b"x", key="flow/f.txt", form=True),
                       expect=errors.ServerError)

    def auth_server_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        """Signatures from an auth server whose URL holds credentials of its own (a password, a key)."""
        path = self.work / "signed.bin"
        digest = write_file(path, 3 * self.part + 1)
        with self._make(store, dict(part_size=self.part, retry=RETRY), auth_server=self.signer.url) as c:
            ev.objects("upyun: client of an auth server", c, c.backend, c.backend.signer)
            result = ev.attempt("upyun: put signed by an auth server", lambda: c.put(path, key="flow/signed.bin"))
            assert self.stored_sha256(result) == digest and self.signer.signed
            self.signer.refuse = True
            try:
                ev.attempt("upyun: info the auth server refuses to sign", lambda: c.info("flow/signed.bin"),
                           expect=errors.AuthError)
            finally:
                self.signer.refuse = False

    def cli_extra(self, ev: Evidence, env: Dict[str, str], flags: List[str]) -> None:
        path = self.work / "cli" / "signed.bin"
        write_file(path, 2 * self.part + 1)
        args = ["--to", "upyun://op@svc", "--endpoint", self.server.endpoint, "--auth-server", self.signer.url]
        run_cli(ev, "put --json -vvv signed by an auth server",
                ["put", str(path), "--key", "flow/cli-signed.bin", "--json", "-vvv", *flags, *args], env)
        self.signer.refuse = True
        try:
            run_cli(ev, "put -vvv the auth server refuses to sign",
                    ["put", str(path), "--key", "flow/cli-refused.bin", "-vvv", *flags, *args], env, expect=3)
        finally:
            self.signer.refuse = False

    def cli_args(self, wrong: bool = False) -> Tuple[List[str], Dict[str, str]]:
        base = ["--to", "upyun://op@svc", "--endpoint", self.server.endpoint]
        if wrong:
            return base, {"UPYUN_PASSWORD": self.wrong}
        return base + ["--password", self.password], {}


class FdfsRig(Rig):
    """FastDFS has no credentials: the client's ``headers=`` and ``auth=`` (unused) and a URL password."""

    name = "fdfs"

    def __init__(self, work: Path, stack: contextlib.ExitStack) -> None:
        super().__init__(work, stack)
        s = self.secrets
        self.header_token = s.add("bearer token in headers=", "fdHDR-S3CRET-a1b2c3")
        self.auth_token = s.add("token from auth=", "fdAUTH-S3CRET-d4e5f6")
        self.url_password = s.add("fdfs URL password", "fdPW-S3CRET-0f9e8d")
        self.server = self.stack.enter_context(FdfsServer(work / "fdfs"))

    def client(self, store: Any, **kw: Any) -> upclient.Client:
        return upclient.Client(self.server.url, store=store, network_timeout=10,
                               headers={"Authorization": f"Bearer {self.header_token}"},
                               auth=lambda: {"X-Session-Token": self.auth_token}, **kw)

    def stored_sha256(self, result: upclient.UploadResult) -> str:
        return self.server.stored_sha256(result.id)

    def server_error(self) -> "contextlib.AbstractContextManager[None]":
        return self._armed(self.server, lambda: self.server.fail(Cmd.APPEND, status=errno.EIO, times=None))

    def dropped(self) -> "contextlib.AbstractContextManager[None]":
        return self._armed(self.server, lambda: self.server.fail(Cmd.APPEND, after=100, times=None))

    def url_with_password(self) -> str:
        return self.server.url.replace("fdfs://", f"fdfs://alice:{self.url_password}@", 1)

    def extra_flow(self, ev: Evidence, store: upclient.FileStore) -> None:
        """A password in the URL: FastDFS has no use for it, and must not show it."""
        made = ev.attempt("fdfs: a client of a URL with a password",  # BadInput would do as well
                          lambda: upclient.Client(self.url_with_password(), store=store, retry=RETRY,
                                                  connect_timeout=2, network_timeout=5), may_fail=True)
        if isinstance(made, upclient.Client):
            with made:
                ev.objects("fdfs: client of a URL with a password", made, made.backend)
                ev.attempt("fdfs: put through a URL with a password", lambda: made.put(b"x" * 100),
                           expect=errors.UpClientError)

    def cli_args(self, wrong: bool = False) -> Tuple[List[str], Dict[str, str]]:
        if wrong:
            return ["--to", self.url_with_password()], {}
        return ["--to", self.server.url, "-H", f"Authorization: Bearer {self.header_token}"], {}
