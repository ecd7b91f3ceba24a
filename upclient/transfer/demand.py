"""How much CPU this process wanted: the time its threads ran plus the time they were ready and waited for a core.

A process's CPU time alone (``time.process_time``) takes a loaded machine
for a slow link: a thread that is ready to run but waits for a core looks
like one waiting on the network, and a download that already takes all the
machine can give would then split into ranges that only contend.  Linux
counts both, per thread, in ``/proc/self/task/*/schedstat`` (nanoseconds on
a CPU, nanoseconds waiting on a run queue); elsewhere the CPU time stands
for both.  A thread that ends between two readings takes its count with it,
so a difference of two readings can only understate the demand.
"""

from __future__ import annotations

import os
import time

__all__ = ["cpu_demand"]

_TASKS = "/proc/self/task"


def cpu_demand() -> float:
    """Seconds this process's threads have run or waited to run (only differences mean anything)."""
    try:
        tids = os.listdir(_TASKS)
    except OSError:
        return time.process_time()
    total = 0
    for tid in tids:
        try:
            with open(f"{_TASKS}/{tid}/schedstat", "rb") as f:
                ran, waited = f.read().split()[:2]
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile, or no schedstat in this kernel
        total += int(ran) + int(waited)
    return total / 1e9 if total else time.process_time()
