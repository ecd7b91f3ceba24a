"""The one fault mechanism of every test server and proxy in :mod:`upclient.testing`.

A :class:`Fault` is a plain record: what it matches (``match``: facts a
request must have, such as ``route="part"`` or ``cmd=11``), what it does
(``action`` and its ``params``, read as attributes: ``fault.status``) and how
many uses it has left (``remaining``; None: until cleared).  A
:class:`FaultBook` holds the armed faults and the request counters of its
owner, and hands out the first armed fault that matches a request.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, ClassVar, Counter, Dict, List, Mapping, Optional

__all__ = ["Fault", "FaultBook"]

_log = logging.getLogger("upclient.testing")


class Fault:
    """One armed fault; see the module docstring."""

    __slots__ = ("action", "match", "params", "remaining")

    def __init__(
        self,
        action: str,
        *,
        times: Optional[int] = 1,
        match: Optional[Mapping[str, Any]] = None,
        **params: Any,
    ) -> None:
        self.action = action
        self.match = {k: v for k, v in (match or {}).items() if v is not None}
        self.params = params
        self.remaining = times

    def __getattr__(self, name: str) -> Any:
        params = object.__getattribute__(self, "params")
        if name in params:
            return params[name]
        raise AttributeError(name)

    def matches(self, **facts: Any) -> bool:
        """Whether a request with these facts is one this fault applies to.

        A fact the fault does not name never stops a match; a fact it names
        must be equal (strings compare without case).
        """
        for key, want in self.match.items():
            have = facts.get(key)
            if isinstance(want, str) and isinstance(have, str):
                if want.lower() != have.lower():
                    return False
            elif want != have:
                return False
        return True

    def __repr__(self) -> str:
        times = "forever" if self.remaining is None else f"{self.remaining}x"
        where = " ".join(f"{k}={v}" for k, v in self.match.items()) or "*"
        what = " ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<fault {self.action} {where} {what} {times}>".replace("  ", " ")


class FaultBook:
    """Request counters and armed faults, for a test server or proxy.

    The owner sets ``_lock``, ``_requests`` (a Counter) and ``_faults`` (a
    list) and says how a key is written (:meth:`_count_key`).
    """

    _lock: Any
    _requests: "Counter[str]"
    _faults: List[Fault]
    log: ClassVar[logging.Logger] = _log

    @property
    def _name(self) -> str:
        return type(self).__name__

    @staticmethod
    def _count_key(key: str) -> str:
        return key

    @property
    def requests(self) -> Dict[str, int]:
        """Requests seen per route (or method), a copy."""
        with self._lock:
            return dict(self._requests)

    def request_count(self, route: Optional[str] = None) -> int:
        """Requests seen for ``route`` (``None``: all)."""
        with self._lock:
            if route is None:
                return sum(self._requests.values())
            return self._requests.get(self._count_key(route), 0)

    def _count(self, *routes: str) -> None:
        with self._lock:
            self._requests.update(routes)

    def clear_faults(self) -> None:
        """Disarm every fault not used up yet."""
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> List[str]:
        """Descriptions of the armed faults, in matching order."""
        with self._lock:
            return [repr(f) for f in self._faults]

    def _arm(self, fault: Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("times must be >= 1 or None")
        status = fault.params.get("status") if isinstance(fault, Fault) else getattr(fault, "status", None)
        if status is not None and status != 0 and not 100 <= status <= 599:
            raise ValueError("status must be 0 or an HTTP status")
        with self._lock:
            self._faults.append(fault)
        self.log.debug("%s: armed %r", self._name, fault)

    def _use_fault_locked(self, matches: Callable[[Fault], bool]) -> Optional[Fault]:
        """The first armed fault ``matches`` accepts, one use taken from it; None if none does."""
        for i, fault in enumerate(self._faults):
            if not matches(fault):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[i]
            return fault
        return None

    def _take_fault(self, **facts: Any) -> Optional[Fault]:
        """The first armed fault matching ``facts``, one use taken (locks)."""
        with self._lock:
            return self._use_fault_locked(lambda f: f.matches(**facts))
