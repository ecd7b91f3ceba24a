"""Resume stores: atomic, private, tolerant of corruption, safe across processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from upclient.store import BaseStore, FileStore, MemoryStore, default_store_dir, resume_key


@pytest.fixture(params=["memory", "file"])
def any_store(request, tmp_path):
    return MemoryStore() if request.param == "memory" else FileStore(tmp_path / "resume")


def test_save_load_delete(any_store):
    assert any_store.load("k1") is None
    any_store.save("k1", {"state": {"url": "http://x/1"}, "identity": {"path": "/a"}})
    record = any_store.load("k1")
    assert record["state"] == {"url": "http://x/1"}
    assert list(any_store.keys()) == ["k1"]
    any_store.delete("k1")
    assert any_store.load("k1") is None
    any_store.delete("k1")  # deleting twice is fine


def test_expired_records_are_dropped(any_store):
    any_store.save("k1", {"expires": time.time() - 1})
    assert any_store.load("k1") is None
    assert list(any_store.keys()) == []


def test_secrets_are_refused(any_store):
    with pytest.raises(ValueError, match="secret"):
        any_store.save("k1", {"state": {"headers": {"Authorization": "Bearer x"}}})


def test_prune_forgets_old_records(any_store):
    any_store.save("old", {"x": 1})
    any_store.save("new", {"x": 2})
    raw = any_store.get("old")
    raw["updated"] = time.time() - 100
    any_store.set("old", raw)
    assert any_store.prune(older_than=50) == 1
    assert list(any_store.keys()) == ["new"]


def test_file_store_is_private_and_atomic(tmp_path):
    store = FileStore(tmp_path / "resume")
    store.save("k1", {"a": 1})
    assert stat.S_IMODE(os.stat(tmp_path / "resume").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "resume" / "k1.json").st_mode) == 0o600
    assert [p.name for p in (tmp_path / "resume").iterdir()] == ["k1.json"]  # no temp files left


def test_a_corrupt_record_is_ignored_with_a_warning(tmp_path, caplog):
    store = FileStore(tmp_path)
    (tmp_path / "k1.json").write_text("{not json")
    assert store.load("k1") is None
    assert "corrupt" in caplog.text
    store.save("k1", {"a": 1})
    assert store.load("k1")["a"] == 1


def test_default_directory_is_the_user_state_dir():
    import platformdirs

    assert str(default_store_dir()).startswith(platformdirs.user_state_dir("upclient", appauthor=False))


def test_keys_are_stable_and_separate_destinations():
    ident = {"path": "/a", "size": 1, "mtime_ns": 1, "inode": 1}
    assert resume_key("tus", "http://x/|", ident) == resume_key("tus", "http://x/|", dict(ident, size=2))
    assert resume_key("tus", "http://x/|", ident) != resume_key("tus", "http://y/|", ident)


def test_lock_is_exclusive_between_threads(any_store):
    with any_store.lock("k") as first:
        with any_store.lock("k") as second:
            assert (first, second) == (True, False)
    with any_store.lock("k") as again:
        assert again


def test_lock_files_do_not_pile_up(tmp_path):
    store = FileStore(tmp_path)
    for key in ("a", "b", "c"):
        with store.lock(key) as got:
            assert got
    assert list(tmp_path.iterdir()) == []


def test_lock_is_exclusive_between_processes(tmp_path):
    store = FileStore(tmp_path)
    code = (
        "import sys; from upclient.store import FileStore\n"
        "with FileStore(sys.argv[1]).lock('k') as got: print(got)\n"
    )
    with store.lock("k") as got:
        assert got
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                             check=True, timeout=30, env=dict(os.environ, PYTHONPATH=os.getcwd()))
        assert out.stdout.strip() == "False"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=30, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.stdout.strip() == "True"


def test_two_processes_writing_at_once_never_leave_a_torn_record(tmp_path):
    code = (
        "import sys; from upclient.store import FileStore\n"
        "s = FileStore(sys.argv[1])\n"
        "for i in range(300): s.save('k', {'writer': sys.argv[2], 'i': i, 'pad': 'x' * 5000})\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), w], env=env) for w in "ab"]
    store = FileStore(tmp_path)
    reads = 0
    while any(p.poll() is None for p in procs):
        raw = (tmp_path / "k.json").read_bytes() if (tmp_path / "k.json").exists() else None
        if raw:
            json.loads(raw)  # never half a record
            reads += 1
    assert all(p.wait(30) == 0 for p in procs)
    assert store.load("k")["i"] == 299


# -- the public interface a store implements ------------------------------------------


def test_a_record_written_before_the_public_interface_still_loads(tmp_path):
    """The on-disk format is unchanged: a resume point left by an older upclient resumes."""
    record = {"backend": "tus", "id": "http://127.0.0.1:1080/files/abc", "identity": {"path": "/a", "size": 3},
              "expires": None, "state": {"mode": "serial", "url": "http://127.0.0.1:1080/files/abc"},
              "updated": time.time()}
    (tmp_path / "k1.json").write_text(json.dumps(record, separators=(",", ":")))
    store = FileStore(tmp_path)
    assert store.load("k1") == record
    store.save("k2", {"a": 1})
    assert json.loads((tmp_path / "k2.json").read_text())["a"] == 1  # still one plain JSON object a file


def test_get_hands_out_a_copy(any_store):
    any_store.set("k", {"state": {"n": 1}})
    any_store.get("k")["state"]["n"] = 2
    assert any_store.get("k") == {"state": {"n": 1}}


def test_memory_store_forgets_a_record_after_its_ttl():
    store = MemoryStore()
    store.set("gone", {"a": 1}, ttl=0)
    store.set("kept", {"a": 2}, ttl=3600)
    assert store.get("gone") is None and store.get("kept") == {"a": 2}
    assert list(store.keys()) == ["kept"]


def test_save_gives_the_store_a_ttl_up_to_the_servers_expiry():
    seen = {}

    class Recording(MemoryStore):
        def set(self, key, record, ttl=None):
            seen[key] = ttl
            super().set(key, record, ttl)

    store = Recording()
    store.save("no-expiry", {"a": 1})
    store.save("expiring", {"expires": time.time() + 600})
    store.save("explicit", {"expires": time.time() + 600}, ttl=5)
    assert seen["no-expiry"] is None
    assert 0 < seen["expiring"] <= 600
    assert seen["explicit"] == 5


def test_a_store_must_implement_the_primitives():
    class Half(BaseStore):
        def get(self, key):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Half()


def test_a_minimal_store_gets_a_thread_lock_and_everything_built_on_the_primitives():
    class DictStore(BaseStore):
        def __init__(self):  # no super().__init__(): the base class needs none
            self.records = {}

        def get(self, key):
            record = self.records.get(key)
            return None if record is None else dict(record)

        def set(self, key, record, ttl=None):
            self.records[key] = dict(record)

        def delete(self, key):
            self.records.pop(key, None)

        def keys(self):
            return iter(list(self.records))

    store = DictStore()
    store.save("k", {"a": 1, "expires": time.time() + 60})
    assert store.load("k")["a"] == 1 and "updated" in store.load("k")
    with pytest.raises(ValueError, match="secret"):
        store.save("k", {"token": "x"})
    with store.lock("k") as first, store.lock("k") as second:
        assert (first, second) == (True, False)
    with store.lock("k") as again:
        assert again
    store.save("old", {"expires": time.time() - 1})
    assert store.load("old") is None and "old" not in store.records
