"""A download's "is this process busy?" counts the time its threads waited for a core.

On a machine loaded by other processes, a stream that keeps its thread busy
gets only part of a core: by its CPU time alone it looks like a stream that
waits on the network, and the download would split into ranges that only
contend.  Here this process and a busy child share one pinned core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from upclient.transfer.demand import cpu_demand
from upclient.transfer.download import RangeWidth

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "sched_setaffinity") and os.path.exists("/proc/self/task")),
    reason="needs Linux's CPU affinity and per-thread scheduler statistics",
)


@pytest.fixture
def shared_core():
    """This process pinned to one core, with a child spinning on the same core; both undone after."""
    before = os.sched_getaffinity(0)
    core = min(before)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, {core})
        os.sched_setaffinity(0, {core})
        yield
    finally:
        os.sched_setaffinity(0, before)
        hog.kill()
        hog.wait()


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_thread_that_waits_for_a_core_counts_as_busy(shared_core):
    wall0, demand0, cpu0 = time.monotonic(), cpu_demand(), time.process_time()
    spin(0.4)
    wall, demand, cpu = time.monotonic() - wall0, cpu_demand() - demand0, time.process_time() - cpu0
    assert demand >= 0.9 * wall, f"ran or waited {demand:.3f} s of {wall:.3f} s"
    # what the CPU time alone said: about half, which looked like a stream waiting on the link
    assert cpu < RangeWidth.BUSY * wall, f"cpu {cpu:.3f} s of {wall:.3f} s: the core was not shared"


def test_a_stream_on_a_loaded_machine_stays_one_stream(shared_core):
    width = RangeWidth(4, time.monotonic(), cpu_demand())
    spin(RangeWidth.WINDOW + 0.05)  # the stream's work, with a core it must share
    width.observe(time.monotonic(), 300_000_000, cpu_demand())
    assert (width.limit, width.settled) == (1, True)


def test_demand_grows_with_the_cpu_time_when_nothing_else_runs():
    demand0, cpu0 = cpu_demand(), time.process_time()
    spin(0.1)
    assert cpu_demand() - demand0 >= 0.9 * (time.process_time() - cpu0)
