"""Origins: where a client's credentials may be sent.

An origin is a scheme, a host and a port, written ``https://host:443``.  The
transport sends the client's credentials (``auth``, the configured
``headers``, a password given in the server URL) only to its backend's own
origins and to those the user trusts with ``trusted_origins``; any other
URL, such as a tus upload URL on another host or a redirect, gets a bare
request.  :func:`origin_of` gives the canonical form, so ``HTTPS://Host``
and ``https://host:443`` are one origin.
"""

from __future__ import annotations

import urllib.parse
from typing import Iterable, Optional, Tuple

from .errors import BadInput

__all__ = ["origin_of", "trusted_origins"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Optional[str]:
    """``scheme://host:port`` of an http(s) URL (a ``tus+``-style prefix dropped), else None."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    scheme = scheme.lower().rpartition("+")[2]
    if scheme not in _DEFAULT_PORTS:
        return None
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{rest}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def _one(text: object) -> str:
    if not isinstance(text, str):
        raise BadInput(f"trusted_origins holds {text!r}: each origin is a str such as 'https://cdn.example.com'")
    found = origin_of(text)
    scheme, _, rest = text.partition("://")
    if found is None or "@" in rest or rest.rstrip("/").count("/") or "?" in rest or "#" in rest:
        raise BadInput(
            f"{text!r} is not an origin: trusted_origins takes scheme://host[:port] "
            "(http or https, no user, path or query), e.g. 'https://cdn.example.com'"
        )
    return found


def trusted_origins(value: Optional[Iterable[str]]) -> Tuple[str, ...]:
    """The canonical form of a ``trusted_origins`` setting; BadInput for anything that is not one."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    return tuple(dict.fromkeys(_one(v) for v in value))
