"""A multi-file ``upclient put`` run again never uploads a finished file a second time (issue 12, item 3).

Against the reference tus server (``@tus/server``), where every upload is a
new one with an id of its own: a second copy of a file would be a second
creation request (POST), which a recording proxy in front of the server
counts.  The files finished are kept in a journal until the whole command
has finished; one missing file is reported and the others go on.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest

from upclient.testing import FaultProxy, ShapingProxy

from .test_sync_rig import KiB, MiB, cli_env, json_lines, started, upclient


def journals(store: Path):
    return sorted((store / "journal").glob("*.sqlite3")) if (store / "journal").is_dir() else []


@pytest.fixture
def tus(node_server):
    """The reference tus server through a proxy that records every request."""
    with FaultProxy(node_server.url) as proxy:
        yield node_server, proxy, "tus+" + proxy.url_for(node_server.url)


def test_a_missing_file_is_reported_and_the_others_go_on(tus, make_file, tmp_path):
    server, proxy, url = tus
    a, a_digest = make_file(1000, "a.bin")
    b, b_digest = make_file(70 * KiB, "b.bin")
    missing = tmp_path / "late.bin"
    env = cli_env(tmp_path)
    cmd = ["put", str(a), str(missing), str(b), "--to", url, "--json", "--store", str(tmp_path / "s")]

    first = upclient(*cmd, env=env)
    assert first.returncode == 4, first.stderr.decode()  # not found: the file named does not exist
    assert f"{missing}: no such file".encode() in first.stderr
    lines = {line["file"]: line for line in json_lines(first.stdout)}
    assert lines[str(missing)]["ok"] is False and lines[str(missing)]["error"]["type"] == "FileNotFoundError"
    assert server.stored_sha256(lines[str(a)]["id"]) == a_digest
    assert server.stored_sha256(lines[str(b)]["id"]) == b_digest
    assert len(journals(tmp_path / "s")) == 1  # kept: the command has not finished all its files

    # The missing file appears; the same command again sends it, and only it.
    missing.write_bytes(b"late but here")
    proxy.reset_counters()
    second = upclient(*cmd, env=env)
    assert second.returncode == 0, second.stderr.decode()
    again = {line["file"]: line for line in json_lines(second.stdout)}
    assert again[str(a)]["skipped"] and again[str(a)]["id"] == lines[str(a)]["id"]
    assert again[str(b)]["skipped"] and again[str(b)]["id"] == lines[str(b)]["id"]
    assert "skipped" not in again[str(missing)]
    assert server.stored_sha256(again[str(missing)]["id"]) == hashlib.sha256(b"late but here").hexdigest()
    assert [m for m, _ in proxy.request_log].count("POST") == 1  # one upload created: the late file's
    assert journals(tmp_path / "s") == []  # every file finished: the journal has done its job


def test_interrupted_put_resumes_without_sending_finished_files_again(node_server, make_file, tmp_path):
    """The issue's case: Ctrl-C while a big file is on its way, after two small ones finished."""
    small = [make_file(1000 + i, f"small{i}.bin") for i in range(2)]
    big, big_digest = make_file(4 * MiB, "big.bin")
    env = cli_env(tmp_path)
    store = tmp_path / "s"
    files = [str(p) for p, _ in small] + [str(big)]
    options = ["--json", "--part-size", "512K", "--max-files", "1", "--store", str(store)]
    # client -> recording proxy -> 1 MB/s link -> server: the big file takes 4 s
    with ShapingProxy(node_server.url, delay=0.001, rate=1e6) as slow, FaultProxy(slow.url) as counting:
        url = "tus+" + counting.url_for(node_server.url)
        with started("put", *files, "--to", url, *options, env=env) as proc:
            assert proc.stdout is not None
            done = []
            deadline = time.monotonic() + 60
            while len(done) < 2 and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                done.extend(json_lines(line))
            assert [d["file"] for d in done] == files[:2], done
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
            assert proc.returncode == 130
        first_ids = {d["file"]: d["id"] for d in done}

        counting.reset_counters()
        second = upclient("put", *files, "--to", url, *options, env=env)
        assert second.returncode == 0, second.stderr.decode()
        posts = [m for m, _ in counting.request_log].count("POST")
    lines = {line["file"]: line for line in json_lines(second.stdout)}
    for path, digest in small:
        assert lines[str(path)]["skipped"] is True
        assert lines[str(path)]["id"] == first_ids[str(path)]
        assert node_server.stored_sha256(lines[str(path)]["id"]) == digest
    assert node_server.stored_sha256(lines[str(big)]["id"]) == big_digest
    assert posts <= 1, posts  # at most the big file's creation, had the first run not reached it
    assert journals(store) == []


def test_a_finished_command_leaves_no_journal_and_a_new_run_uploads_again(tus, make_file, tmp_path):
    """The journal lasts until the command has finished: the same command later is a new upload."""
    server, proxy, url = tus
    a, _ = make_file(500, "a.bin")
    b, _ = make_file(600, "b.bin")
    cmd = ["put", str(a), str(b), "--to", url, "--json", "--store", str(tmp_path / "s")]
    env = cli_env(tmp_path)
    assert upclient(*cmd, env=env).returncode == 0
    assert journals(tmp_path / "s") == []
    proxy.reset_counters()
    again = upclient(*cmd, env=env)
    assert again.returncode == 0
    assert not any(line.get("skipped") for line in json_lines(again.stdout))
    assert [m for m, _ in proxy.request_log].count("POST") == 2


def test_a_changed_file_is_sent_again_on_the_rerun(tus, make_file, tmp_path):
    server, proxy, url = tus
    a, _ = make_file(500, "a.bin")
    missing = tmp_path / "nope.bin"
    cmd = ["put", str(a), str(missing), "--to", url, "--json", "--store", str(tmp_path / "s")]
    env = cli_env(tmp_path)
    first = upclient(*cmd, env=env)
    assert first.returncode == 4
    a.write_bytes(b"new content")  # changed since it was uploaded: the journal's entry no longer holds
    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = upclient(*cmd, env=env)
    [line] = [x for x in json_lines(second.stdout) if x["file"] == str(a)]
    assert not line.get("skipped")
    assert server.stored_sha256(line["id"]) == hashlib.sha256(b"new content").hexdigest()


def test_no_resume_keeps_no_journal(tus, make_file, tmp_path):
    server, proxy, url = tus
    a, _ = make_file(500, "a.bin")
    env = cli_env(tmp_path)
    r = upclient("put", str(a), str(tmp_path / "nope"), "--to", url, "--no-resume", env=env)
    assert r.returncode == 4
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").rglob("*.sqlite3"))
