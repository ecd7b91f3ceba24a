"""Who may do what on the UPYUN emulator: the Date window, the operator's rights, and every signature checked.

REST, multipart and task requests, FORM policies and purge requests each
sign differently; the checks are all here, on the emulator's own
:mod:`~upclient.testing.upyun.signatures`.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple
from urllib.parse import unquote

from upclient.testing.upyun import signatures
from upclient.testing.upyun.store import UpyunStore
from upclient.testing.upyun.wire import Call, Refusal

__all__ = ["Authenticating"]

_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


def _signature_error() -> Refusal:
    return Refusal(401, 40100005, "signature error")


class Authenticating(UpyunStore):
    """The signature checks (each returns the operator's password or raises a :class:`Refusal`)."""

    def _check_access(self, service: str, operator: str) -> str:
        """The operator's password, if it may use the service."""
        if service not in self._services:
            raise Refusal(401, 40100012, "bucket not exist")
        password = self._operators.get(operator)
        if password is None:
            raise Refusal(401, 40100006, "user not exists")
        allowed = self._permissions.get(service)
        if allowed is not None and operator not in allowed:
            raise Refusal(401, 40100017, "user need permission")
        return password

    def _signed_date(self, call: Call) -> str:
        """The request's date (``X-Date`` first), if it is one and within the window."""
        date = call.header("X-Date") or call.header("Date")
        if not date:
            raise Refusal(401, 40100001, "need date header")
        when = signatures.parse_date(date)
        if when is None:
            raise Refusal(401, 40100016, "invalid date value in header")
        if abs(self.clock() - when) > signatures.DATE_WINDOW:
            raise Refusal(401, 40100002, "date offset error")
        return date

    @staticmethod
    def _credentials(value: Optional[str]) -> Tuple[str, str]:
        """``(operator, sig)`` of an ``UPYUN op:sig`` authorization."""
        if not value:
            raise Refusal(401, 40100004, "need authorization header")
        if value.strip().split(" ", 1)[0].lower() != "upyun":
            raise Refusal(401, 40100003, "unknown realm in authorization header")
        parsed = signatures.split_authorization(value)
        if parsed is None:
            raise _signature_error()
        return parsed

    def _authenticate(self, call: Call, service: str) -> Tuple[str, str]:
        """Check a REST signature; ``(operator, password)``.

        The URI signed may be the path as sent with its query or without it
        (Java and PHP sign the path alone), either as sent or re-encoded as
        the Python SDK encodes it.
        """
        operator, sig = self._credentials(call.header("Authorization"))
        date = self._signed_date(call)
        password = self._check_access(service, operator)
        content_md5 = call.header("Content-MD5")
        if content_md5 is not None and not _MD5_RE.match(content_md5):
            raise Refusal(400, 40001001, "wrong content-md5")
        encoded = signatures.wire_path(unquote(call.raw_path))
        query = "?" + call.query if call.query else ""
        for uri in {call.uri, call.raw_path, encoded, encoded + query}:
            expected = signatures.rest_signature(password, call.method, uri, date, None, content_md5)
            if signatures.same(expected, sig):
                return operator, password
        raise _signature_error()

    def _check_form_signature(
        self, service: str, operator: str, sig: str, date: str, policy: str, content_md5: Optional[str]
    ) -> str:
        """Check a FORM upload's signature (URI ``/<service>`` or ``/<service>/``); the password."""
        password = self._check_access(service, operator)
        for uri in (f"/{service}", f"/{service}/"):
            if signatures.same(signatures.rest_signature(password, "POST", uri, date, policy, content_md5), sig):
                return password
        raise _signature_error()

    def _purge_credentials(self, call: Call) -> Tuple[str, str, str]:
        """``(service, operator, digest)`` of ``UpYun <service>:<operator>:<digest>``."""
        header = call.header("Authorization")
        if not header:
            raise Refusal(401, 40100004, "need authorization header")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "upyun":
            raise Refusal(401, 40100003, "unknown realm in authorization header")
        pieces = rest.strip().split(":")
        if len(pieces) != 3:
            raise _signature_error()
        service, operator, digest = pieces
        return service, operator, digest

    def _check_purge_signature(self, service: str, password: str, urls: str, date: str, digest: str) -> None:
        if not signatures.same(signatures.purge_digest(service, password, urls, date), digest.lower()):
            raise _signature_error()
