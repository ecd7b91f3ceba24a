"""The journal of finished uploads: what a re-run of the same job does not send again.

A resume point (:mod:`upclient.store`) covers one upload while it runs and is
forgotten once it is finished.  A journal covers a whole job (one ``upclient
sync``, one multi-file ``upclient put``): one row per finished file, keyed by
the source path and the destination, holding what identified the source then
(size, ``mtime_ns``, inode) and what the server made of it (id, size, MD5 where
known).  A re-run compares a file's ``stat`` with its row and skips it without
opening it when they match.

Each job has one SQLite file (the standard library's ``sqlite3``), in the
``journal`` folder of the client's store directory by default: every row is
written in a transaction of its own, so a kill at any moment leaves the rows
of the files finished before it, and loading 10,000 rows takes milliseconds.
Files are private (0600 in a 0700 folder) and hold no credentials: a job is
named by a digest of its description, in which URLs appear without user or
password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

from .store import default_store_dir

__all__ = ["Journal", "JournalEntry", "journal_dir", "job_name"]

log = logging.getLogger("upclient.journal")

PathLike = Union[str, "os.PathLike[str]"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    path TEXT NOT NULL,
    destination TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    id TEXT NOT NULL,
    md5 TEXT,
    finished REAL NOT NULL,
    PRIMARY KEY (path, destination)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "path, destination, size, mtime_ns, inode, id, md5, finished"


def journal_dir(store_dir: Optional[PathLike] = None) -> Path:
    """Where journals live: ``<store dir>/journal`` (the user state directory's by default)."""
    return Path(store_dir if store_dir is not None else default_store_dir()) / "journal"


def job_name(description: Sequence[Any]) -> str:
    """The file name (without suffix) of the journal of the job ``description`` names."""
    raw = json.dumps(list(description), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class JournalEntry:
    """One finished upload: its source as it was, and what the server made of it.

    ``path`` is the source (a path, or an id on a source backend) and
    ``destination`` the key it was uploaded to.  ``mtime_ns`` and ``inode`` are
    0 where the source has none (a remote file).
    """

    path: str
    destination: str
    size: Optional[int]
    mtime_ns: int
    inode: int
    id: str
    md5: Optional[str] = None
    finished: float = 0.0

    def same_source(self, size: Optional[int], mtime_ns: int, inode: int) -> bool:
        """Whether a source with this size, mtime and inode is the one this entry finished."""
        return (self.size, self.mtime_ns, self.inode) == (size, mtime_ns, inode)


class Journal:
    """The finished uploads of one job, in one SQLite file (see the module docstring).

    Safe to share between threads: ``put_many`` reports files from its
    workers.  Every :meth:`record` is committed before it returns.
    """

    def __init__(self, path: PathLike, *, description: Optional[Sequence[Any]] = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: Optional[sqlite3.Connection] = None
        self._description = list(description) if description is not None else None

    @classmethod
    def for_job(cls, description: Sequence[Any], store_dir: Optional[PathLike] = None) -> "Journal":
        """The journal of the job ``description`` names (a list of plain values, no secrets)."""
        return cls(journal_dir(store_dir) / f"{job_name(description)}.sqlite3", description=description)

    @property
    def lock_path(self) -> Path:
        """The lock file of the job, beside its journal."""
        return self.path.with_suffix(".lock")

    # -- the database ---------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            folder = self.path.parent
            if not folder.is_dir():
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(folder, 0o700)
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as exc:  # not a database (a disk fault, a stray file): start afresh
                aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
                log.warning("journal %s cannot be read (%s); moved aside to %s, starting afresh", self.path, exc,
                            aside.name)
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.path}{suffix}")
                self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        if not self.path.exists():  # private from the first byte
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        try:
            # WAL: a commit is one append, and a kill loses nothing committed; NORMAL: no
            # fsync a commit, and a power cut may lose the last ones but never corrupts the file.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            if self._description is not None:
                db.execute("INSERT OR IGNORE INTO job VALUES ('description', ?)",
                           (json.dumps(self._description, ensure_ascii=False, default=str),))
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Close the file (a later call opens it again)."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reading --------------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> Dict[Tuple[str, str], JournalEntry]:
        """Every entry, by ``(path, destination)``; empty when the job never finished a file."""
        if self._db is None and not self.path.exists():
            return {}
        with self._lock:
            rows = self._connection().execute(f"SELECT {_COLUMNS} FROM entries").fetchall()
        return {(r[0], r[1]): JournalEntry(*r) for r in rows}

    def get(self, path: str, destination: str) -> Optional[JournalEntry]:
        if self._db is None and not self.path.exists():
            return None
        with self._lock:
            row = self._connection().execute(
                f"SELECT {_COLUMNS} FROM entries WHERE path = ? AND destination = ?", (path, destination)
            ).fetchone()
        return JournalEntry(*row) if row else None

    def __len__(self) -> int:
        if self._db is None and not self.path.exists():
            return 0
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    # -- writing --------------------------------------------------------------------

    def record(self, entry: JournalEntry) -> JournalEntry:
        """Write ``entry`` (replacing one of the same path and destination); committed on return."""
        e = entry
        row = (e.path, e.destination, e.size, e.mtime_ns, e.inode, e.id, e.md5, e.finished or time.time())
        with self._lock:
            self._connection().execute(
                f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        return entry if entry.finished else JournalEntry(*row)

    def record_many(self, entries: Sequence[JournalEntry]) -> None:
        """Write ``entries`` in one transaction: all of them are committed on return, or none."""
        now = time.time()
        rows = [(e.path, e.destination, e.size, e.mtime_ns, e.inode, e.id, e.md5, e.finished or now) for e in entries]
        if not rows:
            return
        sql = f"INSERT OR REPLACE INTO entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        with self._lock:
            db = self._connection()
            if len(rows) == 1:  # a statement of its own is a transaction of its own
                db.execute(sql, rows[0])
                return
            db.execute("BEGIN")
            try:
                db.executemany(sql, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def forget(self, path: str, destination: str) -> None:
        """Drop the entry of ``path`` to ``destination`` (nothing if there is none)."""
        if self._db is None and not self.path.exists():
            return
        with self._lock:
            self._connection().execute("DELETE FROM entries WHERE path = ? AND destination = ?",
                                       (path, destination))

    def remove(self) -> None:
        """Delete the journal: the job is over and nothing of it needs remembering."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(list(self.load().values()))

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"
