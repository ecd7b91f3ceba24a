"""The checks every backend URL passes before a backend is made from it.

``urllib.parse`` is lenient where a client should not be: it drops tabs and
line breaks from a URL without a word, raises a bare ``ValueError`` for an
unclosed ``[``, and leaves an empty host or a port out of range to fail
later, on the network, as an error that is retried.  :func:`check_url` finds
all of these at construction and raises :class:`~upclient.errors.BadInput`,
whatever the scheme.  Its messages never show a password given in the URL.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Any, List, Optional, Tuple

from ..errors import BadInput

__all__ = ["check_url", "split_authority", "shown", "without_userinfo", "userinfo_auth"]

# Characters that cannot be part of a host name (beyond the delimiters split off first).
_NOT_IN_HOST = re.compile(r"""[\[\]<>"{}|\\^`@/?#:]""")


def shown(url: str) -> str:
    """``url`` as an error message may show it: a password in it is replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    authority, cut, tail = _split_at_path(rest)
    userinfo, at, hosts = authority.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{hosts}{cut}{tail}"


def _split_at_path(rest: str) -> Tuple[str, str, str]:
    """``authority, delimiter, remainder`` of what follows ``scheme://``."""
    m = re.search(r"[/?#]", rest)
    if m is None:
        return rest, "", ""
    return rest[: m.start()], rest[m.start()], rest[m.start() + 1 :]


def _bad_character(url: str) -> str:
    """A description of the first control character or space in ``url``, or ''."""
    for i, c in enumerate(url):
        if c.isspace() or ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            return f"{c!r} at position {i}"
    return ""


def split_authority(url: str, *, many_hosts: bool = False) -> List[Tuple[str, int]]:
    """The ``(host, port)`` pairs of ``url``'s authority, port 0 where none is given.

    ``many_hosts`` allows a comma-separated list (``fdfs://a:22122,b:22122``).
    A host in brackets must be an IPv6 address.  BadInput for anything else.
    """
    scheme, _, rest = url.partition("://")
    authority = _split_at_path(rest)[0].rpartition("@")[2]
    items = authority.split(",") if many_hosts else [authority]
    out: List[Tuple[str, int]] = []
    for item in items:
        if many_hosts and not item.strip() and len(items) > 1:
            continue  # a stray comma: harmless
        out.append(_host_and_port(item, url, many_hosts))
    if not out:
        raise BadInput(f"{shown(url)!r} is not a usable URL: no host")
    return out


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _host_and_port(item: str, url: str, many_hosts: bool) -> Tuple[str, int]:
    def bad(why: str) -> BadInput:
        return BadInput(f"{shown(url)!r} is not a usable URL: {why}")

    if item.startswith("["):
        host, closed, after = item[1:].partition("]")
        if not closed:
            raise bad(f"the IPv6 address {item!r} lacks its closing ']'")
        if not _is_ipv6(host):
            raise bad(f"{host!r} in brackets is not an IPv6 address")
        if after and not after.startswith(":"):
            raise bad(f"unexpected {after!r} after the IPv6 address")
        port_text = after[1:]
    elif item.count(":") > 1 and many_hosts and _is_ipv6(item):
        return item, 0  # a bare IPv6 address, as the FastDFS configuration files write them
    else:
        host, _, port_text = item.partition(":")
        if not host:
            raise bad("no host")
        if _NOT_IN_HOST.search(host) or ":" in port_text:
            raise bad(f"{item!r} is not a host[:port]")
    if port_text == "":
        return host, 0
    if not port_text.isdigit() or not port_text.isascii():
        raise bad(f"the port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 < port < 65536:
        raise bad(f"the port {port} is out of range (1 to 65535)")
    return host, port


def check_url(url: str, *, many_hosts: bool = False) -> None:
    """Raise BadInput unless ``url`` is ``scheme://[userinfo@]host[:port][...]`` with sane parts.

    No control characters or spaces anywhere (a CRLF would otherwise vanish,
    or end up in a request line), a host, brackets only around an IPv6
    address, a port from 1 to 65535.
    """
    if not isinstance(url, str):
        raise BadInput(f"a URL must be a str, not {type(url).__name__}")
    where = _bad_character(url)
    if where:
        raise BadInput(
            f"{shown(url)!r} is not a usable URL: it holds a control character or space ({where}); "
            "percent-encode it (%20, %0D%0A) if it belongs there"
        )
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise BadInput(f"{shown(url)!r} is not a URL; expected e.g. tus+https://host/files/")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise BadInput(f"{shown(url)!r} is not a URL: {scheme!r} is not a scheme")
    split_authority(url, many_hosts=many_hosts)


def without_userinfo(url: str) -> Tuple[str, Optional[Tuple[str, str]]]:
    """``url`` without ``user:password@``, and the ``(user, password)`` it held
    (percent-decoded), or None when it held none."""
    scheme, sep, rest = url.partition("://")
    authority, cut, tail = _split_at_path(rest)
    userinfo, at, hosts = authority.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    clean = f"{scheme}{sep}{hosts}{cut}{tail}"
    return clean, (urllib.parse.unquote(user), urllib.parse.unquote(password))


def userinfo_auth(url: str, auth: Any, *, backend: str) -> Tuple[str, Any]:
    """``url`` without its userinfo, and the auth for the transport: HTTP Basic
    from the userinfo, else ``auth`` (the client's); BadInput when both are given.

    The backend keeps only the returned URL, so no URL it builds, logs, raises
    or stores carries the password; the transport sends the auth only to the
    backend's own origins.
    """
    clean, pair = without_userinfo(url)
    if pair is None:
        return url, auth
    if auth is not None:
        raise BadInput(
            f"{shown(url)!r} names a user and auth= is given too: give the credentials one way",
            backend=backend,
        )
    return clean, pair  # the transport sends it as HTTP Basic
