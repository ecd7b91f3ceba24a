"""A sync killed with SIGKILL in the middle, then run again: the server holds each file exactly once, byte-exact.

The first run goes through a slow link (a shaping proxy), so it is still
sending when it is killed; the second run is the same command.  Files the
first run reported finished are not sent again (the journal), the one it was
sending resumes (its resume point), the rest are sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from collections import Counter
from typing import Dict, List

from upclient.testing import FaultProxy, ShapingProxy

from .test_sync_rig import KiB, MiB, by_key, cli_env, json_lines, make_tree, started, upclient


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Walked in this order: the small files first, so that once a few are reported most of the bytes are still to go.
TREE = {**{f"a/{i:02d}.bin": 40 * KiB + i for i in range(10)},
        "b/mid.bin": 700 * KiB, "c/one.bin": 3 * MiB + 7, "c/two.bin": 2 * MiB}


def run_and_kill(args: List[str], env: Dict[str, str], *, after_lines: int = 0,
                 after_seconds: float = 0.0) -> List[dict]:
    """Start ``upclient ARGS --json``; SIGKILL it once it reported ``after_lines`` files and
    ``after_seconds`` passed; the file objects it printed."""
    with started(*args, "--json", env=env) as proc:
        assert proc.stdout is not None
        lines: List[dict] = []
        while len(lines) < after_lines:
            line = proc.stdout.readline()
            assert line, f"the run ended before it could be killed: {proc.communicate()[1].decode()}"
            lines.extend(json_lines(line))
        time.sleep(after_seconds)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"
    return [x for x in lines + json_lines(rest) if not x.get("summary")]


def test_upyun_holds_each_file_once_after_a_kill_and_a_rerun(upclient_upyun_server, tmp_path):
    server = upclient_upyun_server
    root = tmp_path / "tree"
    contents = make_tree(root, TREE)
    env = cli_env(tmp_path)
    with ShapingProxy(server.address, delay=0.001, rate=5e5) as slow:
        args = ["sync", str(root), server.url, "--password", server.password, "--endpoint",
                f"127.0.0.1:{slow.port}", "--store", str(tmp_path / "store"), "--part-size", "1M",
                "--prefix", "nightly", "--max-files", "2"]
        first = run_and_kill(args, env, after_lines=3, after_seconds=random.uniform(0, 0.5))
        done_first = {x["key"] for x in first if x["action"] == "uploaded"}
        assert 3 <= len(done_first) < len(TREE)
        second = upclient(*args, "--json", env=env)
    assert second.returncode == 0, second.stderr.decode()
    files = by_key(json_lines(second.stdout))
    assert {v["action"] for v in files.values()} == {"uploaded", "skipped"}
    assert {k for k, v in files.items() if v["action"] == "skipped"} >= done_first  # not sent again
    with server.client() as client:
        from upclient.sync.listing import remote_files

        held = {info.id: server.stored_sha256(info.id) for info in remote_files(client, "")}
    assert held == {f"nightly/{rel}": sha(data) for rel, data in contents.items()}  # each once, nothing else


def complete_uploads(server) -> Counter:
    """sha256 -> how many complete uploads of the tus server hold those bytes."""
    found: Counter = Counter()
    for record in server.directory.glob("*.json"):
        data_file = record.with_suffix("")
        info = json.loads(record.read_text())
        if data_file.exists() and info.get("size") == data_file.stat().st_size:
            found[sha(data_file.read_bytes())] += 1
    return found


def test_tus_creates_each_upload_once_across_a_kill_and_a_rerun(node_server, tmp_path):
    """Each upload is a new resource on tus: a file sent twice would be two complete uploads.

    One file at a time, each taking a good part of a second on the link, so
    the kill lands while a file is on its way.  A sync's puts are journaled:
    every file has a resume point from its creation on (a file of one part
    too: its upload is created empty, then filled), so the bytes a killed
    client had handed to its socket still reach the server and the next run
    finds that upload (whole, or to be finished) instead of making another;
    and a finished upload's point is kept until the journal holds the file,
    so a kill in between does not send it again either.  Kills at random
    moments, with many small files in flight, are in test_exactly_once.py.
    """
    root = tmp_path / "tree"
    contents = make_tree(root, {f"f{i}.bin": 300 * KiB + i * 50 * KiB for i in range(6)} | {"big.bin": 2 * MiB})
    env = cli_env(tmp_path)
    with ShapingProxy(node_server.url, delay=0.001, rate=1e6) as slow, FaultProxy(slow.url) as proxy:
        url = "tus+" + proxy.url_for(node_server.url)
        args = ["sync", str(root), url, "--store", str(tmp_path / "store"), "--part-size", "256K", "--max-files", "1"]
        first = run_and_kill(args, env, after_lines=2)
        done_first = {x["key"]: x["id"] for x in first if x["action"] == "uploaded"}
        second = upclient(*args, "--json", env=env)
    assert second.returncode == 0, second.stderr.decode()
    files = by_key(json_lines(second.stdout))
    for key, upload_id in done_first.items():
        assert files[key]["action"] == "skipped" and files[key]["id"] == upload_id
    for key, line in files.items():
        assert node_server.stored_sha256(line["id"]) == sha(contents[key])
    held = complete_uploads(node_server)
    assert {digest: held[digest] for digest in map(sha, contents.values())} == {
        digest: 1 for digest in map(sha, contents.values())}


def test_a_copy_from_fastdfs_killed_midway_continues_where_it_stopped(upclient_fdfs_server, upclient_upyun_server,
                                                                      tmp_path):
    fdfs, upyun = upclient_fdfs_server, upclient_upyun_server
    with fdfs.client() as client:
        ids = {client.put(os.urandom(n), key="x.bin").id: n for n in (5 * KiB, 60 * KiB, 4 * MiB, 90 * KiB)}
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join(ids) + "\n")
    env = cli_env(tmp_path)
    with ShapingProxy(upyun.address, delay=0.001, rate=2e6) as slow:
        args = ["sync", "--from-list", str(listing), fdfs.url, upyun.url, "--password", upyun.password,
                "--endpoint", f"127.0.0.1:{slow.port}", "--store", str(tmp_path / "store"), "--part-size", "1M",
                "--max-files", "1", "--concurrency", "1"]  # the 4 MiB copy takes 2 s
        first = run_and_kill(args, env, after_lines=2, after_seconds=0.5)
        done_first = {x["key"] for x in first if x["action"] == "uploaded"}
        fdfs.reset_counts()
        second = upclient(*args, "--json", env=env)
    assert second.returncode == 0, second.stderr.decode()
    files = by_key(json_lines(second.stdout))
    assert {k for k, v in files.items() if v["action"] == "skipped"} == done_first
    for file_id in ids:
        assert upyun.stored_sha256(file_id) == fdfs.stored_sha256(file_id)
    assert fdfs.counts[14] == len(ids) - len(done_first)  # a download for each file left, no more
