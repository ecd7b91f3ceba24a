"""SIGKILL a sync of many small files at random moments, run it again: each file is held exactly once.

On backends where the *server* names an upload (tus: the Location of the
creating POST; FastDFS: the file id in the reply that stored it) a re-run
that does not know an upload's name makes a second copy.  Two windows did
that: an upload finished but not yet journaled (its resume point was
dropped at once), and a file of one part, which kept no resume point at all
and went to tus inside its creating POST, so its name came back only once
the server held all of it.  A journaled job now keeps a finished upload's
resume point until the journal holds it, and creates a small file's upload
(empty) before its bytes go, with the resume point saved in between.

Each test kills the same command several times, at random moments (a few
files reported, then a random pause), and then lets it run to its end.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from upclient.testing import ShapingProxy

from .test_sync_kill import complete_uploads, sha
from .test_sync_rig import KiB, by_key, cli_env, json_lines, make_tree, started, upclient

#: Rounds of kill, and how many files at most a round lets finish before its kill.
ROUNDS = 5


def small_tree(root: Path, n: int, seed: int) -> Dict[str, bytes]:
    """``n`` files of 1-40 KiB (random bytes: no two alike)."""
    pick = random.Random(seed)
    return make_tree(root, {f"d{i % 4}/f{i:03d}.bin": pick.randint(1 * KiB, 40 * KiB) for i in range(n)})


def file_lines(out: bytes) -> int:
    """How many whole file objects ``out`` holds (a kill may cut the last line short)."""
    n = 0
    for line in out.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            n += not json.loads(line).get("summary")
    return n


def kill_at_random(args: List[str], env: Dict[str, str], rng: random.Random, *, most_lines: int,
                   most_pause: float) -> Tuple[int, bool]:
    """Start ``upclient ARGS --json``; SIGKILL it after a random number of reported files (up to
    ``most_lines``) and a random pause.  How many file lines it printed, and whether the kill
    stopped it (it may have ended first)."""
    after_lines, pause = rng.randint(0, most_lines), rng.uniform(0, most_pause)
    seen = 0
    with started(*args, "--json", env=env) as proc:
        assert proc.stdout is not None
        while seen < after_lines:
            line = proc.stdout.readline()
            if not line:
                break
            seen += file_lines(line)
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return seen + file_lines(rest), proc.returncode == -signal.SIGKILL


def killed_then_finished(args: List[str], env: Dict[str, str], seed: int, *, most_lines: int,
                         most_pause: float) -> Dict[str, dict]:
    """``ROUNDS`` killed runs, then one to its end (checked to succeed); its file lines by key."""
    rng = random.Random(seed)
    for _ in range(ROUNDS):
        kill_at_random(args, env, rng, most_lines=most_lines, most_pause=most_pause)
    last = upclient(*args, "--json", env=env, timeout=300)
    assert last.returncode == 0, last.stderr.decode()
    return by_key(json_lines(last.stdout))


def assert_each_once(node_server, contents: Dict[str, bytes], files: Dict[str, dict]) -> None:
    """The run's ids hold the files byte-exact, and the server holds each file in one complete upload."""
    assert set(files) == set(contents)
    for key, line in files.items():
        assert node_server.stored_sha256(line["id"]) == sha(contents[key])
    held = complete_uploads(node_server)
    copies = {key: held[sha(data)] for key, data in contents.items()}
    assert {k: n for k, n in copies.items() if n != 1} == {}


@pytest.mark.parametrize("seed", [1, 2])
def test_tus_small_files_are_each_held_once_after_kills_and_a_rerun(node_server, tmp_path, seed):
    root = tmp_path / "tree"
    contents = small_tree(root, 60, seed)
    env = cli_env(tmp_path)
    args = ["sync", str(root), "tus+" + node_server.url, "--store", str(tmp_path / "store"),
            "--part-size", "256K", "--max-files", "8"]
    files = killed_then_finished(args, env, seed, most_lines=30, most_pause=0.3)
    assert_each_once(node_server, contents, files)


def unfinished_uploads(server, prefix: str) -> int:
    """Uploads of the tus server named ``prefix...`` that never got all their bytes."""
    n = 0
    for record in server.directory.glob("*.json"):
        info = json.loads(record.read_text())
        data_file = record.with_suffix("")
        if info.get("metadata", {}).get("filename", "").startswith(prefix):
            n += not (data_file.exists() and info.get("size") == data_file.stat().st_size)
    return n


def test_tus_small_files_killed_mid_file_are_each_held_once(node_server, tmp_path):
    """Through a slow link, so that most kills land while files are on their way: an upload cut
    short is finished by the next run, not left behind for a new one (at most the uploads whose
    creation was answered in the instant of a kill, before their resume point was saved)."""
    root = tmp_path / "tree"
    contents = small_tree(root, 40, 7)
    env = cli_env(tmp_path)
    prefix = f"slow-{os.getpid()}-{time.monotonic_ns()}/"
    with ShapingProxy(node_server.url, delay=0.002, rate=3e4) as slow:  # 0.1 to 1.3 s a file
        args = ["sync", str(root), "tus+" + slow.url_for(node_server.url), "--store", str(tmp_path / "store"),
                "--part-size", "256K", "--max-files", "8", "--prefix", prefix]
        files = killed_then_finished(args, env, 7, most_lines=8, most_pause=0.8)
    assert_each_once(node_server, contents, {key[len(prefix):]: line for key, line in files.items()})
    assert unfinished_uploads(node_server, prefix) <= ROUNDS


def test_tus_multi_file_put_killed_and_run_again_holds_each_file_once(node_server, tmp_path):
    """The same ``upclient put`` of many files, killed and run again until one run ends (a run that
    ends has done the command: its journal goes, and a later run is a new command)."""
    root = tmp_path / "tree"
    contents = small_tree(root, 40, 11)
    env = cli_env(tmp_path)
    paths = sorted(str(root / rel) for rel in contents)
    rng = random.Random(11)
    with ShapingProxy(node_server.url, delay=0.002, rate=1e5) as slow:
        args = ["put", *paths, "--to", "tus+" + slow.url_for(node_server.url), "--store", str(tmp_path / "store"),
                "--part-size", "256K", "--max-files", "8"]
        for _ in range(ROUNDS):
            if not kill_at_random(args, env, rng, most_lines=30, most_pause=0.5)[1]:
                break
        else:
            last = upclient(*args, "--json", env=env, timeout=300)
            assert last.returncode == 0, last.stderr.decode()
    held = complete_uploads(node_server)
    assert {rel: held[sha(data)] for rel, data in contents.items() if held[sha(data)] != 1} == {}


def fdfs_copies(server, contents: Dict[str, bytes]) -> Dict[str, int]:
    """How many stored files of the emulator hold each source's bytes."""
    stored = Counter(server.stored_sha256(fid) for fid in server.files())
    return {rel: stored[sha(data)] for rel, data in contents.items()}


def test_fdfs_sync_killed_at_random_holds_each_large_file_once(upclient_fdfs_server, tmp_path):
    """Files above the part size go up as appender files, named before their bytes go: each is held
    once.  Files of one part are named by the reply that stores them: one killed between the
    storage's write and that reply is held twice (the protocol has no way to find it again), so
    for them the test asks for no more copies than kills, and none missing."""
    server = upclient_fdfs_server
    root = tmp_path / "tree"
    pick = random.Random(5)
    sizes = {f"small/f{i:02d}.bin": pick.randint(1 * KiB, 40 * KiB) for i in range(30)}
    sizes |= {f"large/g{i}.bin": 300 * KiB + pick.randint(0, 400 * KiB) for i in range(6)}
    contents = make_tree(root, sizes)
    env = cli_env(tmp_path)
    args = ["sync", str(root), server.url, "--store", str(tmp_path / "store"), "--part-size", "256K",
            "--max-files", "4"]
    files = killed_then_finished(args, env, 5, most_lines=20, most_pause=0.3)
    assert set(files) == set(contents)
    for key, line in files.items():
        assert server.stored_sha256(line["id"]) == sha(contents[key])
    copies = fdfs_copies(server, contents)
    assert {rel: n for rel, n in copies.items() if rel.startswith("large/") and n != 1} == {}
    extra = sum(n - 1 for rel, n in copies.items() if rel.startswith("small/"))
    assert min(copies.values()) >= 1 and extra <= ROUNDS
