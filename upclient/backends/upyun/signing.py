"""UPYUN request signatures: REST and FORM, purge, remote signing, callbacks.

Every REST and FORM request carries ``Authorization: UPYUN <operator>:<sig>``
where ``sig`` is the base64 HMAC-SHA1, keyed with the hex MD5 of the
password, of ``METHOD&URI&DATE[&POLICY][&CONTENT-MD5]`` (an absent optional
field is left out with its ``&``).  ``URI`` is the path exactly as sent,
percent-encoded, with its query; ``DATE`` is the ``Date`` header, which the
service accepts for 30 minutes either side of its own clock.

The purge API signs differently: ``UpYun <service>:<operator>:<md5hex>`` of
``<purge field>&<service>&<Date>&<md5hex(password)>``.

A :class:`Signer` makes the header for a request, either with the password's
MD5 held in memory (:class:`LocalSigner`) or by asking an auth server
(:class:`RemoteSigner`), which holds the password itself; the request to that
server carries the fields to sign and never the password.

:func:`verify_callback` checks the signature UPYUN puts on its notify-url
callbacks, in constant time and within the Date window.

Nothing here logs, and no repr shows a password or its MD5.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
import time
import urllib.parse
from typing import Any, Callable, Mapping, Optional, Union

__all__ = [
    "DATE_WINDOW",
    "password_md5",
    "http_date",
    "parse_http_date",
    "quote_path",
    "signature",
    "authorization",
    "purge_authorization",
    "parse_authorization",
    "Signer",
    "LocalSigner",
    "RemoteSigner",
    "verify_callback",
]

#: Seconds a signed Date stays valid either side of the server's clock.
DATE_WINDOW = 30 * 60

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def password_md5(password: Union[str, bytes]) -> str:
    """The hex MD5 of a password: the HMAC key the service signs with."""
    raw = password.encode("utf-8") if isinstance(password, str) else password
    return hashlib.md5(raw).hexdigest()


def http_date(when: Optional[float] = None) -> str:
    """``when`` (epoch seconds, default now) as an RFC 1123 GMT date."""
    t = time.gmtime(time.time() if when is None else when)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_http_date(value: str) -> Optional[float]:
    """Epoch seconds of an HTTP date, or None if it is not one."""
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return float(calendar.timegm(parsed[:9]) - (parsed[9] or 0))


def quote_path(path: str) -> str:
    """A storage path as it goes on the wire and into the signature."""
    return urllib.parse.quote(path.encode("utf-8"), safe="~/")


def signature(
    key_md5: str,
    method: str,
    uri: str,
    date: str,
    policy: Optional[str] = None,
    content_md5: Optional[str] = None,
) -> str:
    """The base64 HMAC-SHA1 of ``METHOD&URI&DATE[&POLICY][&CONTENT-MD5]``."""
    fields = [method.upper(), uri, date]
    if policy:
        fields.append(policy)
    if content_md5:
        fields.append(content_md5)
    digest = hmac.new(key_md5.encode("ascii"), "&".join(fields).encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization(
    operator: str,
    key_md5: str,
    method: str,
    uri: str,
    date: str,
    policy: Optional[str] = None,
    content_md5: Optional[str] = None,
) -> str:
    """The whole ``Authorization`` header value for a REST or FORM request."""
    return f"UPYUN {operator}:{signature(key_md5, method, uri, date, policy, content_md5)}"


def purge_authorization(service: str, operator: str, key_md5: str, purge: str, date: str) -> str:
    """The ``Authorization`` header of a purge request whose ``purge`` field is ``purge``."""
    digest = hashlib.md5("&".join((purge, service, date, key_md5)).encode("utf-8")).hexdigest()
    return f"UpYun {service}:{operator}:{digest}"


def parse_authorization(value: Optional[str]) -> Optional["tuple[str, str]"]:
    """``(operator, signature)`` from ``UPYUN op:sig`` (scheme word in any case), else None."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "upyun" or ":" not in rest:
        return None
    operator, _, sig = rest.strip().rpartition(":")
    if not operator or not sig:
        return None
    return operator, sig


class Signer:
    """Makes the Authorization header of one request; see the module docstring."""

    operator: str
    #: Whether purge requests can be signed (they need the password's MD5 here).
    can_purge: bool = False

    def sign(
        self, method: str, uri: str, date: str, *, policy: Optional[str] = None, content_md5: Optional[str] = None
    ) -> str:
        raise NotImplementedError

    def sign_purge(self, service: str, purge: str, date: str) -> str:
        raise NotImplementedError


class LocalSigner(Signer):
    """Signs with the password's MD5, kept in memory and never shown."""

    can_purge = True

    def __init__(self, operator: str, password: Optional[str] = None, *, password_md5_hex: Optional[str] = None):
        if (password is None) == (password_md5_hex is None):
            raise ValueError("give exactly one of password and password_md5_hex")
        self.operator = operator
        self.__key = password_md5_hex.lower() if password_md5_hex is not None else password_md5(password or "")

    def sign(
        self, method: str, uri: str, date: str, *, policy: Optional[str] = None, content_md5: Optional[str] = None
    ) -> str:
        return authorization(self.operator, self.__key, method, uri, date, policy, content_md5)

    def sign_purge(self, service: str, purge: str, date: str) -> str:
        return purge_authorization(service, self.operator, self.__key, purge, date)

    def __repr__(self) -> str:
        return "<LocalSigner operator=<hidden> password=<hidden>>"


class RemoteSigner(Signer):
    """Asks an auth server for each header.

    ``post`` is called as ``post(url, fields)`` with the JSON object
    ``{username, method, uri, date[, content_md5][, policy]}`` and returns
    the response body, which is the whole Authorization header.  The
    password never leaves that server, so purge (which has no remote form)
    cannot be signed this way.
    """

    def __init__(self, operator: str, url: str, post: Callable[[str, Mapping[str, Any]], str]) -> None:
        self.operator = operator
        self.url = url
        self._post = post

    def sign(
        self, method: str, uri: str, date: str, *, policy: Optional[str] = None, content_md5: Optional[str] = None
    ) -> str:
        fields = {"username": self.operator, "method": method.upper(), "uri": uri, "date": date}
        if content_md5:
            fields["content_md5"] = content_md5
        if policy:
            fields["policy"] = policy
        return self._post(self.url, fields).strip()

    def sign_purge(self, service: str, purge: str, date: str) -> str:
        from ...errors import Unsupported

        raise Unsupported(
            "purge requests cannot be signed by an auth server; give the password to purge",
            backend="upyun", operation="purge",
        )

    def __repr__(self) -> str:
        from ...transport import redact_url

        return f"<RemoteSigner operator=<hidden> url={redact_url(self.url)!r}>"


def _header(headers: Mapping[str, str], name: str) -> Optional[str]:
    lower = name.lower()
    for k, v in headers.items():
        if k.lower() == lower:
            return v
    return None


def verify_callback(
    headers: Mapping[str, str],
    uri: str,
    operator: str,
    password: str,
    *,
    body: Optional[bytes] = None,
    method: str = "POST",
    window: float = DATE_WINDOW,
    now: Optional[float] = None,
) -> bool:
    """Whether a notify-url callback (or any request) was signed by UPYUN for ``operator``.

    ``headers`` are the request's headers (any mapping, names in any case),
    ``uri`` its path as received (with the query, if any).  The ``Date`` (or
    ``X-Date``) must be within ``window`` seconds of ``now``; when ``body``
    is given and a ``Content-MD5`` header is present, the body must match it.
    The signature is compared in constant time.  Never raises on bad input.
    """
    parsed = parse_authorization(_header(headers, "Authorization"))
    date = _header(headers, "Date") or _header(headers, "X-Date")
    if parsed is None or not date:
        return False
    got_operator, got_sig = parsed
    when = parse_http_date(date)
    current = time.time() if now is None else now
    if when is None or abs(current - when) > window:
        return False
    content_md5 = _header(headers, "Content-MD5")
    if body is not None and content_md5 is not None:
        if not hmac.compare_digest(hashlib.md5(body).hexdigest(), content_md5.strip().lower()):
            return False
    expected = signature(password_md5(password), method, uri, date, None, content_md5)
    # compare_digest over both parts, so the time taken says nothing about either
    same_operator = hmac.compare_digest(got_operator.encode("utf-8"), operator.encode("utf-8"))
    same_sig = hmac.compare_digest(got_sig.encode("ascii", "replace"), expected.encode("ascii"))
    return same_operator and same_sig
