"""A store a user writes against BaseStore's public methods carries a resume end to end.

``SqliteStore`` below is what a user would write: records and locks in one
SQLite file, nothing but ``get``, ``set``, ``delete``, ``keys`` and ``lock``
implemented, no private method of upclient touched.  An upload to each
emulator is interrupted, and a new client with a new store on the same file
(as a re-run of a killed process would have) resumes it: only the rest is
sent, and the server holds the source's bytes.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import pytest

import upclient
from upclient import errors

from .conftest import MiB
from .contract import HookedFileSource, resume_points


class SqliteStore(upclient.BaseStore):
    """Resume points and digests in one SQLite file; a lock is a row that expires."""

    def __init__(self, path: Path, lock_ttl: float = 3600.0) -> None:
        self.path = str(path)
        self.lock_ttl = lock_ttl
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, body TEXT NOT NULL, until REAL)")
            db.execute("CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, until REAL NOT NULL)")

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: a Client calls its store from several threads.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # each statement commits
        try:
            yield db
        finally:
            db.close()

    def get(self, key: str) -> Optional[Dict[str, Any]]:
        with self._db() as db:
            row = db.execute("SELECT body FROM records WHERE key = ? AND (until IS NULL OR until > ?)",
                             (key, time.time())).fetchone()
        return json.loads(row[0]) if row else None

    def set(self, key: str, record: Dict[str, Any], ttl: Optional[float] = None) -> None:
        until = None if ttl is None else time.time() + ttl
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (key, json.dumps(record), until))

    def delete(self, key: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM records WHERE key = ?", (key,))

    def keys(self) -> Iterator[str]:
        with self._db() as db:
            rows = db.execute("SELECT key FROM records WHERE until IS NULL OR until > ?", (time.time(),)).fetchall()
        return iter([key for (key,) in rows])

    @contextlib.contextmanager
    def lock(self, key: str, ttl: Optional[float] = None) -> Iterator[bool]:
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM locks WHERE key = ? AND until <= ?", (key, now))  # a dead holder's
            got = db.execute("INSERT OR IGNORE INTO locks VALUES (?, ?)",
                             (key, now + (ttl if ttl is not None else self.lock_ttl))).rowcount == 1
        try:
            yield got
        finally:
            if got:
                with self._db() as db:
                    db.execute("DELETE FROM locks WHERE key = ?", (key,))


BACKENDS = ["tus", "community", "upyun", "fdfs"]


@pytest.fixture(params=BACKENDS)
def emulator(request: pytest.FixtureRequest) -> Any:
    """A running server of each backend (the plugin's fixtures: stopped after the test)."""
    return request.getfixturevalue(f"upclient_{request.param}_server")


def test_a_user_written_store_resumes_an_interrupted_upload(emulator, make_file, tmp_path):
    size = 6 * MiB + 5
    path, digest = make_file(size, "big.bin")
    db = tmp_path / "resume.sqlite3"
    cancel = threading.Event()
    locks_held = []

    def hook(offset: int) -> None:
        with sqlite3.connect(str(db)) as check:  # the upload holds its claim while it reads
            locks_held.append(check.execute("SELECT COUNT(*) FROM locks").fetchone()[0])
        if offset >= 3 * MiB:
            cancel.set()

    with emulator.client(store=SqliteStore(db), part_size=1 * MiB, concurrency=1) as client:
        with HookedFileSource(path, hook) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, cancel=cancel)
    assert len(resume_points(SqliteStore(db))) == 1, "the interrupted upload left no resume point"
    assert locks_held and set(locks_held) == {1}, locks_held

    store = SqliteStore(db)  # a new process would open the same file
    with emulator.client(store=store, part_size=1 * MiB, concurrency=1) as client:
        result = client.put(path)
    assert result.resumed
    assert result.sent_bytes <= size - 2 * MiB
    assert emulator.stored_sha256(result.id) == digest
    assert resume_points(store) == [], "the finished upload left its resume point"
    with sqlite3.connect(str(db)) as check:
        assert check.execute("SELECT COUNT(*) FROM locks").fetchone() == (0,)

