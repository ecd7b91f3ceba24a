"""The rate the progress bar shows counts only bytes sent in this run, between snapshots.

After a resume the bar's first rate showed 89 MiB/s on a 12 MB/s link: the
bytes a part held on the server before a try were counted as sent at once,
and the first rate was taken from the start, when the socket buffers take
the first megabytes far faster than the link drains them.  The tracker runs
on a clock the test moves by hand, so the figures are exact.
"""

from __future__ import annotations

import io
from typing import List

import pytest

from upclient.cli.display import ProgressDisplay
from upclient.progress import Progress, ProgressTracker

MiB = 1024 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bytes_the_server_held_before_this_run_are_no_rate():
    clock = Clock()
    tracker = ProgressTracker("big.bin", 100 * MiB, done_bytes=60 * MiB, clock=clock)
    tracker.reader(6, base=8 * MiB)  # the part was half sent before: its 8 MiB count as done
    clock.now += 0.2
    first = tracker.snapshot()
    assert first.bytes_done == 68 * MiB
    assert first.rate == 0.0 and first.eta is None


def test_the_first_megabytes_into_the_socket_buffers_are_no_rate():
    clock = Clock()
    tracker = ProgressTracker("big.bin", 100 * MiB, done_bytes=60 * MiB, clock=clock)
    count = tracker.reader(6)
    clock.now += 0.01
    count(8 * MiB)  # taken by the kernel at once
    clock.now += 0.19
    first = tracker.snapshot()
    assert first.bytes_done == 68 * MiB and first.rate == 0.0
    clock.now += 1.0
    count(1 * MiB)  # what the link really carries
    second = tracker.snapshot()
    assert second.rate == pytest.approx(1 * MiB)
    assert second.eta == pytest.approx(31.0)


def test_a_finished_transfer_has_its_average_rate():
    clock = Clock()
    tracker = ProgressTracker("small.bin", 4 * MiB, clock=clock)
    count = tracker.reader(0)
    count(4 * MiB)
    tracker.finish_part(0, 4 * MiB)
    clock.now += 2.0
    only = tracker.snapshot()
    assert only.bytes_done == 4 * MiB and only.rate == pytest.approx(2 * MiB)


def test_a_failed_try_and_its_resend_are_counted_as_sent_once_each():
    clock = Clock()
    tracker = ProgressTracker("f", 10 * MiB, clock=clock)
    tracker.snapshot()
    count = tracker.reader(0)
    count(2 * MiB)
    tracker.drop_attempt(0)  # the connection broke; the server kept 1 MiB
    count = tracker.reader(0, base=1 * MiB)
    count(1 * MiB)
    clock.now += 1.0
    p = tracker.snapshot()
    assert p.bytes_done == 2 * MiB
    assert p.rate == pytest.approx(3 * MiB)  # what went over the wire, never the credited 1 MiB


def _line(rate: float, done: int, monkeypatch: pytest.MonkeyPatch) -> str:
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setitem(__import__("sys").modules, "tqdm", None)  # the plain line, whatever is installed
    display = ProgressDisplay(True, "big.bin", 100 * MiB)
    display.update(0, Progress(name="big.bin", bytes_done=done, total=100 * MiB, rate=rate, eta=None,
                               parts_done=0, parts_total=None, elapsed=0.2))
    display.close()
    return err.getvalue()


def test_the_bar_shows_no_rate_until_there_is_one(monkeypatch):
    lines: List[str] = [_line(0.0, 68 * MiB, monkeypatch), _line(12e6, 70 * MiB, monkeypatch)]
    assert "/s" not in lines[0] and "68.0 MiB/100.0 MiB" in lines[0]
    assert "11.4 MiB/s" in lines[1] and "eta 0:03" in lines[1]
