"""How many files ``put_many`` uploads at once: found by measuring, not guessed.

Parallel files pay when each file waits on the network (a distant server, a
slow link); on a fast local link the threads only contend for the
interpreter and go slower together than one alone.  :class:`FilePacer`
lets ``limit`` uploads run at once and moves ``limit`` between 1 and the
client's ``max_files`` by hill-climbing on measured files per second: it
doubles the width while that helps, then after each window of finished files
keeps going the way that helped, undoes a step that hurt, and now and then
probes one step up.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

__all__ = ["FilePacer"]

#: A change of less than this (as a fraction) counts as no change.
TOLERANCE = 0.05
#: A measurement lasts at least this long (seconds), so that it is not noise.
MIN_WINDOW = 0.25


class FilePacer:
    """A gate for concurrent file uploads whose width follows measured throughput."""

    def __init__(self, ceiling: int, start: int = 1) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = max(1, min(start, self.ceiling))
        self.active = 0
        self._cond = threading.Condition()
        self._direction = 1
        self._slow_start = True
        self._last_rate: Optional[float] = None
        self._window_done = 0
        self._window_start = time.monotonic()

    def _window(self) -> int:
        return max(4, 2 * self.limit)

    def acquire(self, stop: Any = None) -> bool:
        """Wait for a free slot; False if ``stop`` was set meanwhile."""
        with self._cond:
            while self.active >= self.limit:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.1)
            self.active += 1
            return True

    def release(self, finished: bool = True) -> None:
        """Free a slot; ``finished`` counts an upload (well or not) for the measure.

        Waiting threads are woken only when the width grew: in the steady
        state the thread that frees a slot takes it again itself, so no
        thread hands over to another.
        """
        with self._cond:
            self.active -= 1
            if not finished:
                self._cond.notify_all()  # this worker is leaving: let another in
                return
            self._window_done += 1
            before = self.limit
            if (
                self._window_done >= self._window()
                and time.monotonic() - self._window_start >= MIN_WINDOW
            ):
                self._adjust()
            if self.limit > before:
                self._cond.notify_all()

    def _adjust(self) -> None:
        now = time.monotonic()
        rate = self._window_done / max(now - self._window_start, 1e-6)
        last = self._last_rate
        if last is None or rate > last * (1 + TOLERANCE):
            if self._slow_start:
                step = self.limit  # doubling while each doubling helps, as TCP's slow start
            else:  # the last step helped: one more the same way
                step = 1 if self._direction >= 0 else -1
        elif rate < last * (1 - TOLERANCE):
            self._slow_start = False
            step = -self._direction if self._direction else -1  # it hurt: undo it
        else:  # no difference: the fewer threads the better
            self._slow_start = False
            if self._direction > 0:
                step = -self._direction  # going up bought nothing: undo it
            elif self._direction < 0:
                step = 0  # going down cost nothing: stay
            else:
                step = 1  # held steady: probe one step up
        new = max(1, min(self.ceiling, self.limit + step))
        self._direction = new - self.limit
        self.limit = new
        self._last_rate = rate
        self._window_done = 0
        self._window_start = now
