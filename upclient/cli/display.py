"""What the command shows while it works: one progress line for all files, and log lines around it."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional, TextIO

from ..progress import Progress

__all__ = ["ProgressDisplay", "DisplayHandler", "format_bytes", "format_seconds"]


def format_bytes(n: Optional[float]) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def format_seconds(s: Optional[float]) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60:d}:{s % 60:02d}"


class DisplayHandler(logging.Handler):
    """Log records go through the progress display, so they do not tear the bar."""

    def __init__(self, display_ref: Callable[[], "ProgressDisplay"]) -> None:
        super().__init__()
        self.display_ref = display_ref

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.display_ref().write(self.format(record), sys.stderr)
        except Exception:  # pragma: no cover - logging must never break the command
            self.handleError(record)


# -- progress display ---------------------------------------------------------------


class ProgressDisplay:
    """One progress line on stderr for all files of a command.

    A tqdm bar when tqdm is installed (the ``cli`` extra), else a plain
    line rewritten in place.  Thread-safe: uploads report from worker threads.
    Disabled, it only forwards :meth:`write`.
    """

    INTERVAL = 0.2

    def __init__(self, enabled: bool, label: str, total: Optional[int], files: int = 1) -> None:
        self.enabled = enabled
        self.label = label
        self.total = total
        self.files = files
        self.files_done = 0
        self._lock = threading.RLock()
        self._done: Dict[Any, int] = {}
        self._rates: Dict[Any, float] = {}
        self._bar: Any = None
        self._plain_width = 0
        self._last_plain = 0.0
        if enabled:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
            except ImportError:  # no `cli` extra: the plain line below
                pass
            else:
                self._bar = tqdm(
                    total=total,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}"
                    if total is not None
                    else "{desc}: {elapsed}{postfix}",
                    desc=self._desc(),
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    file=sys.stderr,
                    dynamic_ncols=True,
                    mininterval=0.1,
                    leave=True,
                )

    def _desc(self) -> str:
        if self.files > 1:
            return f"{self.files_done}/{self.files} files"
        return self.label

    def update(self, key: Any, progress: Progress) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._rates[key] = progress.rate
            self._set_done(key, progress.bytes_done)
            if self._bar is None:
                self._plain(force=False)

    def file_finished(self, key: Any, size: Optional[int]) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.files_done += 1
            self._rates.pop(key, None)
            if size is not None:
                self._set_done(key, size)
            if self._bar is not None:
                self._bar.set_description_str(self._desc(), refresh=True)

    def _set_done(self, key: Any, n: int) -> None:
        before = self._done.get(key, 0)
        self._done[key] = n
        if self._bar is None:
            return
        # The library's rate (bytes sent in this run, between snapshots) rather
        # than tqdm's: a resumed upload starts with a jump that is not this run's speed.
        self._bar.set_postfix_str(self._stats(), refresh=False)
        if n != before:
            self._bar.update(n - before)  # may go back: a failed try takes its bytes back

    def _stats(self) -> str:
        """'12.0 MiB/64.0 MiB, 50.2 MiB/s, eta 0:01' from the library's own rates."""
        done = sum(self._done.values())
        rate = sum(self._rates.values())
        parts = [format_bytes(done) + (f"/{format_bytes(self.total)}" if self.total is not None else "")]
        if rate > 0:  # nothing in flight, or too soon to measure: no rate to speak of
            parts.append(f"{format_bytes(rate)}/s")
            if self.total is not None and rate > 0:
                parts.append(f"eta {format_seconds(max(0, self.total - done) / rate)}")
        return ", ".join(parts)

    def _plain(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < self.INTERVAL:
            return
        self._last_plain = now
        line = f"{self._desc()}: {self._stats()}"
        if self.total:
            line = f"{self._desc()}: {100 * sum(self._done.values()) / self.total:3.0f}% {self._stats()}"
        pad = max(0, self._plain_width - len(line))
        sys.stderr.write("\r" + line + " " * pad)
        sys.stderr.flush()
        self._plain_width = len(line)

    def write(self, message: str, file: TextIO) -> None:
        """Print a line without tearing the progress line."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(message, file=file)
                return
            if self.enabled and self._plain_width:
                sys.stderr.write("\r" + " " * self._plain_width + "\r")
                self._plain_width = 0
            file.write(message + "\n")
            file.flush()

    def close(self) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._plain_width:
                sys.stderr.write("\n")
                sys.stderr.flush()
