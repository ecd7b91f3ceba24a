"""tus ids: upload URLs a caller or a resume record hands the backend, checked.

A tus id is an upload URL (``UploadResult.id``) or a path joined to the
creation endpoint.  One a caller gives (``info``, ``get``, ``delete``,
``abort``, ``put(upload_url=...)``) must stay on the endpoint's origin or a
trusted one, and must not climb out of the endpoint's path with dot
segments; see :func:`upload_url`.  URLs in a resume record were handed out
by the server, which may place uploads on another origin: those go out
without the client's credentials (the transport sees to that) once
:func:`stored_url_ok` finds them well formed.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Iterable, Optional

from ...errors import BadInput
from ...origins import origin_of
from ..paths import bad_character, dot_segment
from ..urls import shown, split_authority

__all__ = ["upload_url", "stored_url_ok"]

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _problem(url: str) -> Optional[str]:
    """What makes ``url`` unusable as an upload URL, whatever its origin, or None."""
    where = bad_character(url)
    if where:
        return f"holds a control character or backslash ({where})"
    if any(c.isspace() for c in url):
        return "holds a space (percent-encode it as %20)"
    if "#" in url:
        return "holds a fragment ('#...'), which would never reach the server"
    return None


def upload_url(
    id: object, endpoint: str, origins: Optional[Iterable[str]], *, backend: str, operation: str
) -> str:
    """The URL of the upload a caller names by ``id``; BadInput (before any request) unless
    it is on one of ``origins`` (None: any) and climbs out of no path."""
    if not isinstance(id, str):
        raise BadInput(f"a tus upload id is a str, not {type(id).__name__}", backend=backend, operation=operation)
    given = id

    def bad(why: str) -> BadInput:
        return BadInput(f"tus upload id {shown(given)!r} {why}", backend=backend, operation=operation)

    if not id:
        raise bad("is empty")
    problem = _problem(id)
    if problem:
        raise bad(problem)
    if id.startswith("//"):  # scheme-relative: a host of its own
        id = endpoint.partition(":")[0] + ":" + id
    if _ABSOLUTE.match(id):
        parts = urllib.parse.urlsplit(id)
        if parts.scheme.lower() not in ("http", "https"):
            raise bad("is not an http(s) URL")
        if "@" in parts.netloc:
            raise bad("holds a user or password; give credentials in the client's URL or as auth=")
        try:
            split_authority(id)
        except BadInput:
            raise bad("has a malformed host or port") from None
        url, path = id, parts.path
    else:
        if "?" in id:
            raise bad("holds '?': only a whole upload URL may carry a query")
        url, path = urllib.parse.urljoin(endpoint, id), id
    if dot_segment(path) is not None:
        raise bad("has a '.' or '..' segment, which would climb out of the server's path")
    if origins is not None:
        where = origin_of(url)
        allowed = list(origins)
        if where not in allowed:
            raise bad(
                f"is on {where}, not on the server's origin {origin_of(endpoint)}; add it to "
                "trusted_origins= to allow it (it then receives the client's credentials)"
            )
    return url


def stored_url_ok(url: object) -> bool:
    """Whether a URL from a resume record is a well-formed http(s) URL without credentials."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")) or _problem(url):
        return False
    if "@" in urllib.parse.urlsplit(url).netloc:
        return False
    try:
        split_authority(url)
    except BadInput:
        return False
    return True
