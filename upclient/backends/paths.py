"""Ids and keys on their way into a URL path: checked, then percent-encoded.

An id a caller passes (``client.info(id)``, ``delete``, ``get``) often comes
from the caller's own users.  Put into a URL as it is, ``../../admin?x=1``
climbs out of the API's path (urllib3 removes dot segments), a ``?`` starts
a query, a ``#`` cuts the rest off without a word, a backslash is a
separator to some servers, and a control character breaks the request line;
the request would still carry the client's credentials.  The helpers here
raise :class:`~upclient.errors.BadInput` for all of these, before any
request, and percent-encode what is left.
"""

from __future__ import annotations

import urllib.parse
from typing import Optional

from ..errors import BadInput
from .urls import shown

__all__ = ["bad_character", "dot_segment", "segment"]


def bad_character(text: str) -> str:
    """A description of the first control character or backslash in ``text``, or ''."""
    for i, c in enumerate(text):
        if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\\\u2028\u2029":
            return f"{c!r} at position {i}"
    return ""


def dot_segment(path: str) -> Optional[str]:
    """The first ``.`` or ``..`` segment of ``path`` (also percent-encoded, or
    behind an encoded slash or backslash), or None."""
    for raw in path.split("/"):
        decoded = urllib.parse.unquote(raw)
        for piece in decoded.replace("\\", "/").split("/"):
            if piece in (".", ".."):
                return raw
    return None


def segment(value: object, *, what: str, backend: str, operation: str) -> str:
    """``value`` as one percent-encoded path segment; BadInput unless it is one.

    One segment means: a non-empty str, not ``.`` or ``..``, with no ``/``
    (so no URL either), ``\\``, ``?``, ``#`` or control character.
    """

    def bad(why: str) -> BadInput:
        return BadInput(f"{what} {shown(str(value))!r} {why}", backend=backend, operation=operation)

    if not isinstance(value, str):
        raise BadInput(f"{what} must be a str, not {type(value).__name__}", backend=backend, operation=operation)
    if not value:
        raise bad("is empty")
    where = bad_character(value)
    if where:
        raise bad(f"holds a control character or backslash ({where})")
    if "://" in value or value.startswith("//"):
        raise bad("is a URL; give the id alone")
    for c in "/?#":
        if c in value:
            raise bad(f"holds {c!r}, which would leave the API's path")
    if dot_segment(value) is not None:
        raise bad("is a '.' or '..' path segment")
    return urllib.parse.quote(value, safe="")
