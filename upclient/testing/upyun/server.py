"""The UPYUN emulator's server: its request handler, the dispatch of a request to its API, and faults applied.

:class:`UpyunServer` puts the parts of the package together: the store and
its signature checks, the REST verbs, multipart uploads, FORM uploads,
purge and processing tasks (see the package docstring for the routes).
"""

from __future__ import annotations

import re
import time
import uuid as uuidlib
from typing import Callable, Iterable, Mapping, Optional, cast
from urllib.parse import unquote

from upclient.testing.httpbase import Drop, PathLike, RequestHandler
from upclient.testing.tls import ServerTLS, server_context_of
from upclient.testing.upyun.faults import Injected, fault_refusal
from upclient.testing.upyun.form import FormUpload
from upclient.testing.upyun.multipart import MultipartVerbs
from upclient.testing.upyun.purge import Purging
from upclient.testing.upyun.rest import RestVerbs
from upclient.testing.upyun.store import log
from upclient.testing.upyun.tasks import TaskQueue
from upclient.testing.upyun.wire import Answer, Call, Refusal, bad, json_answer, normalise_key

__all__ = ["UpyunServer", "RESERVED"]

#: First path segments that are APIs, not services.
RESERVED = ("purge", "pretreatment", "status", "result")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class _Handler(RequestHandler):
    server_version = "UpyunEmulator/1.0"

    @property
    def owner(self) -> "UpyunServer":
        return cast("UpyunServer", super().owner)

    def reply_error(self, status: int, message: str) -> None:
        request_id = uuidlib.uuid4().hex
        payload = {"msg": message, "code": status * 100000, "id": request_id}
        self.send_json(status, payload, {"X-Request-Id": request_id})

    def route(self) -> None:
        owner = self.owner
        call = Call(self)
        try:
            answer = owner._answer(call)
        except BaseException:
            owner._finished(call, 0)  # no answer
            raise
        try:
            self.finish_body()
            owner._finished(call, answer.status)  # before the client can see the answer
            self.send(answer.status, answer.body, {"X-Request-Id": call.request_id, **answer.headers})
            if answer.stream is not None:
                self.stream_file(*answer.stream)
        finally:
            if answer.stream is not None:
                answer.stream[0].close()


class UpyunServer(RestVerbs, MultipartVerbs, FormUpload, Purging, TaskQueue):
    """An emulator of the UPYUN storage APIs on ``127.0.0.1`` (see the package docstring).

    :param directory: where files are stored (created if needed); ``None``
        makes a temporary directory that :meth:`close` removes.
    :param service: the service (bucket) name.
    :param operator, password: an operator allowed on every service.
    :param operators: more operators, ``{operator: password}``.
    :param services: more service names.
    :param permissions: ``{service: operators}``: who may use a service
        (others get 401 40100017); a service not listed lets every operator in.
    :param domains: more domains the purge API accepts (besides
        ``<service>.b0.upaiyun.com``).
    :param host, port: where to listen; port 0 picks a free one (kept across
        :meth:`stop` / :meth:`start`).
    :param clock: returns the time in epoch seconds (default
        :func:`time.time`); :meth:`advance` adds to it.
    :param task_duration: seconds a processing task takes to reach 100.
    :param max_connections: the most connections served at once (one thread each).
    :param idle_timeout: seconds a connection may stay silent before it is closed.
    :param callback_timeout: seconds a notify callback may take.
    :param tls: serve HTTPS: :class:`~upclient.testing.tls.TLSCertificates`
        or a server :class:`ssl.SSLContext` (one requiring client
        certificates gives mutual TLS); :attr:`endpoint` is then
        ``https://127.0.0.1:PORT``.

    All methods are thread-safe.
    """

    log = log
    handler_class = _Handler

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        service: str = "svc",
        operator: str = "op",
        password: str = "pw",
        operators: Optional[Mapping[str, str]] = None,
        services: Optional[Iterable[str]] = None,
        permissions: Optional[Mapping[str, Iterable[str]]] = None,
        domains: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Optional[Callable[[], float]] = None,
        task_duration: float = 2.0,
        max_connections: int = 64,
        idle_timeout: float = 30.0,
        callback_timeout: float = 5.0,
        tls: ServerTLS = None,
    ) -> None:
        names = [service, *(services or ())]
        for name in names:
            if not _SERVICE_RE.match(name) or name in RESERVED:
                raise ValueError(f"{name!r} cannot be a service name (letters, digits, - and _; not {RESERVED})")
        super().__init__(
            directory,
            service=service,
            services=names,
            operators={operator: password, **dict(operators or {})},
            permissions=permissions or {},
            clock=clock or time.time,
            host=host,
            port=port,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
        )
        self.tls_context = server_context_of(tls)
        self.operator = operator
        self.domains = tuple(domains)
        self.task_duration = float(task_duration)
        self.callback_timeout = float(callback_timeout)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> "UpyunServer":
        """Bind and start serving; returns ``self``. A restart keeps the port and every file."""
        super().start()
        self._start_ticker()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, cut open connections, wait for callbacks in flight. Idempotent."""
        super().stop(timeout)
        self._stop_ticker(timeout)
        self._join_callbacks(timeout)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``: what the official SDK takes as ``endpoint=``.

        With ``tls``: ``https://127.0.0.1:PORT`` (upclient's ``endpoint=``
        takes it; a bare loopback endpoint means plain HTTP to it).
        """
        if self.tls_context is not None:
            return f"https://{self.host}:{self.port}"
        return f"{self.host}:{self.port}"

    # --------------------------------------------------------------- dispatch

    def _answer(self, call: Call) -> Answer:
        """The answer to a request, faults applied (raises Drop for a dropped connection)."""
        answer: Optional[Answer] = None
        try:
            answer = self._serve(call)
            fault = call.commit_fault
        except Refusal as exc:
            if call.created_uuid is not None:
                exc.headers.setdefault("x-upyun-multi-uuid", call.created_uuid)
            answer = self._refusal(call, exc)
            fault = call.commit_fault
        except Injected as injected:
            fault = injected.fault
        if fault is None and answer is not None:
            return answer
        assert fault is not None
        if answer is not None and answer.stream is not None:
            answer.stream[0].close()
        if fault.status == 0:
            call.body.drain()
            raise Drop()
        return self._refusal(call, fault_refusal(fault))

    @staticmethod
    def _refusal(call: Call, exc: Refusal) -> Answer:
        log.debug("%s %s -> %s %s %s", call.method, call.uri, exc.status, exc.code, exc.msg)
        return json_answer(exc.status, {"msg": exc.msg, "code": exc.code, "id": call.request_id}, exc.headers)

    def _serve(self, call: Call) -> Answer:
        try:
            path = unquote(call.raw_path, errors="strict")
        except UnicodeDecodeError:
            raise bad("the path is not UTF-8") from None
        first, _, rest = path.lstrip("/").partition("/")
        if first in RESERVED:
            return self._api(call, first)
        if not first:
            raise Refusal(400, 40000003, "need bucket name")
        service = first
        key = normalise_key(rest)
        method = call.method
        if method == "PUT":
            if call.header("X-Upyun-Multi-Stage") is not None:
                return self._multipart(call, service, key)
            if call.header("X-Upyun-Move-Source") is not None or call.header("X-Upyun-Copy-Source") is not None:
                return self._move_copy(call, service, key)
            return self._put(call, service, key)
        if method == "GET" and call.header("X-Upyun-Multi-Uuid") is not None:
            return self._multi_query(call, service, key)
        if method == "GET" and "usage" in call.query_fields():
            return self._usage(call, service)
        if method == "GET":
            return self._get(call, service, key)
        if method == "HEAD":
            return self._head(call, service, key)
        if method == "DELETE":
            if call.header("X-Upyun-Multi-Uuid") is not None:
                return self._multi_cancel(call, service, key)
            return self._delete(call, service, key)
        if method == "POST":
            if call.flag("Folder") or call.flag("x-upyun-folder"):
                return self._mkdir(call, service, key)
            if not key:
                return self._form(call, service)
        if method == "PATCH":
            return self._metadata(call, service, key)
        raise Refusal(405, 40500000, f"{method} is not allowed here")

    def _api(self, call: Call, name: str) -> Answer:
        wanted = {"purge": "POST", "pretreatment": "POST", "status": "GET", "result": "GET"}[name]
        if call.method != wanted:
            raise Refusal(405, 40500000, f"/{name}/ takes {wanted}")
        if name == "purge":
            return self._purge(call)
        if name == "pretreatment":
            return self._pretreat(call)
        return self._task_query(call, name)
