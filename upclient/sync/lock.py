"""One run of a job at a time: an OS file lock beside the job's journal.

A cron job that runs longer than its period would otherwise start a second
run of the same sync, and both would upload the same files.  The second one
finds the lock held and stops at once (the command exits with
``EXIT_LOCKED``).  The lock is ``flock`` on a file that stays in place (0600,
holding the pid of its last holder, for a person to read); the kernel lets go
of it when the process ends, however it ends, so a killed run never leaves a
stale lock behind.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Optional, Union

__all__ = ["JobLock", "Locked"]


class Locked(Exception):
    """Another process holds the job's lock."""

    def __init__(self, path: Path, holder: Optional[str]) -> None:
        who = f" (pid {holder})" if holder else ""
        super().__init__(f"another run of this job holds its lock {path}{who}")
        self.path = path
        self.holder = holder


class JobLock:
    """An exclusive, non-blocking lock on ``path``: ``with JobLock(path):`` or :meth:`acquire`."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = Path(path)
        self._fd: Optional[int] = None

    def acquire(self) -> "JobLock":
        """Take the lock, or raise :class:`Locked` at once if another process has it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no advisory locks (Windows): no protection
            return self
        folder = self.path.parent
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = None
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or None
            os.close(fd)
            raise Locked(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor lets go of the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "JobLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
