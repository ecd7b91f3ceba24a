"""HTTP for every HTTP backend: one pooled requests session, errors mapped once.

:class:`HttpTransport` owns a ``requests.Session`` whose urllib3 pool sends
bodies in 1 MiB blocks (urllib3's 16 KiB default halves throughput on fast
links), is large enough for every worker thread, never retries by itself
(the shared :class:`~upclient.retry.RetryPolicy` is the only retry layer),
and applies the client's timeouts, TLS settings, extra headers and auth.
Exceptions of requests and urllib3 become :mod:`upclient.errors` here and
nowhere else, and every answer is upclient's own
:class:`~upclient.response.HttpResponse`.  Logs name the method, the URL without its query string (which
may hold a signature), the status and the time; never a header value.
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

import requests
import requests.adapters
import requests.auth
import urllib3

from ._version import __version__
from .origins import origin_of
from .errors import (
    BadInput,
    NetworkError,
    ServerError,
    Timeout,
    TLSError,
    TransportError,
    UpClientError,
    error_for_status,
)
from .source import BLOCK_SIZE
from .response import HttpResponse
from .transfer import deadline
from .transfer.ranges import check_range_answer
from .wire import POOL_CLASSES, Flight

__all__ = ["HttpTransport", "parse_retry_after", "redact_url"]

log = logging.getLogger("upclient.http")

AuthLike = Union[requests.auth.AuthBase, Callable[[], Mapping[str, str]], None]

#: URLs made only of printable ASCII need no quoting and take the fast path.
_PLAIN_URL = re.compile(r"^https?://[!-~]+$")

#: A query string inside an error text: ``url: /path?X-Signature=...``.
_QUERY_IN_TEXT = re.compile(r"((?:url: |https?://)[^?\s'\"]*)\?[^\s'\")]*")

#: Redirects a GET or HEAD follows (requests' own limit is 30).
_MAX_REDIRECTS = 10
#: The caller's headers a redirect to an untrusted origin keeps: they say what to fetch, never who asks.
_FETCH_HEADERS = frozenset({"range", "if-range", "accept", "if-match", "if-none-match", "if-modified-since",
                            "tus-resumable"})

_REQUEST_ID_HEADERS = ("x-request-id", "x-amz-request-id", "x-upyun-request-id", "x-trace-id")


def redact_url(url: str) -> str:
    """The URL without query string, fragment or user info: safe for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short_reason(exc: BaseException) -> str:
    """'connection refused' rather than urllib3's paragraph; the whole chain stays in __cause__."""
    for node in _chain(exc):
        if isinstance(node, ConnectionRefusedError):
            return "connection refused"
        if isinstance(node, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(node, BrokenPipeError):
            return "connection closed while sending"
        if isinstance(node, urllib3.exceptions.NameResolutionError):
            return "host name not found"
        if isinstance(node, urllib3.exceptions.ProtocolError) and node.args:
            first = node.args[0]
            if isinstance(first, str) and len(node.args) == 1:
                return first.rstrip(".").lower()
    return _scrub(str(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, through requests' and urllib3's wrappers."""
    seen = set()
    node: Optional[BaseException] = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        nxt = node.__cause__ or node.__context__
        if nxt is None and node.args and isinstance(node.args[-1], BaseException):
            nxt = node.args[-1]
        if nxt is None and isinstance(getattr(node, "reason", None), BaseException):
            nxt = node.reason  # type: ignore[attr-defined]
        node = nxt if isinstance(nxt, BaseException) else None


def _tls_advice(exc: BaseException) -> str:
    """What went wrong in a TLS handshake, and what the user can do about it."""
    found = next((n for n in _chain(exc) if isinstance(n, ssl.SSLError)), None)
    if isinstance(found, ssl.SSLCertVerificationError):
        why = found.verify_message or found.reason or "certificate verify failed"
        return (
            f"the server's certificate is not trusted ({why}). If it is signed by your own CA, "
            "pass verify='/path/to/ca.pem' (or set REQUESTS_CA_BUNDLE); "
            "verify=False (CLI: --insecure) skips the check, for tests only"
        )
    reason = (found.reason if found is not None else None) or _scrub(str(found or exc))
    text = str(reason).lower()
    if "wrong_version_number" in text or "record layer failure" in text or "packet length too long" in text:
        return f"{reason}: the server does not speak TLS on this port (use http://, or the TLS port)"
    if "certificate_required" in text or "handshake_failure" in text or "certificate required" in text:
        return f"{reason}: the server may require a client certificate: pass cert=('client.pem', 'key.pem')"
    return str(reason)


def _forget_query(exc: BaseException, url: str) -> None:
    """Take ``url``'s query string (a presigned signature) out of ``exc`` and its causes.

    urllib3's MaxRetryError keeps the request target in its message, its
    args and its ``url``; the error we raise is chained to it, so a
    traceback would print the signature.
    """
    query = url.partition("?")[2].partition("#")[0]
    if not query:
        return
    for node in _chain(exc):
        if any(isinstance(a, str) and query in a for a in node.args):
            node.args = tuple(a.replace(query, "<redacted>") if isinstance(a, str) else a for a in node.args)
        for name, value in list(vars(node).items()):
            if isinstance(value, str) and query in value:
                setattr(node, name, value.replace(query, "<redacted>"))


def _scrub(text: str) -> str:
    """urllib3's messages name the request target: cut any query string (it may hold a signature)."""
    return _QUERY_IN_TEXT.sub(r"\1", text)


def _timed_out(exc: BaseException) -> bool:
    """Whether a socket timeout is somewhere in the chain of ``exc``."""
    return any(isinstance(node, (TimeoutError, socket.timeout)) for node in _chain(exc))


class _HeaderAuth(requests.auth.AuthBase):
    """Calls the user's callable on every request, so tokens may rotate."""

    def __init__(self, fn: Callable[[], Mapping[str, str]]) -> None:
        self.fn = fn

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.update(self.fn())
        return r

    def __repr__(self) -> str:
        return "<header auth callable>"


#: requests' own ``HTTPAdapter.send``: where it has been replaced (``responses`` in tests, an
#: instrumentation library), every request goes through it, not straight to the pool.
_ADAPTER_SEND = requests.adapters.HTTPAdapter.send


class _BlockAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose connections read request bodies in large blocks."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blocksize", BLOCK_SIZE)
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES  # connections that answer to the deadline

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs.setdefault("blocksize", BLOCK_SIZE)
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = POOL_CLASSES
        return manager


class HttpTransport:
    """One pooled HTTP session shared by all threads of a client.

    Requests go straight to the connection pool of the session's adapter:
    the environment (proxies, CA bundle, netrc) is read once per host and the
    pool found once per host, instead of on every call, and no cookie jar or
    hooks run; of what a small request costs the client, that is about a
    third.  A URL that needs quoting, a redirected GET or HEAD, a proxy, an
    auth object with hooks and a replaced ``HTTPAdapter.send`` (``responses``
    in tests) take the adapter's ordinary path.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        verify: Union[bool, str] = True,
        cert: Union[str, Tuple[str, str], None] = None,
        headers: Optional[Mapping[str, str]] = None,
        auth: AuthLike = None,
        pool_size: int = 32,
        origins: Optional[Iterable[str]] = None,
    ) -> None:
        self.timeout = (connect_timeout, read_timeout)
        session = requests.Session()
        self.adapter = _BlockAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", self.adapter)
        session.mount("https://", self.adapter)
        session.verify = verify
        session.cert = cert
        session.headers.update(
            {
                "User-Agent": f"upclient/{__version__} requests/{requests.__version__}",
                "Accept-Encoding": "identity",  # byte ranges of stored files, never re-encoded
            }
        )
        if headers:
            session.headers.update(headers)
        if auth is not None:
            if isinstance(auth, tuple):
                auth = requests.auth.HTTPBasicAuth(*auth)
            if isinstance(auth, requests.auth.AuthBase):
                session.auth = auth
            elif callable(auth):
                session.auth = _HeaderAuth(auth)
            else:
                raise BadInput("auth must be a requests auth object or a callable returning headers")
        self.session = session
        self.cert = cert
        self.verify = verify
        if verify is True and session.trust_env:  # as requests does: the environment may name a CA bundle
            self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        #: Where ``auth`` and the configured headers may go; None: everywhere.
        self.origins = frozenset(origins) if origins is not None else None
        self._per_host: Dict[str, Tuple[Dict[str, str], Any, bool]] = {}
        self._per_host_lock = threading.Lock()
        self._pools: Dict[str, Any] = {}  # origin -> the adapter's urllib3 pool for it
        self._timeouts: Dict[Tuple[float, float], urllib3.Timeout] = {}

    def _host_settings(self, url: str) -> Tuple[Dict[str, str], Any, bool]:
        """(proxies, netrc auth, trusted) for the URL's scheme and host, read from the environment once.

        ``trusted``: the URL is on one of :attr:`origins`, so the client's
        credentials and headers may go there.
        """
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        found = self._per_host.get(key)
        if found is None:
            proxies: Dict[str, str] = {}
            netrc = None
            trusted = self.origins is None or origin_of(url) in self.origins
            if self.session.trust_env:
                proxies = requests.utils.get_environ_proxies(url, no_proxy=None)
                if self.session.auth is None or not trusted:
                    pair = requests.utils.get_netrc_auth(url)
                    netrc = requests.auth.HTTPBasicAuth(*pair) if pair else None
            found = (proxies, netrc, trusted)
            with self._per_host_lock:
                self._per_host[key] = found
        return found

    def _prepare(
        self, method: str, url: str, headers: Optional[Dict[str, str]], body: Any, presigned: bool = False
    ) -> Tuple[requests.PreparedRequest, Dict[str, str]]:
        proxies, netrc, trusted = self._host_settings(url)
        if not _PLAIN_URL.match(url) and not presigned:  # needs quoting or IDNA: let requests do it all
            if trusted:
                prep = self.session.prepare_request(requests.Request(method, url, headers=headers, data=body))
            else:
                bare = {**self._bare_headers(), **(headers or {})}
                prep = requests.Request(method, url, headers=bare, data=body, auth=netrc).prepare()
            return prep, proxies
        prep = requests.PreparedRequest()
        prep.method = method
        prep.url = url
        if presigned:
            base: Mapping[str, str] = {"User-Agent": self.session.headers["User-Agent"]}
        else:
            base = self.session.headers if trusted else self._bare_headers()
        merged: Any = requests.structures.CaseInsensitiveDict(base)
        if headers:
            merged.update(headers)
        if body is not None:
            merged["Content-Length"] = str(len(body))
        elif method in ("POST", "PUT", "PATCH"):
            merged["Content-Length"] = "0"
        prep.headers = merged
        prep.body = body
        prep.hooks = {"response": []}
        auth: Any = None if presigned else ((self.session.auth if trusted else None) or netrc)
        if auth is not None:
            prep = auth(prep)
        return prep, proxies

    def _send(self, prep: requests.PreparedRequest, *, stream: bool, timeout: Tuple[float, float],
              proxies: Dict[str, str]) -> requests.Response:
        """The adapter's ``send``, or the same request handed to its pool directly (see the class docstring).

        Errors on the direct way are urllib3's own (no retries, so never
        wrapped in ``MaxRetryError``): :meth:`_failure` maps both kinds.
        """
        if proxies or prep.hooks.get("response") or requests.adapters.HTTPAdapter.send is not _ADAPTER_SEND:
            return self.adapter.send(prep, stream=stream, timeout=timeout, verify=self.verify, cert=self.cert,
                                     proxies=proxies)
        url = prep.url
        assert url is not None
        pool = self._pool(prep, url)
        limits = self._timeouts.get(timeout)
        if limits is None:
            limits = self._timeouts[timeout] = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        raw = pool.urlopen(
            prep.method, prep.path_url, body=prep.body, headers=prep.headers, redirect=False,
            assert_same_host=False, preload_content=not stream, decode_content=not stream, retries=False,
            timeout=limits, chunked=False,
        )
        resp = requests.Response()
        if not stream:  # read whole by urllib3, the connection back in its pool already
            resp._content = raw.data
            resp._content_consumed = True
        resp.status_code = raw.status
        resp.headers = requests.structures.CaseInsensitiveDict(raw.headers)
        resp.raw = raw
        resp.reason = raw.reason
        resp.url = url
        resp.request = prep
        resp.connection = self.adapter
        return resp

    def _pool(self, prep: requests.PreparedRequest, url: str) -> Any:
        """The adapter's pool for the URL's origin, with this transport's TLS settings; looked up once.

        The pool manager closes a pool it evicts (more origins than it keeps):
        a closed one is looked up again.
        """
        origin = url.split("/", 3)[:3]
        key = "/".join(origin)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:
            pool = self.adapter.get_connection_with_tls_context(prep, self.verify, None, self.cert)
            self.adapter.cert_verify(pool, url, self.verify, self.cert)  # the CA bundle must exist
            self._pools[key] = pool
        return pool

    def _bare_headers(self) -> Dict[str, str]:
        """The headers of a request to an origin that is not trusted: none of the client's own."""
        return {"User-Agent": self.session.headers["User-Agent"], "Accept-Encoding": "identity"}

    def _follow(
        self, resp: Any, method: str, url: str, headers: Optional[Dict[str, str]], stream: bool, timeout: Any
    ) -> Any:
        """Follow a GET or HEAD's redirects, each hop prepared as its own request.

        A hop to an origin that is not trusted gets no credentials and, of the
        caller's headers, only those that describe what to fetch.
        """
        for _ in range(_MAX_REDIRECTS):
            if not resp.is_redirect:
                return resp
            target = urllib.parse.urljoin(url, resp.headers["Location"])
            resp.close()
            url = target
            hop_headers = headers
            if headers and not self._host_settings(url)[2]:
                hop_headers = {k: v for k, v in headers.items() if k.lower() in _FETCH_HEADERS}
            prep, proxies = self._prepare(method, url, hop_headers, None)
            resp = self._send(prep, stream=stream, timeout=timeout, proxies=proxies)
        resp.close()
        raise requests.exceptions.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects")

    def request(
        self,
        method: str,
        url: str,
        *,
        backend: str,
        operation: str,
        headers: Optional[Dict[str, str]] = None,
        body: Any = None,
        stream: bool = False,
        timeout: Optional[Tuple[float, float]] = None,
        presigned: bool = False,
    ) -> HttpResponse:
        """Send one request; network failures raise :mod:`upclient.errors`, any status returns.

        ``presigned``: the URL carries its own authorisation (an object
        store's signed part URL): send no credentials, no extra headers, and
        the URL exactly as it is.
        """
        started = time.monotonic()
        timeout = timeout or self.timeout
        signal = deadline.current()
        if signal is not None:
            signal.check()
        trip = Flight(timeout[1], signal)
        try:
            with trip:
                prep, proxies = self._prepare(method, url, headers, body, presigned)
                resp = self._send(prep, stream=stream, timeout=timeout, proxies=proxies)
                if resp.is_redirect and method in ("GET", "HEAD"):
                    resp = self._follow(resp, method, url, headers, stream, timeout)
                if not stream:
                    resp.content  # noqa: B018 - read the body: only then is the connection reused
        except UpClientError:
            trip.land()
            raise  # raised by a body (cancelled, source changed)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            trip.land()
            raise self._failure(exc, signal, backend, operation, method, url) from exc
        except BaseException:
            trip.land()
            raise
        if not stream:
            trip.land()
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %s (%.3fs)", method, redact_url(url), resp.status_code,
                time.monotonic() - started,
            )
        if not stream:
            return HttpResponse(method, resp.url or url, resp.status_code, resp.headers, resp.content,
                                reason=resp.reason or "")

        def blocks(size: int) -> Iterator[bytes]:
            try:
                yield from resp.iter_content(size)
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise self._failure(exc, signal, backend, operation, method, url) from exc

        def close() -> None:
            resp.close()
            trip.land()

        return HttpResponse(method, resp.url or url, resp.status_code, resp.headers, None,
                            reason=resp.reason or "", blocks=blocks, close=close)

    @classmethod
    def _failure(
        cls, exc: BaseException, signal: Any, backend: str, operation: str, method: str, url: str
    ) -> UpClientError:
        """The one place an exception of requests, urllib3 or a socket becomes ours."""
        _forget_query(exc, url)
        if signal is not None and signal.is_set():
            return signal.error()  # we shut the socket down ourselves
        if isinstance(exc, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError)):
            return cls._translate(exc, backend, operation, method, url)
        if _timed_out(exc):
            return Timeout(f"{method} {redact_url(url)} timed out", backend=backend, operation=operation)
        return NetworkError(f"{method} {redact_url(url)} failed: {_short_reason(exc)}",
                            backend=backend, operation=operation)

    @staticmethod
    def _translate(
        exc: BaseException, backend: str, operation: str, method: str, url: str
    ) -> TransportError:
        where = f"{method} {redact_url(url)}"
        if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout,
                            urllib3.exceptions.ReadTimeoutError)) or (
            isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
            and not isinstance(exc, urllib3.exceptions.NewConnectionError)  # a refusal, not a timeout
        ):
            return Timeout(f"{where} timed out", backend=backend, operation=operation)
        if _timed_out(exc):  # the server stopped reading the body: the send timed out
            return Timeout(f"{where} timed out: the server stopped reading the body",
                           backend=backend, operation=operation)
        if isinstance(exc, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
            return TLSError(f"{where}: TLS failed: {_tls_advice(exc)}", backend=backend, operation=operation)
        return NetworkError(f"{where} failed: {_short_reason(exc)}", backend=backend, operation=operation)

    def error(
        self,
        resp: HttpResponse,
        *,
        backend: str,
        operation: str,
        cls: Optional[type] = None,
        message: Optional[str] = None,
        code: Any = None,
    ) -> ServerError:
        """The typed error for an unwanted response; the caller raises it."""
        status = resp.status_code
        if message is None:
            text = ""
            try:
                text = resp.text.strip()
            except Exception:  # undecodable body: the status alone must do
                text = ""
            message = text[:300] or (resp.reason or f"HTTP {status}")
        request_id = None
        for name in _REQUEST_ID_HEADERS:
            if name in resp.headers:
                request_id = resp.headers[name]
                break
        err_cls = cls or error_for_status(status)
        return err_cls(
            f"{resp.method} {redact_url(resp.url)}: {message}",
            backend=backend,
            operation=operation,
            status=status,
            code=code,
            request_id=request_id,
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )

    def iter_body(
        self, resp: HttpResponse, *, backend: str, operation: str, block: int = BLOCK_SIZE
    ) -> Iterator[bytes]:
        """The body of a streamed response in blocks (breaks are already mapped); closes it."""
        try:
            yield from resp.iter_content(block)
        finally:
            resp.close()

    def copy_body(
        self,
        resp: HttpResponse,
        sink: Callable[[bytes], Any],
        *,
        offset: int,
        length: Optional[int],
        backend: str,
        operation: str = "get",
    ) -> int:
        """Write ``length`` bytes (all if None) of a ranged GET's body to ``sink``.

        A server that ignored the Range header (200, not 206) sends the whole
        file: the first ``offset`` bytes are skipped here.  Returns the count.
        """
        skip = offset if resp.status_code == 200 else 0
        left, written = length, 0
        for block in self.iter_body(resp, backend=backend, operation=operation):
            if skip:
                cut = min(skip, len(block))
                block, skip = block[cut:], skip - cut
            if left is not None:
                block = block[:left]
                left -= len(block)
            if block:
                sink(block)
                written += len(block)
            if left == 0:
                resp.close()
                break
        return written

    def copy_range(
        self,
        resp: HttpResponse,
        sink: Callable[[bytes], Any],
        *,
        offset: int,
        length: int,
        size: int,
        strict: bool,
        backend: str,
    ) -> int:
        """A ranged GET's answer, checked to be the range asked for (:func:`check_range_answer`), to ``sink``.

        A wrong answer closes the response and raises (``RangeIgnored`` when
        the server sent the whole file); the count of bytes written otherwise.
        """
        try:
            check_range_answer(resp.status_code, resp.headers.get("Content-Range"), offset, length, size,
                               strict=strict, backend=backend)
        except BaseException:
            resp.close()
            raise
        return self.copy_body(resp, sink, offset=offset, length=length, backend=backend)

    def close(self) -> None:
        self.session.close()
