"""HTTP for every HTTP backend: pooled connections, errors mapped once.

:class:`HttpTransport` sends plain requests straight to urllib3 pools, and
the rest through a ``requests.Session`` made on first use; its pools send
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

import base64
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Tuple, Union

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
from .failures import forget_query, of_requests, short_reason, timed_out, tls_advice
from .wire import Flight

if TYPE_CHECKING:  # requests is imported where a request needs it (see HttpTransport)
    import requests
    import requests.auth
    import urllib3
else:  # urllib3 comes with the first HttpTransport (_load_urllib3): redact_url needs none of it
    urllib3 = None

__all__ = ["HttpTransport", "parse_retry_after", "redact_url"]

log = logging.getLogger("upclient.http")

AuthLike = Union["requests.auth.AuthBase", Tuple[str, str], Callable[[], Mapping[str, str]], None]

#: URLs made only of printable ASCII need no quoting and take the fast path.
_PLAIN_URL = re.compile(r"^https?://[!-~]+$")

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
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _HeaderAuth:
    """Calls the user's callable on every request, so tokens may rotate (requests' auth protocol)."""

    def __init__(self, fn: Callable[[], Mapping[str, str]]) -> None:
        self.fn = fn

    def __call__(self, r: "requests.PreparedRequest") -> "requests.PreparedRequest":
        r.headers.update(self.fn())
        return r

    def __repr__(self) -> str:
        return "<header auth callable>"


def _basic_header(pair: Any) -> Optional[str]:
    """``Authorization`` for HTTP Basic with ``(user, password)``, as requests writes it; None if
    the pair is not two latin-1 strings (requests' own auth object then handles it)."""
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
        return None
    try:
        raw = b":".join(x.encode("latin1") for x in pair)
    except UnicodeEncodeError:
        return None
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _adapter_send_replaced() -> bool:
    """Whether requests' ``HTTPAdapter.send`` has been replaced (``responses`` in tests, an
    instrumentation library): then every request goes through it.  Nothing can have replaced
    it while requests is not imported."""
    adapters = sys.modules.get("requests.adapters")
    if adapters is None:
        return False
    code = getattr(adapters.HTTPAdapter.send, "__code__", None)
    return code is None or not code.co_filename.endswith(os.path.join("requests", "adapters.py"))


def _proxies_possible() -> bool:
    """Whether the environment may name a proxy (else requests would find none: on Linux it reads
    only ``*_proxy`` variables; elsewhere the system's settings too)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(k[-6:].lower() == "_proxy" and v for k, v in os.environ.items())


def _netrc_possible() -> bool:
    """Whether requests could find netrc credentials (a ``NETRC`` file, ``~/.netrc`` or ``~/_netrc``)."""
    if os.environ.get("NETRC"):
        return True
    return any(os.path.exists(os.path.expanduser(f"~/{name}")) for name in (".netrc", "_netrc"))


def _merge(into: Dict[str, str], extra: Mapping[str, str]) -> None:
    """``into.update(extra)`` with names compared case-insensitively (the later spelling wins)."""
    names = {k.lower(): k for k in into}
    for k, v in extra.items():
        old = names.get(k.lower())
        if old is not None and old != k:
            del into[old]
        into[k] = v
        names[k.lower()] = k


def _path_of(url: str) -> str:
    """The request target of an absolute URL: its path and query, without the fragment."""
    rest = url.split("://", 1)[1]
    cut = len(rest)
    for mark in "/?#":
        i = rest.find(mark)
        if 0 <= i < cut:
            cut = i
    target = rest[cut:].split("#", 1)[0]
    return target if target.startswith("/") else "/" + target


class _Direct:
    """An answer from the pool, with what the transport reads of a ``requests.Response``."""

    __slots__ = ("raw", "status_code", "headers", "reason", "url", "_content", "_consumed")

    def __init__(self, raw: Any, url: str, stream: bool) -> None:
        self.raw = raw
        self.status_code: int = raw.status
        self.headers = raw.headers
        self.reason = raw.reason
        self.url = url
        self._content: Optional[bytes] = None if stream else raw.data
        self._consumed = not stream

    @property
    def is_redirect(self) -> bool:
        return "location" in self.headers and self.status_code in (301, 302, 303, 307, 308)

    @property
    def content(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_content(BLOCK_SIZE))
        return self._content

    def iter_content(self, size: int) -> Iterator[bytes]:
        if self._consumed:
            if self._content:
                yield self._content
            return
        yield from self.raw.stream(size, decode_content=True)
        self._consumed = True

    def close(self) -> None:
        if not self._consumed:
            self.raw.close()
        self.raw.release_conn()


_BLOCK_ADAPTER: Any = None


def _block_adapter_class() -> Any:
    """requests' adapter whose connections read request bodies in large blocks (made once, on first use)."""
    global _BLOCK_ADAPTER
    if _BLOCK_ADAPTER is None:
        import requests.adapters

        class _BlockAdapter(requests.adapters.HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                kwargs.setdefault("blocksize", BLOCK_SIZE)
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = _pool_classes()  # connections that answer to the deadline

            def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
                kwargs.setdefault("blocksize", BLOCK_SIZE)
                manager = super().proxy_manager_for(proxy, **kwargs)
                manager.pool_classes_by_scheme = _pool_classes()
                return manager

        _BLOCK_ADAPTER = _BlockAdapter
    return _BLOCK_ADAPTER


def _load_urllib3() -> Any:
    """urllib3 and upclient's connections for it, imported by the first :class:`HttpTransport`
    (a FastDFS client, or code that only calls :func:`redact_url`, never loads them)."""
    if urllib3 is None:
        _bind_urllib3()
    return urllib3


def _bind_urllib3() -> None:
    import urllib3.exceptions
    import urllib3.util

    from . import connections  # noqa: F401 - the pools that answer to the deadline

    globals()["urllib3"] = urllib3


def _pool_classes() -> Any:
    from .connections import POOL_CLASSES

    return POOL_CLASSES


class HttpTransport:
    """One pooled HTTP session shared by all threads of a client.

    A request to a URL that needs no quoting, with no proxy, no netrc and
    no auth object of requests, is built here and goes straight to a
    urllib3 pool, with the TLS settings requests would give it: requests is
    not even imported for it (its import is a fifth of a short run's CPU,
    its request and response objects a tenth of a small upload's).  The
    rest takes a ``requests.Session`` made on first use, whose adapter's
    pool is found once per host: a URL that needs quoting or IDNA, a proxy,
    netrc, an auth object and a replaced ``HTTPAdapter.send``
    (``responses`` in tests).  The environment
    (proxies, CA bundle, netrc) is read once per host, and no cookie jar or
    hooks run.
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
        _load_urllib3()
        self.timeout = (connect_timeout, read_timeout)
        self.pool_size = pool_size
        #: The headers of every request to a trusted origin.
        self.headers: Dict[str, str] = {"User-Agent": f"upclient/{__version__} urllib3/{urllib3.__version__}",
                                        "Accept-Encoding": "identity"}
        if headers:
            _merge(self.headers, headers)
        self._header_fn: Optional[Callable[[], Mapping[str, str]]] = None
        self._basic: Optional[str] = None
        if auth is not None:
            if isinstance(auth, tuple):
                self._basic = _basic_header(auth)
            else:
                base = getattr(sys.modules.get("requests.auth"), "AuthBase", None)  # imported by whoever made auth
                if (base is None or not isinstance(auth, base)) and callable(auth):
                    self._header_fn = auth  # type: ignore[assignment]
                elif base is None or not isinstance(auth, base):
                    raise BadInput("auth must be a requests auth object or a callable returning headers")
        self.auth = auth
        self.cert = cert
        self._verify_given = verify
        self.verify = verify
        if verify is True:  # as requests does: the environment may name a CA bundle
            self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        #: Where ``auth`` and the configured headers may go; None: everywhere.
        self.origins = frozenset(origins) if origins is not None else None
        self._session: Any = None
        self._adapter: Any = None
        self._session_lock = threading.Lock()
        self._manager: Any = None  # the plain-HTTP pools of the direct way
        self._per_host: Dict[str, Tuple[Dict[str, str], Any, bool]] = {}
        self._per_host_lock = threading.Lock()
        self._pools: Dict[str, Any] = {}  # origin -> the adapter's urllib3 pool for it
        self._direct_pools: Dict[str, Any] = {}  # origin -> the direct way's pool for it
        self._tls: Optional[Dict[str, Any]] = None  # the HTTPS pools' TLS settings, checked on first use
        self._timeouts: Dict[Tuple[float, float], urllib3.Timeout] = {}
        self._direct_auth = auth is None or self._header_fn is not None or self._basic is not None

    @property
    def session(self) -> "requests.Session":
        """The ``requests.Session`` of the requests that do not go the direct way, made on first use."""
        if self._session is None:
            with self._session_lock:
                if self._session is None:
                    self._session = self._make_session()
        return self._session

    @property
    def adapter(self) -> Any:
        self.session  # noqa: B018 - made with it
        return self._adapter

    def _make_session(self) -> "requests.Session":
        import requests
        import requests.auth

        session = requests.Session()
        adapter = _block_adapter_class()(pool_connections=8, pool_maxsize=self.pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = self._verify_given
        session.cert = self.cert
        session.headers.clear()
        session.headers.update(self.headers)
        auth: Any = self.auth
        if auth is not None:
            if isinstance(auth, tuple):
                auth = requests.auth.HTTPBasicAuth(*auth)
            elif self._header_fn is not None:
                auth = _HeaderAuth(self._header_fn)
            session.auth = auth
        self._adapter = adapter
        return session

    def _trust_env(self) -> bool:
        return self._session is None or bool(self._session.trust_env)

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
            if self._trust_env():
                if _proxies_possible():
                    import requests.utils

                    proxies = requests.utils.get_environ_proxies(url, no_proxy=None)
                if (self.auth is None or not trusted) and _netrc_possible():
                    import requests.auth
                    import requests.utils

                    pair = requests.utils.get_netrc_auth(url)
                    netrc = requests.auth.HTTPBasicAuth(*pair) if pair else None
            found = (proxies, netrc, trusted)
            with self._per_host_lock:
                self._per_host[key] = found
        return found

    def _direct(self, method: str, url: str, headers: Optional[Dict[str, str]], body: Any, presigned: bool,
                stream: bool, timeout: Tuple[float, float]) -> Optional[_Direct]:
        """The request sent the direct way (see the class docstring), or None where it cannot go so."""
        if not _PLAIN_URL.match(url) or _adapter_send_replaced():
            return None
        proxies, netrc, trusted = self._host_settings(url)
        if proxies or netrc is not None or "@" in url.split("/", 3)[2]:
            return None
        if presigned:
            out = {"User-Agent": self.headers["User-Agent"]}
        elif trusted:
            if not self._direct_auth:
                return None
            out = dict(self.headers)
        else:
            out = self._bare_headers()
        if headers:
            _merge(out, headers)
        if body is not None:
            out["Content-Length"] = str(len(body))
        elif method in ("POST", "PUT", "PATCH"):
            out["Content-Length"] = "0"
        if trusted and not presigned:
            if self._basic is not None:
                _merge(out, {"Authorization": self._basic})
            elif self._header_fn is not None:
                _merge(out, self._header_fn())
        origin = url[: url.find("/", 8)] if url.find("/", 8) > 0 else url
        pool = self._direct_pools.get(origin)
        if pool is None or pool.pool is None:
            pool = self._direct_pool(url, origin)
        limits = self._timeouts.get(timeout)
        if limits is None:
            limits = self._timeouts[timeout] = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        raw = pool.urlopen(
            method, _path_of(url), body=body, headers=out, redirect=False, assert_same_host=False,
            preload_content=not stream, decode_content=not stream, retries=False, timeout=limits, chunked=False,
        )
        return _Direct(raw, url, stream)

    def _direct_pool(self, url: str, origin: str) -> Any:
        """The direct way's pool for an origin (the manager closes one it evicts: made again)."""
        https = url.startswith("https:")
        tls = self._tls_settings() if https else None
        with self._per_host_lock:
            if self._manager is None:
                self._manager = urllib3.PoolManager(num_pools=8, maxsize=self.pool_size, block=False,
                                                    blocksize=BLOCK_SIZE)
                self._manager.pool_classes_by_scheme = _pool_classes()
            parsed = urllib3.util.parse_url(url.split("?", 1)[0])
            if https:
                pool = self._manager.connection_from_host(parsed.host, parsed.port or 443, scheme="https",
                                                          pool_kwargs=tls)
            else:
                pool = self._manager.connection_from_host(parsed.host, parsed.port or 80, scheme="http")
            self._direct_pools[origin] = pool
        return pool

    def _tls_settings(self) -> Dict[str, Any]:
        """The HTTPS pools' TLS keywords, as requests gives them: the CA bundle (``verify``, else
        certifi's), checked to exist, and the client certificate and key, checked to exist too."""
        if self._tls is not None:
            return self._tls
        tls: Dict[str, Any] = {}
        if self.verify is False:
            tls["cert_reqs"] = "CERT_NONE"
        else:
            where = self.verify
            if where is True:
                import certifi

                where = certifi.where()
            if not where or not os.path.exists(where):
                raise OSError(f"Could not find a suitable TLS CA certificate bundle, invalid path: {where}")
            tls["cert_reqs"] = "CERT_REQUIRED"
            tls["ca_cert_dir" if os.path.isdir(where) else "ca_certs"] = where
        if self.cert:
            cert_file, key_file = (self.cert, None) if isinstance(self.cert, str) else self.cert
            for what, path in (("certificate", cert_file), ("key", key_file)):
                if path and not os.path.exists(path):
                    raise OSError(f"Could not find the TLS {what} file, invalid path: {path}")
            tls["cert_file"], tls["key_file"] = cert_file, key_file
        self._tls = tls
        return tls

    def _prepare(
        self, method: str, url: str, headers: Optional[Dict[str, str]], body: Any, presigned: bool = False
    ) -> Tuple["requests.PreparedRequest", Dict[str, str]]:
        import requests
        import requests.structures

        proxies, netrc, trusted = self._host_settings(url)
        session = self.session
        if not _PLAIN_URL.match(url) and not presigned:  # needs quoting or IDNA: let requests do it all
            if trusted:
                prep = session.prepare_request(requests.Request(method, url, headers=headers, data=body))
            else:
                bare = {**self._bare_headers(), **(headers or {})}
                prep = requests.Request(method, url, headers=bare, data=body, auth=netrc).prepare()
            return prep, proxies
        prep = requests.PreparedRequest()
        prep.method = method
        prep.url = url
        if presigned:
            base: Mapping[str, str] = {"User-Agent": self.headers["User-Agent"]}
        else:
            base = session.headers if trusted else self._bare_headers()
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
        auth: Any = None if presigned else ((session.auth if trusted else None) or netrc)
        if auth is not None:
            prep = auth(prep)
        return prep, proxies

    def _send(self, prep: "requests.PreparedRequest", *, stream: bool, timeout: Tuple[float, float],
              proxies: Dict[str, str]) -> Any:
        """The adapter's ``send``, or the same request handed to its pool directly (see the class docstring).

        Errors on the direct way are urllib3's own (no retries, so never
        wrapped in ``MaxRetryError``): :meth:`_failure` maps both kinds.
        """
        if proxies or prep.hooks.get("response") or _adapter_send_replaced():
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
        return _Direct(raw, url, stream)

    def _pool(self, prep: "requests.PreparedRequest", url: str) -> Any:
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
        return {"User-Agent": self.headers["User-Agent"], "Accept-Encoding": "identity"}

    def _one(self, method: str, url: str, headers: Optional[Dict[str, str]], body: Any, presigned: bool,
             stream: bool, timeout: Tuple[float, float]) -> Any:
        """One request, the direct way where it can go so, else through requests."""
        resp = self._direct(method, url, headers, body, presigned, stream, timeout)
        if resp is None:
            prep, proxies = self._prepare(method, url, headers, body, presigned)
            resp = self._send(prep, stream=stream, timeout=timeout, proxies=proxies)
        return resp

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
            resp = self._one(method, url, hop_headers, None, False, stream, timeout)
        resp.close()
        raise urllib3.exceptions.HTTPError(f"more than {_MAX_REDIRECTS} redirects")

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
                resp = self._one(method, url, headers, body, presigned, stream, timeout)
                if resp.is_redirect and method in ("GET", "HEAD"):
                    resp = self._follow(resp, method, url, headers, stream, timeout)
                if not stream:
                    resp.content  # noqa: B018 - read the body: only then is the connection reused
        except UpClientError:
            trip.land()
            raise  # raised by a body (cancelled, source changed)
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # requests' errors are OSErrors
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
            except (urllib3.exceptions.HTTPError, OSError) as exc:  # requests' errors are OSErrors
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
        forget_query(exc, url)
        if signal is not None and signal.is_set():
            return signal.error()  # we shut the socket down ourselves
        if isinstance(exc, urllib3.exceptions.HTTPError) or of_requests(exc, "RequestException"):
            return cls._translate(exc, backend, operation, method, url)
        if timed_out(exc):
            return Timeout(f"{method} {redact_url(url)} timed out", backend=backend, operation=operation)
        return NetworkError(f"{method} {redact_url(url)} failed: {short_reason(exc)}",
                            backend=backend, operation=operation)

    @staticmethod
    def _translate(
        exc: BaseException, backend: str, operation: str, method: str, url: str
    ) -> TransportError:
        where = f"{method} {redact_url(url)}"
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError) or of_requests(exc, "ConnectTimeout",
                                                                                 "ReadTimeout") or (
            isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
            and not isinstance(exc, urllib3.exceptions.NewConnectionError)  # a refusal, not a timeout
        ):
            return Timeout(f"{where} timed out", backend=backend, operation=operation)
        if timed_out(exc):  # the server stopped reading the body: the send timed out
            return Timeout(f"{where} timed out: the server stopped reading the body",
                           backend=backend, operation=operation)
        if isinstance(exc, urllib3.exceptions.SSLError) or of_requests(exc, "SSLError"):
            return TLSError(f"{where}: TLS failed: {tls_advice(exc)}", backend=backend, operation=operation)
        return NetworkError(f"{where} failed: {short_reason(exc)}", backend=backend, operation=operation)

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
        if self._session is not None:
            self._session.close()
        if self._manager is not None:
            self._manager.clear()
