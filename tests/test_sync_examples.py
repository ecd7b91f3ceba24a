"""The cron examples run as documented (issue 12, item 7): ``examples/nightly_backup.sh`` and the FastDFS migration.

The backup script runs under ``sh`` with an ``upclient`` on its PATH (the
command with ``sync``, see :mod:`tests.test_sync_rig`), against the UPYUN
emulator; what it stored is checked on the server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_sync_rig import REPO, UPCLIENT, KiB, MiB, cli_env, make_tree

EXAMPLES = REPO / "examples"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def on_path(tmp_path: Path) -> str:
    """A folder holding an ``upclient`` command, for PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "upclient"
    script.write_text(f"#!/bin/sh\nexec {' '.join(UPCLIENT)} \"$@\"\n")
    script.chmod(0o755)
    return str(folder)


def backup(folder: Path, server, env_dir: Path, on_path: str, **extra: str) -> subprocess.CompletedProcess:
    env = cli_env(env_dir, PATH=on_path + os.pathsep + os.environ["PATH"], BACKUP_URL=server.url,
                  UPYUN_PASSWORD=server.password, UPYUN_ENDPOINT=server.endpoint, BACKUP_PREFIX="host1/", **extra)
    return subprocess.run(["sh", str(EXAMPLES / "nightly_backup.sh"), str(folder)], capture_output=True, env=env,
                          timeout=120)


def test_the_nightly_backup_sends_the_tree_then_only_what_changed(upclient_upyun_server, tmp_path, on_path):
    server = upclient_upyun_server
    root = tmp_path / "data"
    contents = make_tree(root, {"db/dump.sql": 2 * MiB + 5, "etc/app.conf": 300, "logs/ü.log": 40 * KiB})
    first = backup(root, server, tmp_path, on_path)
    assert first.returncode == 0, first.stderr.decode()
    assert f"backup of {root} done" in first.stdout.decode()
    for rel, data in contents.items():
        assert server.stored_sha256(f"host1/{rel}") == sha(data)
    assert list((tmp_path / "state" / "upclient" / "resume" / "journal").glob("*.sqlite3"))  # where the README says

    # A new file whose upload fails once: the script runs again, and that run sends only it.
    (root / "etc" / "new.conf").write_bytes(b"new")
    server.fail("*", 503, times=1, key="host1/etc/new.conf")
    server.reset_counters()
    second = backup(root, server, tmp_path, on_path, BACKUP_EXTRA="--retries 0 -v", BACKUP_PAUSE="0")
    assert second.returncode == 0, second.stderr.decode()
    assert "run 1: some files failed (exit 5); again in 0 s" in second.stderr.decode()
    assert second.stdout.decode().count("uploaded host1/etc/new.conf") == 1
    assert second.stdout.decode().count("skipped host1/db/dump.sql") == 2  # both runs: not sent again
    assert server.stored_sha256("host1/etc/new.conf") == sha(b"new")


def test_the_nightly_backup_gives_up_at_once_where_no_retry_helps(upclient_upyun_server, tmp_path, on_path):
    server = upclient_upyun_server
    missing = backup(tmp_path / "not-mounted", server, tmp_path, on_path, BACKUP_PAUSE="30")
    assert missing.returncode == 4  # not found: the folder; no pause, no second run
    assert "failed (exit 4); not retrying" in missing.stderr.decode()
    (tmp_path / "d").mkdir()
    env_dir = tmp_path / "wrong"
    wrong = subprocess.run(["sh", str(EXAMPLES / "nightly_backup.sh"), str(tmp_path / "d")], capture_output=True,
                           timeout=120, env=cli_env(env_dir, PATH=on_path + os.pathsep + os.environ["PATH"],
                                                    BACKUP_URL=server.url, UPYUN_PASSWORD="not-the-password",
                                                    UPYUN_ENDPOINT=server.endpoint, BACKUP_PAUSE="30"))
    assert wrong.returncode == 3, wrong.stderr.decode()  # credentials refused
    assert b"not-the-password" not in wrong.stdout + wrong.stderr


def test_the_migration_example_runs_on_its_own_emulators_and_copies_nothing_the_second_time(tmp_path):
    env = cli_env(tmp_path)
    done = subprocess.run([sys.executable, str(EXAMPLES / "migrate_fdfs_to_upyun.py")], capture_output=True,
                          env=env, timeout=120, cwd=str(REPO))
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode().splitlines()
    assert sum(line.startswith("copied  group1/") for line in out) == 3
    assert "3 copied, 0 already there, 0 failed" in out and out[-1] == "0 copied, 3 already there, 0 failed"


def test_the_migration_example_moves_a_clusters_files(upclient_fdfs_server, upclient_upyun_server, tmp_path):
    fdfs, upyun = upclient_fdfs_server, upclient_upyun_server
    with fdfs.client() as client:
        ids = [client.put(os.urandom(n), key="a.png").id for n in (10, 5 * MiB)]
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join(ids) + "\n")
    env = cli_env(tmp_path, FDFS_URL=fdfs.url, UPYUN_SERVICE=upyun.service, UPYUN_OPERATOR=upyun.operator,
                  UPYUN_PASSWORD=upyun.password, UPYUN_ENDPOINT=upyun.endpoint)
    done = subprocess.run([sys.executable, str(EXAMPLES / "migrate_fdfs_to_upyun.py"), str(listing)],
                          capture_output=True, env=env, timeout=120, cwd=str(REPO))
    assert done.returncode == 0, done.stderr.decode()
    for file_id in ids:
        assert upyun.stored_sha256(f"fdfs/{file_id}") == fdfs.stored_sha256(file_id)
