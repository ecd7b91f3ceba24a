"""What the transport hands a backend: :class:`HttpResponse`, upclient's own answer.

A backend reads a status, headers and a body from it and never sees a
``requests`` object, so protocol code can be tested with plain values and
errors of requests or urllib3 cannot leak through a response.  A streamed
answer (a download) is read with :meth:`HttpResponse.iter_content` and
closed by whoever reads it.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator, Mapping, Optional

__all__ = ["HttpResponse"]


class HttpResponse:
    """One HTTP answer: ``status``, ``headers`` (case-insensitive), ``content``.

    ``status_code`` and ``text`` / ``json()`` are there for the code that
    reads answers the way requests users do.
    """

    __slots__ = ("method", "url", "status", "reason", "headers", "_content", "_blocks", "_close")

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        headers: Mapping[str, str],
        content: Optional[bytes] = b"",
        *,
        reason: str = "",
        blocks: Optional[Callable[[int], Iterator[bytes]]] = None,
        close: Optional[Callable[[], None]] = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason
        self.headers = headers
        self._content = content
        self._blocks = blocks
        self._close = close

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def content(self) -> bytes:
        """The whole body (a streamed one is read to its end on first use)."""
        if self._content is None:
            self._content = b"".join(self.iter_content(1 << 20))
        return self._content

    @property
    def text(self) -> str:
        charset = "utf-8"
        ctype = self.headers.get("Content-Type", "")
        for param in ctype.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; a ``ValueError`` if it is not."""
        return json.loads(self.content)

    def iter_content(self, block: int = 1 << 20) -> Iterator[bytes]:
        """The body in blocks: streamed from the socket, or the content already read."""
        if self._blocks is not None:
            blocks, self._blocks = self._blocks, None
            yield from blocks(block)
            return
        if self._content:
            yield self._content

    def close(self) -> None:
        if self._close is not None:
            close, self._close = self._close, None
            close()

    def __repr__(self) -> str:
        return f"<HttpResponse {self.method} {self.status}>"
