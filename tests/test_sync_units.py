"""The parts of ``upclient sync`` on their own: journal, walk, plan, lock and the copy's pipe.

Real files, real processes and real locks; no server (the end-to-end tests
are in the other ``test_sync_*`` modules).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import unicodedata

import pytest

from upclient.errors import Cancelled, NotFound
from upclient.journal import Journal, JournalEntry, job_name, journal_dir
from upclient.result import FileInfo
from upclient.sync import JobLock, Locked, Pipe, Skipped, SourceFile, normalise_prefix, plan_sync, walk_tree
from upclient.sync.listing import Holdings, default_key, read_id_list

from .test_sync_rig import REPO


def entry(path: str, dest: str, size: int = 10, mtime_ns: int = 1, inode: int = 2, id: str = "ID",
          md5=None) -> JournalEntry:
    return JournalEntry(path, dest, size, mtime_ns, inode, id, md5)


# -- journal ---------------------------------------------------------------------------


def test_journal_records_and_finds_entries_and_is_private(tmp_path):
    j = Journal.for_job(["sync", "dir", "/data", "upyun://svc", "bk/"], tmp_path / "store")
    assert j.path.parent == journal_dir(tmp_path / "store") == tmp_path / "store" / "journal"
    assert j.load() == {} and not j.exists()  # reading creates nothing
    e = j.record(entry("a/b.txt", "bk/a/b.txt", id="bk/a/b.txt", md5="abc"))
    assert e.finished > 0
    assert j.get("a/b.txt", "bk/a/b.txt") == e
    assert j.load() == {("a/b.txt", "bk/a/b.txt"): e} and len(j) == 1
    j.record(entry("a/b.txt", "bk/a/b.txt", size=11, id="second"))  # the same file again replaces it
    assert [x.id for x in j] == ["second"]
    j.forget("a/b.txt", "bk/a/b.txt")
    assert len(j) == 0
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(j.path.parent).st_mode) == 0o700
    j.remove()
    assert not j.exists() and list(j.path.parent.iterdir()) == []


def test_a_journal_that_is_not_a_database_is_moved_aside_and_the_job_starts_afresh(tmp_path, caplog):
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"this is not a database, but what a disk fault left" * 100)
    j = Journal(path)
    with caplog.at_level("WARNING", logger="upclient.journal"):
        assert j.load() == {}
    assert "cannot be read" in caplog.text
    j.record(entry("a", "a"))
    assert len(j) == 1
    [aside] = tmp_path.glob("j.sqlite3.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not a database")


def test_many_entries_are_committed_together_or_not_at_all(tmp_path):
    import sqlite3

    j = Journal(tmp_path / "j.sqlite3")
    j.record_many([entry("a", "a"), entry("b", "b")])
    assert sorted(e.path for e in j) == ["a", "b"] and all(e.finished > 0 for e in j)
    with pytest.raises(sqlite3.IntegrityError):
        j.record_many([entry("c", "c"), JournalEntry("d", "d", 1, 1, 1, None)])  # type: ignore[arg-type]
    assert sorted(e.path for e in j) == ["a", "b"]  # c was rolled back with d


def test_a_job_is_named_by_its_description():
    assert job_name(["sync", "a"]) == job_name(["sync", "a"])
    assert job_name(["sync", "a"]) != job_name(["sync", "b"])
    assert len(job_name(["put", "ü", None, {"x": 1}])) == 32


def test_a_unchanged_source_is_recognised_and_a_touched_one_is_not():
    e = entry("p", "k", size=10, mtime_ns=5, inode=7)
    assert e.same_source(10, 5, 7)
    assert not e.same_source(10, 6, 7) and not e.same_source(11, 5, 7) and not e.same_source(10, 5, 8)


WRITER = textwrap.dedent(
    """
    import sys
    from upclient.journal import Journal, JournalEntry
    j = Journal(sys.argv[1])
    i = 0
    while True:
        j.record(JournalEntry(f"file{i}", f"key{i}", i, i, i, f"id{i}"))
        print(i, flush=True)
        i += 1
    """
)


def test_a_journal_keeps_every_committed_entry_through_a_sigkill(tmp_path):
    path = tmp_path / "j.sqlite3"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                          env=env) as proc:
        assert proc.stdout is not None
        try:
            last = -1
            for line in proc.stdout:
                last = int(line)
                if last >= 300:
                    break
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
    entries = Journal(path).load()
    # every entry reported as committed is there, whole; the one in flight may or may not be
    assert all(("file%d" % i, "key%d" % i) in entries for i in range(last + 1))
    assert all(e.id == "id" + e.path[4:] for e in entries.values())


# -- walk --------------------------------------------------------------------------------


def files_of(found):
    return [f.key for f in found if isinstance(f, SourceFile)]


def test_walk_gives_relative_posix_keys_with_unicode_as_it_is(tmp_path):
    nfc = unicodedata.normalize("NFC", "café.txt")
    nfd = unicodedata.normalize("NFD", "café.txt")
    for rel in ["a.txt", "d/e/f.bin", "d/ü ñ.txt", nfc, nfd, "空/文件.txt"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())
    found = list(walk_tree(tmp_path))
    keys = files_of(found)
    assert sorted(keys) == sorted(["a.txt", "d/e/f.bin", "d/ü ñ.txt", nfc, nfd, "空/文件.txt"])
    f = next(x for x in found if isinstance(x, SourceFile) and x.key == "d/e/f.bin")
    st = os.stat(tmp_path / "d/e/f.bin")
    assert (f.ref, f.size, f.mtime_ns, f.inode, f.path) == ("d/e/f.bin", st.st_size, st.st_mtime_ns, st.st_ino,
                                                            str(tmp_path / "d/e/f.bin"))


def test_walk_leaves_out_symlinks_unless_asked_and_special_files_with_a_warning(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.txt").write_bytes(b"x")
    os.symlink(tmp_path / "real" / "x.txt", tmp_path / "link.txt")
    os.symlink(tmp_path / "real", tmp_path / "linkdir")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken")
    os.symlink(tmp_path, tmp_path / "real" / "loop")  # a cycle once followed
    os.mkfifo(tmp_path / "fifo")
    found = list(walk_tree(tmp_path))
    assert files_of(found) == ["real/x.txt"]
    skipped = {s.where: s for s in found if isinstance(s, Skipped)}
    assert skipped["fifo"].warn and "FIFO" in skipped["fifo"].reason and skipped["fifo"].error is None
    assert not skipped["link.txt"].warn and "symlink" in skipped["link.txt"].reason

    followed = list(walk_tree(tmp_path, follow_symlinks=True))
    assert sorted(files_of(followed)) == ["link.txt", "linkdir/x.txt", "real/x.txt"]
    reasons = {s.where: s.reason for s in followed if isinstance(s, Skipped)}
    assert "broken" in reasons["broken"]
    assert "cycle" in reasons["real/loop/"] and "cycle" in reasons["linkdir/loop/"]


def test_walk_leaves_out_a_name_that_is_not_utf8(tmp_path):
    bad = os.fsdecode(b"bad-\xff.txt")
    (tmp_path / bad).write_bytes(b"x")
    (tmp_path / "good.txt").write_bytes(b"y")
    found = list(walk_tree(tmp_path))
    assert files_of(found) == ["good.txt"]
    [skipped] = [s for s in found if isinstance(s, Skipped)]
    assert "UTF-8" in skipped.reason and skipped.error is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_a_folder_that_cannot_be_read_is_a_failure_and_the_walk_goes_on(tmp_path):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x").write_bytes(b"x")
    (tmp_path / "open.txt").write_bytes(b"y")
    os.chmod(tmp_path / "locked", 0)
    try:
        found = list(walk_tree(tmp_path))
    finally:
        os.chmod(tmp_path / "locked", 0o700)
    assert files_of(found) == ["open.txt"]
    [skipped] = [s for s in found if isinstance(s, Skipped)]
    assert isinstance(skipped.error, PermissionError)


# -- plan --------------------------------------------------------------------------------


def src(key: str, size: int = 10, mtime_ns: int = 1, inode: int = 2, md5=None) -> SourceFile:
    return SourceFile(key=key, ref=key, size=size, mtime_ns=mtime_ns, inode=inode, md5=md5, path="/x/" + key)


def listed(key: str, size: int = 10, md5=None) -> FileInfo:
    return FileInfo(id=key, backend="upyun", size=size, extra={"md5": md5} if md5 else {})


def test_plan_skips_what_the_journal_and_the_listing_agree_on():
    journal = {("a", "p/a"): entry("a", "p/a", id="p/a"), ("b", "p/b"): entry("b", "p/b", id="p/b"),
               ("c", "p/c"): entry("c", "p/c", id="p/c")}
    files = [src("a"), src("b"), src("c", mtime_ns=9), src("d"), src("e", size=4)]
    holdings = Holdings(by_key={"p/a": listed("p/a"), "p/c": listed("p/c"), "p/e": listed("p/e", size=4),
                                "p/old": listed("p/old")})
    plan = plan_sync(files, journal, holdings, prefix="p/")
    assert [(s.key, s.reason) for s in plan.skips] == [("p/a", "unchanged")]
    assert sorted((u.key, u.reason) for u in plan.uploads) == [
        ("p/b", "gone from the server"), ("p/c", "changed"), ("p/d", "new")]
    # same key, same size on the server but unknown to the journal: compared by MD5 first
    assert [(c.key, c.entry, c.remote.id) for c in plan.checks] == [("p/e", None, "p/e")]
    assert plan.deletes == []
    deleting = plan_sync(files, journal, holdings, prefix="p/", delete=True)
    assert [d.key for d in deleting.deletes] == ["p/old"]


def test_plan_without_a_listing_asks_per_file_and_trusts_the_journal_when_told():
    journal = {("a", "a"): entry("a", "a", id="http://x/1")}
    plan = plan_sync([src("a")], journal, Holdings())
    assert [(c.key, c.entry.id) for c in plan.checks] == [("a", "http://x/1")]
    trusting = plan_sync([src("a")], journal, Holdings(), check_server=False)
    assert [s.id for s in trusting.skips] == ["http://x/1"]


def test_plan_by_id_checks_size_and_md5_and_deletes_only_what_it_uploaded():
    journal = {("a", "a"): entry("a", "a", id="1", md5="aa"), ("b", "b"): entry("b", "b", id="2", md5="bb"),
               ("gone", "gone"): entry("gone", "gone", id="3")}
    holdings = Holdings(by_id={"1": FileInfo("1", "community", size=10, extra={"md5": "aa"}),
                               "2": FileInfo("2", "community", size=10, extra={"md5": "ff"}),
                               "3": FileInfo("3", "community", size=10), "9": FileInfo("9", "community", size=1)})
    plan = plan_sync([src("a"), src("b")], journal, holdings, delete=True)
    assert [s.key for s in plan.skips] == ["a"]
    assert [(u.key, u.reason) for u in plan.uploads] == [("b", "different on the server")]
    assert [(d.key, d.id) for d in plan.deletes] == [("gone", "3")]  # never "9": not this job's


def test_a_prefix_is_a_folder():
    assert normalise_prefix(None) == normalise_prefix("") == ""
    assert normalise_prefix("backup/2026") == normalise_prefix("/backup/2026/") == "backup/2026/"


def test_an_id_list_takes_ids_keys_and_comments(tmp_path):
    import io

    text = "# ids\ngroup1/M00/00/00/abc.jpg\n\nhttp://h/files/x%20y\nid3\tnamed/key.bin\n  \n"
    assert read_id_list(io.StringIO(text)) == [
        ("group1/M00/00/00/abc.jpg", "group1/M00/00/00/abc.jpg"), ("http://h/files/x%20y", "x y"),
        ("id3", "named/key.bin")]
    assert default_key("/a/b") == "a/b"


# -- lock --------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from upclient.sync import JobLock
    with JobLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_a_second_process_finds_the_job_locked_until_the_first_is_gone(tmp_path):
    path = tmp_path / "jobs" / "x.lock"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                          env=env) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with pytest.raises(Locked) as locked:
                JobLock(path).acquire()
            assert locked.value.holder == str(holder.pid) and str(path) in str(locked.value)
        finally:
            holder.kill()  # SIGKILL: the kernel lets go of the lock, no stale lock file matters
            holder.wait(10)
    with JobLock(path) as lock:
        assert lock.held
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not lock.held


# -- the copy's pipe ---------------------------------------------------------------------------


def test_a_pipe_holds_a_bounded_amount_and_hands_whole_blocks_on():
    pipe = Pipe(limit=10)
    block = b"x" * 8
    pipe.write(block)
    pipe.write(b"y" * 8)  # 8 held < 10: accepted; 16 now
    third = threading.Thread(target=pipe.write, args=(b"z" * 4,), daemon=True)
    third.start()
    third.join(0.2)
    assert third.is_alive()  # over the limit: the writer waits for the reader
    assert pipe.read(8) is block  # a block read whole is handed on, not copied
    third.join(5)
    assert not third.is_alive()
    assert pipe.read(3) == b"yyy" and pipe.read(100) == b"yyyyy" + b"zzzz"
    pipe.end(NotFound("the source lost it"))
    with pytest.raises(NotFound):
        pipe.read()


def test_a_pipe_ends_cleanly_and_an_abort_stops_the_writer():
    pipe = Pipe(limit=4)
    pipe.write(b"abcd")
    pipe.end()
    assert pipe.read() == b"abcd" and pipe.read() == b""
    stopped = Pipe(limit=4)
    stopped.write(b"abcd")
    errors = []

    def write() -> None:
        try:
            stopped.write(b"more")
        except Cancelled as exc:
            errors.append(exc)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    stopped.abort(Cancelled("the upload stopped"))
    t.join(5)
    assert len(errors) == 1
