"""Faults on demand for the UPYUN emulator, on the shared :class:`~upclient.testing.faults.Fault`.

A fault is armed with :meth:`FaultPoints.fail` and taken at a handler's
fault point, after the request was authenticated (so a refused request does
not use one up).  Its ``match`` names the route and, if asked, the part id
and the key; its params say what happens: ``status`` (0: the connection is
closed without an answer), ``code``, ``msg``, ``retry_after`` and
``commit`` (the request is carried out first and only its answer is lost).
"""

from __future__ import annotations

from typing import Optional, Sequence

from upclient.testing.faults import Fault
from upclient.testing.upyun.store import UpyunStore, log
from upclient.testing.upyun.wire import Call, Refusal

__all__ = ["ROUTES", "Injected", "FaultPoints", "fault_refusal"]

#: Counter and fault names of :class:`~upclient.testing.upyun.UpyunServer`.
ROUTES = (
    "put", "get", "head", "list", "usage", "delete", "mkdir", "move", "copy", "metadata",
    "initiate", "part", "complete", "query", "cancel",
    "form", "purge", "pretreat", "status", "result",
)  # fmt: skip

_CODES = {503: 50300000, 429: 42900001}
_MESSAGES = {503: "unknown error", 429: "too many requests"}


class Injected(Exception):
    """A fault taken at a fault point: the request goes no further."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.match.get("route", "*"))
        self.fault = fault


def fault_refusal(fault: Fault) -> Refusal:
    """The error answer of a fault with a status other than 0."""
    status: int = fault.status
    route = fault.match.get("route", "*")
    code = fault.params.get("code")
    refusal = Refusal(
        status,
        _CODES.get(status, status * 100000) if code is None else code,
        fault.params.get("msg") or _MESSAGES.get(status, f"injected failure of {route}"),
    )
    retry_after = fault.params.get("retry_after")
    if retry_after is not None:
        refusal.headers["Retry-After"] = f"{retry_after:g}"
    return refusal


class FaultPoints(UpyunStore):
    """:meth:`fail`, and the point in each handler where an armed fault strikes."""

    def fail(
        self,
        route: str,
        status: int = 503,
        *,
        times: Optional[int] = 1,
        code: Optional[int] = None,
        msg: Optional[str] = None,
        retry_after: Optional[float] = None,
        part_id: Optional[int] = None,
        key: Optional[str] = None,
        commit: bool = False,
    ) -> None:
        """The next ``times`` requests of ``route`` (a name of :data:`ROUTES`, or ``"*"``) fail.

        ``status`` 0 closes the connection without an answer (the body is
        read first); otherwise the answer is ``status`` with ``code`` (503:
        50300000, 429: 42900001, else ``status * 100000``), ``msg`` and
        ``Retry-After: retry_after``. ``part_id`` / ``key`` match only that
        part / path. ``commit=True``: the request is carried out, then its
        answer is replaced (a lost response). ``times=None``: until
        :meth:`clear_faults`. Nothing is stored unless ``commit``.
        """
        if route != "*" and route not in ROUTES:
            raise ValueError(f"route must be '*' or one of {ROUTES}")
        match = {
            "route": None if route == "*" else route,
            "part_id": None if part_id is None else int(part_id),
            "key": None if key is None else self._locate(key, None)[1],
        }
        given = {"code": code, "msg": msg, "retry_after": retry_after}
        params = {name: value for name, value in given.items() if value is not None}
        if commit:
            params["commit"] = True
        self._arm(Fault("fail", times=times, match=match, status=int(status), **params))

    def _fault_point(self, call: Call, routes: Sequence[str], key: str, part_id: Optional[int] = None) -> None:
        """Raise :class:`Injected` for a matching fault (or note a commit one on ``call``).

        A request with several stages matches a fault of any of them; a
        fault with a part id matches only a request that carries that part.
        """
        facts = {"key": key, "part_id": part_id if "part" in routes else None}

        def matches(fault: Fault) -> bool:
            if fault.match.get("key", key) != key:  # keys are case-sensitive
                return False
            return any(fault.matches(route=route, **facts) for route in routes)

        with self._lock:
            fault = self._use_fault_locked(matches)
        if fault is None:
            return
        log.info("%s %s: injected %r", call.method, call.uri, fault)
        if not fault.params.get("commit"):
            raise Injected(fault)
        if call.commit_fault is None:
            call.commit_fault = fault
