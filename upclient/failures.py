"""What a failed request's exception says, and what it must not say.

The transport (:mod:`upclient.transport`) turns the exceptions of requests,
urllib3 and sockets into :mod:`upclient.errors`; these helpers read them: the
chain of causes through the libraries' wrappers, a short reason instead of
urllib3's paragraph, advice for a failed TLS handshake, whether a socket timed
out, and the query strings (presigned signatures) cut out of their texts,
arguments and attributes before anything is raised, logged or printed.
"""

from __future__ import annotations

import re
import socket
import sys
from typing import Iterator, Optional

__all__ = ["chain", "forget_query", "of_requests", "scrub", "short_reason", "timed_out", "tls_advice"]

#: A query string inside an error text: ``url: /path?X-Signature=...``.
_QUERY_IN_TEXT = re.compile(r"((?:url: |https?://)[^?\s'\"]*)\?[^\s'\")]*")


def short_reason(exc: BaseException) -> str:
    """'connection refused' rather than urllib3's paragraph; the whole chain stays in __cause__."""
    from urllib3 import exceptions  # loaded already: the failure came from a request

    for node in chain(exc):
        if isinstance(node, ConnectionRefusedError):
            return "connection refused"
        if isinstance(node, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(node, BrokenPipeError):
            return "connection closed while sending"
        if isinstance(node, exceptions.NameResolutionError):
            return "host name not found"
        if isinstance(node, exceptions.ProtocolError) and node.args:
            first = node.args[0]
            if isinstance(first, str) and len(node.args) == 1:
                return first.rstrip(".").lower()
    return scrub(str(exc))


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it, through requests' and urllib3's wrappers."""
    seen = set()
    node: Optional[BaseException] = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        nxt = node.__cause__ or node.__context__
        if nxt is None and node.args and isinstance(node.args[-1], BaseException):
            nxt = node.args[-1]
        if nxt is None and isinstance(getattr(node, "reason", None), BaseException):
            nxt = node.reason  # type: ignore[attr-defined]
        node = nxt if isinstance(nxt, BaseException) else None


def tls_advice(exc: BaseException) -> str:
    """What went wrong in a TLS handshake, and what the user can do about it."""
    import ssl

    found = next((n for n in chain(exc) if isinstance(n, ssl.SSLError)), None)
    if isinstance(found, ssl.SSLCertVerificationError):
        why = found.verify_message or found.reason or "certificate verify failed"
        return (
            f"the server's certificate is not trusted ({why}). If it is signed by your own CA, "
            "pass verify='/path/to/ca.pem' (or set REQUESTS_CA_BUNDLE); "
            "verify=False (CLI: --insecure) skips the check, for tests only"
        )
    reason = (found.reason if found is not None else None) or scrub(str(found or exc))
    text = str(reason).lower()
    if "wrong_version_number" in text or "record layer failure" in text or "packet length too long" in text:
        return f"{reason}: the server does not speak TLS on this port (use http://, or the TLS port)"
    if "certificate_required" in text or "handshake_failure" in text or "certificate required" in text:
        return f"{reason}: the server may require a client certificate: pass cert=('client.pem', 'key.pem')"
    return str(reason)


def forget_query(exc: BaseException, url: str) -> None:
    """Take ``url``'s query string (a presigned signature) out of ``exc`` and its causes.

    urllib3's MaxRetryError keeps the request target in its message, its
    args and its ``url``; the error we raise is chained to it, so a
    traceback would print the signature.
    """
    query = url.partition("?")[2].partition("#")[0]
    if not query:
        return
    for node in chain(exc):
        if any(isinstance(a, str) and query in a for a in node.args):
            node.args = tuple(a.replace(query, "<redacted>") if isinstance(a, str) else a for a in node.args)
        for name, value in list(vars(node).items()):
            if isinstance(value, str) and query in value:
                setattr(node, name, value.replace(query, "<redacted>"))


def scrub(text: str) -> str:
    """urllib3's messages name the request target: cut any query string (it may hold a signature)."""
    return _QUERY_IN_TEXT.sub(r"\1", text)


def of_requests(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is one of requests' exceptions ``names`` (none can be raised before requests is imported)."""
    module = sys.modules.get("requests.exceptions")
    return module is not None and isinstance(exc, tuple(getattr(module, n) for n in names))


def timed_out(exc: BaseException) -> bool:
    """Whether a socket timeout is somewhere in the chain of ``exc``."""
    return any(isinstance(node, (TimeoutError, socket.timeout)) for node in chain(exc))
