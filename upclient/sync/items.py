"""What a sync works on: the files of a source, and the ones it cannot take."""

from __future__ import annotations

import dataclasses
from typing import Optional

__all__ = ["SourceFile", "Skipped"]


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One file to sync.

    ``key`` is its name below the source's root (POSIX separators, unicode as
    it is); the destination key is the sync's prefix followed by it.  ``ref``
    is what the journal remembers it by: the same relative path for a local
    tree, the file's id on a source backend.  ``path`` is the local file to
    read, None for a file on a backend.  ``mtime_ns`` and ``inode`` are 0 where
    the source has none.
    """

    key: str
    ref: str
    size: Optional[int]
    mtime_ns: int = 0
    inode: int = 0
    md5: Optional[str] = None
    path: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A source entry a sync leaves out: a symlink, a special file, a name that is not UTF-8...

    With an ``error`` (a folder that cannot be read, an id that cannot be
    found) it counts as a failure and the run's exit status says so; without
    one it is logged (``warn``: as a warning) and the run goes on.
    """

    where: str
    reason: str
    error: Optional[BaseException] = None
    warn: bool = True
