"""UPYUN signatures as the service computes them, written for the emulator from the protocol's facts.

The emulator never asks the client's own signing code whether a request is
signed well: code that shares the client's mistakes would accept them.  What
this module knows (``/work/shared/protocols/upyun.md``, checked against the
documented test vectors in ``tests/test_upyun_emulator.py``):

* REST and FORM: ``Authorization: UPYUN <operator>:<sig>``, ``sig`` the
  base64 HMAC-SHA1, keyed with the hex MD5 of the password, of
  ``METHOD&URI&DATE[&POLICY][&CONTENT-MD5]``, where an absent optional field
  is left out together with its ``&``.
* Purge: ``UpYun <service>:<operator>:<md5hex>`` of
  ``<purge field>&<service>&<Date>&<md5hex(password)>``.
* Dates are RFC 1123 GMT and valid for 30 minutes either side of the
  service's clock.
"""

from __future__ import annotations

import base64
import calendar
import email.utils
import hashlib
import hmac
from typing import Optional, Tuple
from urllib.parse import quote

__all__ = [
    "DATE_WINDOW",
    "signing_key",
    "format_date",
    "parse_date",
    "wire_path",
    "rest_signature",
    "rest_authorization",
    "purge_digest",
    "split_authorization",
    "same",
]

#: Seconds a signed date stays valid either side of the service's clock.
DATE_WINDOW = 1800


def signing_key(password: str) -> bytes:
    """The HMAC key of an operator: the password's MD5, as hex digits."""
    return hashlib.md5(password.encode("utf-8")).hexdigest().encode("ascii")


def format_date(epoch: float) -> str:
    """An RFC 1123 date in GMT (``Wed, 09 Nov 2016 14:26:58 GMT``)."""
    return email.utils.formatdate(epoch, usegmt=True)


def parse_date(text: str) -> Optional[float]:
    """The epoch seconds an HTTP date names; None for anything else.

    A date without a zone is read as GMT, as the service does.
    """
    try:
        fields = email.utils.parsedate_tz(text)
    except (TypeError, ValueError):
        return None
    if fields is None:
        return None
    year, month, day, hour, minute, second = fields[:6]
    zone = fields[9] or 0
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 1, 0)) - zone)


def wire_path(path: str) -> str:
    """A decoded path percent-encoded as the SDK puts it on the wire (``~`` and ``/`` kept)."""
    return quote(path, safe="~/")


def rest_signature(
    password: str,
    method: str,
    uri: str,
    date: str,
    policy: Optional[str] = None,
    content_md5: Optional[str] = None,
) -> str:
    """``sig`` of a REST or FORM request: base64 HMAC-SHA1 of the ``&``-joined fields."""
    fields = [method.upper(), uri, date]
    fields += [optional for optional in (policy, content_md5) if optional]
    message = "&".join(fields)
    mac = hmac.new(signing_key(password), message.encode("utf-8"), digestmod=hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def rest_authorization(
    operator: str, password: str, method: str, uri: str, date: str, content_md5: Optional[str] = None
) -> str:
    """A whole ``Authorization`` value, as UPYUN signs the callbacks it sends."""
    return "UPYUN %s:%s" % (operator, rest_signature(password, method, uri, date, None, content_md5))


def purge_digest(service: str, password: str, purge: str, date: str) -> str:
    """The hex digest after ``<service>:<operator>:`` in a purge request's ``Authorization``."""
    key = signing_key(password).decode("ascii")
    return hashlib.md5(f"{purge}&{service}&{date}&{key}".encode("utf-8")).hexdigest()


def split_authorization(value: str) -> Optional[Tuple[str, str]]:
    """``(operator, sig)`` of ``UPYUN operator:sig`` (the scheme word in any case); None if malformed.

    The operator is everything before the last ``:``, since a base64
    signature has none.
    """
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "upyun":
        return None
    operator, colon, sig = credentials.strip().rpartition(":")
    if not colon or not operator or not sig:
        return None
    return operator, sig


def same(expected: str, given: str) -> bool:
    """Whether a signature given equals the one expected, in constant time."""
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))
