"""How one client process is measured: wall time, peak RSS and CPU seconds of that process alone."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence


@dataclasses.dataclass
class Proc:
    returncode: int
    elapsed: float
    maxrss_kib: int
    cpu: float  # user + system seconds


def _gnu_time() -> Optional[str]:
    """``/usr/bin/time`` if it is GNU time (it reports the child's own peak RSS)."""
    path = shutil.which("time", path="/usr/bin:/bin:/usr/local/bin")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in (out.stdout + out.stderr) else None


GNU_TIME = _gnu_time()


def spawn(cmd: Sequence[str], *, timeout: float, stdout: Any = subprocess.DEVNULL,
          stderr: Any = None, env: Optional[Dict[str, str]] = None, scratch: Path) -> Proc:
    """Run ``cmd`` to its end: wall time, peak RSS and CPU time of that process alone.

    The peak RSS comes from GNU time (``%M``, the child's ``ru_maxrss``).  Not
    from our own ``wait4``: a child's ``ru_maxrss`` starts from the RSS of the
    process that forked it, and this harness is bigger than curl.  Without
    GNU time, ``wait4`` is used and the figures are floored at our own RSS
    (said in the report).  The child runs in its own process group, killed
    whole on timeout or Ctrl-C.
    """
    stats = scratch / "time.txt"
    argv = list(cmd)
    if GNU_TIME:
        with contextlib.suppress(FileNotFoundError):
            stats.unlink()
        argv = [GNU_TIME, "-q", "-f", "%M %U %S", "-o", str(stats), *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    timer = threading.Timer(timeout, kill_group, (proc,))
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C: the child must not outlive us
        kill_group(proc)
        with contextlib.suppress(Exception):
            proc.wait(5)
        raise
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    if GNU_TIME:
        try:
            fields = stats.read_text().split()[-3:]
            maxrss, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
        except (OSError, ValueError, IndexError):
            maxrss, cpu = 0, cpu
    return Proc(proc.returncode, elapsed, maxrss, cpu)


def kill_group(proc: "subprocess.Popen[Any]") -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


_curl_label: List[str] = []




def curl_version() -> str:
    if not _curl_label:
        try:
            out = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=10).stdout
            _curl_label.append(" ".join(out.split()[:2]))
        except (OSError, subprocess.SubprocessError):
            _curl_label.append("curl")
    return _curl_label[0]
