"""The progress display the examples share (not an example itself).

On a terminal: one line, redrawn in place.  Anywhere else (a pipe, a file, a
CI log): a whole line each time another tenth of the file is done, or at most
one a second when the size is unknown, so a log stays readable.  Output goes
to stderr; stdout keeps the results a script may want to parse.

An example imports it as ``from _progress import ProgressLine``; Python puts
the script's own directory on ``sys.path``, so that works whether the example
runs as ``python examples/x.py`` or from ``examples/``::

    with ProgressLine("big.iso") as show:
        client.put("big.iso", on_progress=show)
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Optional, TextIO

import upclient


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressLine:
    """An ``on_progress`` callback: ``client.put(..., on_progress=ProgressLine(name))``.

    Use it as a context manager (or call :meth:`close`) so that a line drawn
    on a terminal is ended before anything else is printed.
    """

    #: Without a known size, the least time between two lines off a terminal.
    INTERVAL = 1.0

    def __init__(self, label: str, stream: Optional[TextIO] = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._lock = threading.Lock()
        self._width = 0  # of the line drawn on a terminal, 0 when none is open
        self._tenths = -1  # the last tenth printed as a line
        self._last_line = float("-inf")

    def __call__(self, p: upclient.Progress) -> None:
        with self._lock:
            if self.tty:
                self._redraw(self._text(p))
            elif p.fraction is not None:
                tenths = int(p.fraction * 10 + 1e-9)
                if tenths > self._tenths:
                    self._tenths = tenths
                    self._print(self._text(p))
            elif time.monotonic() - self._last_line >= self.INTERVAL:
                self._last_line = time.monotonic()
                self._print(self._text(p))

    def _text(self, p: upclient.Progress) -> str:
        done = format_bytes(p.bytes_done)
        if p.fraction is None:
            return f"{self.label}: {done}, {format_bytes(p.rate)}/s"
        text = f"{self.label}: {100 * p.fraction:3.0f}%  {done} of {format_bytes(p.total or 0)}"
        if self.tty and p.fraction < 1:
            text += f", {format_bytes(p.rate)}/s"
            if p.eta is not None:
                text += f", {p.eta:.0f} s left"
        return text

    def _redraw(self, text: str) -> None:
        self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
        self.stream.flush()
        self._width = len(text)

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the line drawn on a terminal, if any."""
        with self._lock:
            if self._width:
                self._print("")
                self._width = 0

    def __enter__(self) -> "ProgressLine":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
