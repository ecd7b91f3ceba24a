"""What the tests of ``upclient sync`` and the multi-file ``put`` share: running the command as a user does.

Every command runs as a child process, the way a cron job runs it, with its
state (resume points, journals, locks) under the test's temporary directory.
No tests here: the other ``test_sync*`` and ``test_put*`` modules import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent

#: The ``upclient`` command, as ``python -m upclient`` runs it.
UPCLIENT = [sys.executable, "-m", "upclient"]

KiB = 1024
MiB = 1024 * KiB


def cli_env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    """The environment of a command: this checkout, a private state dir, no server URL or password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPCLIENT_", "UPYUN_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def upclient(*args: str, env: Dict[str, str], input: Optional[bytes] = None, timeout: float = 120,
             cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run ``upclient ARGS`` to its end: (status, stdout, stderr)."""
    return subprocess.run([*UPCLIENT, *args], input=input, capture_output=True, env=env,
                          cwd=str(cwd or REPO), timeout=timeout)


@contextlib.contextmanager
def started(*args: str, env: Dict[str, str]) -> Iterator["subprocess.Popen[bytes]"]:
    """``upclient ARGS`` running in the background; killed at the end if it still runs, whatever happened."""
    proc = subprocess.Popen(
        [*UPCLIENT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO),
        # SIGINT at its default, so the child's Python turns it into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=10)


def json_lines(stdout: bytes) -> List[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def by_key(lines: Sequence[dict]) -> Dict[str, dict]:
    """The file objects of a ``sync --json`` run, by key (the summary left out)."""
    return {line["key"]: line for line in lines if not line.get("summary")}


def summary(lines: Sequence[dict]) -> dict:
    [last] = [line for line in lines if line.get("summary")]
    return last


def make_tree(root: Path, files: Dict[str, int]) -> Dict[str, bytes]:
    """Files of random bytes under ``root`` (relative path -> size); returns relative path -> content."""
    contents = {}
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        contents[rel] = data
    return contents
