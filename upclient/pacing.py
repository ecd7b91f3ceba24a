"""How many files ``put_many`` uploads at once: found by measuring, not guessed.

Parallel files pay when each file waits (on a distant server, a slow link,
or a local server working on the other core); where one upload already
keeps this process busy, the threads only contend for the interpreter and
go slower together than one alone.  :class:`FilePacer` lets ``limit``
uploads run at once and moves ``limit`` between 1 and the client's
``max_files``:

- a first short window at width 1 says whether the process is busy (its CPU
  time at least :data:`BUSY` of the time); if so the width stays at 1
  without trying more.  Unlike the ranged download
  (:class:`upclient.transfer.download.RangeWidth`), time spent waiting for a
  core does not count: on a machine loaded by others, small files to a local
  server still went faster several at once (a median of 1.5x a loop of
  ``put`` in eight paired runs at a load of 3 to 4 on two cores);
- otherwise it doubles while each doubling raises the files per second, then
  after each window of finished files keeps going the way that helped and
  undoes a step that hurt;
- a width held steady is probed one step up now and then, less often after
  each probe that bought nothing (up to every :data:`MAX_HOLD` windows), so
  the measuring costs little where more width does not help.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

__all__ = ["FilePacer"]

log = logging.getLogger("upclient.pacing")

#: A change of less than this (as a fraction) counts as no change.
TOLERANCE = 0.1
#: A measurement lasts at least this long (seconds), so that it is not noise.
MIN_WINDOW = 0.1
#: The first measurement, at width 1: long enough to see whether one upload keeps the process busy.
FIRST_WINDOW = 0.03
#: CPU time of this process, as a fraction of the time, from which one upload counts as keeping it busy.
BUSY = 0.75
#: At most this many windows between two probes one step up.
MAX_HOLD = 8


def _monotonic() -> float:
    return time.monotonic()  # looked up at each call, so a test may replace time.monotonic


def _process_time() -> float:
    return time.process_time()


class FilePacer:
    """A gate for concurrent file uploads whose width follows measured throughput.

    ``clock`` and ``cpu`` (this process's CPU seconds) are there for tests.
    """

    def __init__(
        self,
        ceiling: int,
        start: int = 1,
        *,
        clock: Optional[Callable[[], float]] = None,
        cpu: Optional[Callable[[], float]] = None,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = max(1, min(start, self.ceiling))
        self.active = 0
        self._cond = threading.Condition()
        self._clock = clock or _monotonic
        self._cpu = cpu or _process_time
        self._direction = 1
        self._slow_start = True
        self._last_rate: Optional[float] = None
        self._hold = 0  # windows left before the next probe up
        self._quiet = 1  # the hold after a probe that bought nothing; doubles up to MAX_HOLD
        self._warm = False
        self._window_done = 0
        self._window_start = self._clock()
        self._window_cpu = self._cpu()
        #: Whether the first window found one upload keeping this process busy.
        self.busy: Optional[bool] = None

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
            if not self._warm:  # the first file paid for connections and imports: measure from here
                self._warm = True
                self._window_start, self._window_cpu = self._clock(), self._cpu()
                return
            self._window_done += 1
            before = self.limit
            least = FIRST_WINDOW if self._last_rate is None else MIN_WINDOW
            if self._window_done >= self._window() and self._clock() - self._window_start >= least:
                self._adjust()
            if self.limit > before:
                self._cond.notify_all()

    def _adjust(self) -> None:
        now, cpu = self._clock(), self._cpu()
        elapsed = max(now - self._window_start, 1e-6)
        rate = self._window_done / elapsed
        last = self._last_rate
        if last is None and self.busy is None:
            self.busy = self.limit == 1 and cpu - self._window_cpu >= BUSY * elapsed
        if last is None and self.busy:
            # one upload keeps this process busy: more would contend; probe later, rarely
            self._slow_start = False
            self._quiet = self._hold = MAX_HOLD // 2
            step = 0
        elif last is None or (rate > last * (1 + TOLERANCE) and (self._direction or self._slow_start)):
            if self._direction > 0:
                self._quiet = 1  # going up paid: probing is worth it again
            if self._slow_start:
                step = self.limit  # doubling while each doubling helps, as TCP's slow start
            else:  # the last step helped: one more the same way
                step = 1 if self._direction >= 0 else -1
        elif rate < last * (1 - TOLERANCE):
            self._slow_start = False
            if self._direction > 0:
                self._back_off()
            step = -self._direction if self._direction else -1  # it hurt: undo it
        else:  # no difference (or a change with no step to credit it to): the fewer threads the better
            self._slow_start = False
            if self._direction > 0:
                self._back_off()
                step = -self._direction  # going up bought nothing: undo it
            elif self._direction < 0 or self._hold > 0:
                self._hold = max(0, self._hold - 1)
                step = 0  # going down cost nothing, or a probe is not due: stay
            else:
                step = 1  # held steady long enough: probe one step up
        new = max(1, min(self.ceiling, self.limit + step))
        log.debug("%d files at once: %.0f files/s, CPU %.0f %% of the time; next %d", self.limit, rate,
                  100 * (cpu - self._window_cpu) / elapsed, new)
        self._direction = new - self.limit
        self.limit = new
        self._last_rate = rate
        self._window_done = 0
        self._window_start = now
        self._window_cpu = cpu

    def _back_off(self) -> None:
        """A step up bought nothing: the next probe waits twice as long (at most MAX_HOLD windows)."""
        self._hold = self._quiet
        self._quiet = min(MAX_HOLD, 2 * self._quiet)
