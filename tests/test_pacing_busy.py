"""put_many's pacer decides early and probes little where more files at once do not pay.

Files finish on a synthetic clock (files/s and this process's CPU as
functions of the width), through the pacer's own ``acquire``/``release``,
so the windows and their timing are the pacer's: exact, and no time passes.
"""

from __future__ import annotations

from typing import Callable, List

from upclient import pacing
from upclient.pacing import FilePacer


class Sim:
    """A clock and a CPU counter that files advance as they finish."""

    def __init__(self, rate: Callable[[int], float], busy: Callable[[int], float]) -> None:
        self.rate, self.busy = rate, busy
        self.now = 100.0
        self.cpu = 5.0

    def pacer(self, ceiling: int) -> FilePacer:
        return FilePacer(ceiling, clock=lambda: self.now, cpu=lambda: self.cpu)

    def run(self, pacer: FilePacer, files: int) -> List[int]:
        """Finish ``files`` files one by one; the width each ran at."""
        widths = []
        for _ in range(files):
            w = pacer.limit
            assert pacer.acquire()
            dt = 1.0 / self.rate(w)
            self.now += dt
            self.cpu += dt * self.busy(w)
            widths.append(w)
            pacer.release()
        return widths


def test_one_busy_upload_keeps_the_width_at_one_without_trying_more():
    # a client that keeps its core busy: every extra file at once costs 15 %
    sim = Sim(rate=lambda w: 2000.0 / (1 + 0.15 * (w - 1)), busy=lambda w: 0.9)
    pacer = sim.pacer(4)
    widths = sim.run(pacer, 200)  # 0.1 s: the first window has decided
    assert pacer.busy is True
    assert set(widths) == {1}


def test_the_first_decision_comes_after_a_short_window():
    # a client that mostly waits (a server on the other core, a link): two at once pay
    sim = Sim(rate=lambda w: 2000.0 * min(w, 2), busy=lambda w: 0.4 * min(w, 2))
    pacer = sim.pacer(4)
    widths = sim.run(pacer, 2 * int(2000 * pacing.FIRST_WINDOW) + 8)
    assert pacer.busy is False
    assert widths[-1] == 2, "still one at a time after the first window"
    assert widths.count(1) <= int(2000 * pacing.FIRST_WINDOW) + 2


def test_probes_that_buy_nothing_come_less_and_less_often():
    # more at once neither helps nor hurts much: the fewer threads the better, and the
    # measuring must cost little
    sim = Sim(rate=lambda w: 1000.0 / (1 + 0.08 * (w - 1)), busy=lambda w: 0.5)
    pacer = sim.pacer(4)
    widths = sim.run(pacer, 4000)  # about 4 s: 40 windows
    late = widths[len(widths) // 2:]
    assert sum(w > 1 for w in late) <= len(late) // 8, "probing above one too often"
    assert max(widths) >= 2, "never probed"


def test_a_faster_window_without_a_step_is_not_taken_for_a_step_that_paid():
    # after the first window the server gets faster for everyone (another client stopped):
    # at an unchanged width that is not a reason to climb
    sim = Sim(rate=lambda w: (1000.0 if sim.now < 100.05 else 1300.0) if w == 1 else 900.0, busy=lambda w: 0.9)
    pacer = sim.pacer(4)
    widths = sim.run(pacer, 300)  # the first window and two of 0.1 s after it
    assert pacer.busy is True
    assert set(widths) == {1}


def test_the_first_file_paying_for_connections_and_imports_does_not_make_more_look_better():
    # the first file takes 50 ms (a connection, lazy imports); after it two at once are no faster
    sim = Sim(rate=lambda w: 2000.0, busy=lambda w: 0.5)
    pacer = sim.pacer(4)
    sim.now += 0.05  # the first file's warm-up, inside the pacer's first window
    widths = sim.run(pacer, 1000)  # about half a second
    assert max(widths) <= 2, "a warm-up taken for a gain: the width climbed past two"
