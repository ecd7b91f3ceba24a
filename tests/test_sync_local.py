"""``upclient sync FOLDER URL`` end to end, against the emulators and the reference tus server (issue 12, item 1).

Every run is the command as a cron job runs it (a child process, see
:mod:`tests.test_sync_rig`), except where a test counts the files the command
opens: that run is in this process, with ``os.open`` and ``open`` watched.
What the server holds is checked on the server's side, byte for byte.
"""

from __future__ import annotations

import builtins
import fcntl
import hashlib
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from upclient.testing import FaultProxy, ShapingProxy

from .test_sync_rig import UPCLIENT, KiB, MiB, by_key, cli_env, json_lines, make_tree, started, summary, upclient

TREE = {"a.txt": 100, "docs/b.bin": 70 * KiB, "docs/ünï cödé.txt": 3000, "deep/er/c.bin": 3 * MiB + 1,
        "empty.dat": 0}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listing(server) -> Dict[str, str]:
    """key -> sha256 of every file the UPYUN emulator holds."""
    with server.client() as client:
        from upclient.sync.listing import remote_files

        return {info.id: server.stored_sha256(info.id) for info in remote_files(client, "")}


@pytest.fixture
def tree(tmp_path: Path):
    root = tmp_path / "tree"
    return root, make_tree(root, TREE)


def sync_args(server, root: Path, tmp_path: Path, *extra: str) -> List[str]:
    return ["sync", str(root), server.url, *server.cli_flags(), "--store", str(tmp_path / "store"),
            "--part-size", "1M", *extra]


# -- UPYUN: keys name files ---------------------------------------------------------------


def test_a_tree_reaches_upyun_and_a_rerun_reads_no_file(upclient_upyun_server, tree, tmp_path, monkeypatch, capsys):
    server = upclient_upyun_server
    root, contents = tree
    env = cli_env(tmp_path)
    first = upclient(*sync_args(server, root, tmp_path, "--prefix", "backup/2026", "--json"), env=env)
    assert first.returncode == 0, first.stderr.decode()
    lines = json_lines(first.stdout)
    files = by_key(lines)
    assert {k: v["action"] for k, v in files.items()} == {f"backup/2026/{rel}": "uploaded" for rel in TREE}
    assert files["backup/2026/deep/er/c.bin"]["bytes"] == 3 * MiB + 1
    assert files["backup/2026/docs/b.bin"]["id"] == "backup/2026/docs/b.bin"
    assert files["backup/2026/docs/b.bin"]["source"] == "docs/b.bin"
    assert summary(lines)["uploaded"] == len(TREE) and summary(lines)["status"] == 0
    assert listing(server) == {f"backup/2026/{rel}": sha(data) for rel, data in contents.items()}

    # The re-run, in this process, with every file opening watched.
    opened: List[str] = []
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, *args, **kwargs):
        opened.append(os.fsdecode(path))
        return real_os_open(path, *args, **kwargs)

    def py_open(file, *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)
    from upclient.cli import main

    monkeypatch.setenv("XDG_STATE_HOME", env["XDG_STATE_HOME"])
    status = main(sync_args(server, root, tmp_path, "--prefix", "backup/2026", "--json"))
    monkeypatch.undo()
    out = capsys.readouterr().out.encode()
    assert status == 0
    again = json_lines(out)
    assert {v["action"] for v in by_key(again).values()} == {"skipped"}
    assert summary(again)["skipped"] == len(TREE) and summary(again)["uploaded"] == 0
    assert [p for p in opened if p.startswith(str(root))] == []  # not one file of the tree was opened


def test_changes_new_files_dry_run_and_delete(upclient_upyun_server, tree, tmp_path):
    server = upclient_upyun_server
    root, contents = tree
    env = cli_env(tmp_path)
    assert upclient(*sync_args(server, root, tmp_path), env=env).returncode == 0
    (root / "a.txt").write_bytes(b"changed content")
    (root / "docs" / "new.txt").write_bytes(b"new")
    os.unlink(root / "docs" / "b.bin")
    before = listing(server)

    dry = upclient(*sync_args(server, root, tmp_path, "--dry-run", "--delete", "--json"), env=env)
    assert dry.returncode == 0, dry.stderr.decode()
    planned = by_key(json_lines(dry.stdout))
    assert planned["a.txt"]["action"] == "upload" and planned["a.txt"]["reason"] == "changed"
    assert planned["docs/new.txt"]["action"] == "upload" and planned["docs/new.txt"]["reason"] == "new"
    assert planned["docs/b.bin"]["action"] == "delete"
    assert planned["deep/er/c.bin"]["action"] == "skip"
    assert listing(server) == before  # a dry run changes nothing

    human = upclient(*sync_args(server, root, tmp_path), env=env)
    assert human.returncode == 0, human.stderr.decode()
    out = human.stdout.decode()
    assert "uploaded a.txt (15 B, changed)" in out and "uploaded docs/new.txt (3 B, new)" in out
    assert "2 uploaded (18 B), 3 skipped, 0 deleted, 0 failed" in out
    assert listing(server)["docs/b.bin"] == before["docs/b.bin"]  # never deleted without --delete

    deleting = upclient(*sync_args(server, root, tmp_path, "--delete"), env=env)
    assert deleting.returncode == 0, deleting.stderr.decode()
    assert "deleted docs/b.bin" in deleting.stdout.decode()
    expected = {rel: sha(data) for rel, data in contents.items() if rel != "docs/b.bin"}
    expected.update({"a.txt": sha(b"changed content"), "docs/new.txt": sha(b"new")})
    assert listing(server) == expected


def test_a_file_deleted_on_the_server_is_sent_again(upclient_upyun_server, tree, tmp_path):
    server = upclient_upyun_server
    root, contents = tree
    env = cli_env(tmp_path)
    assert upclient(*sync_args(server, root, tmp_path), env=env).returncode == 0
    with server.client() as client:
        client.delete("docs/b.bin")
    again = upclient(*sync_args(server, root, tmp_path, "--json"), env=env)
    files = by_key(json_lines(again.stdout))
    assert files["docs/b.bin"]["action"] == "uploaded" and files["docs/b.bin"]["reason"] == "gone from the server"
    assert server.stored_sha256("docs/b.bin") == sha(contents["docs/b.bin"])
    # trusting the journal, the server is not asked
    with server.client() as client:
        client.delete("a.txt")
    trusting = upclient(*sync_args(server, root, tmp_path, "--json", "--trust-journal"), env=env)
    assert by_key(json_lines(trusting.stdout))["a.txt"]["action"] == "skipped"


def test_a_tree_already_on_the_server_is_recognised_by_md5_not_sent(upclient_upyun_server, tree, tmp_path):
    server = upclient_upyun_server
    root, contents = tree
    with server.client() as client:
        for rel in contents:
            client.put(str(root / rel), key=rel)
        client.put(b"x" * 100, key="a.txt")  # same size as the local a.txt, other bytes
    server.reset_counters()
    r = upclient(*sync_args(server, root, tmp_path, "--json"), env=cli_env(tmp_path))
    files = by_key(json_lines(r.stdout))
    assert files["a.txt"]["action"] == "uploaded" and files["a.txt"]["reason"] == "different on the server"
    assert {k for k, v in files.items() if v["action"] == "skipped"} == set(TREE) - {"a.txt"}
    assert files["docs/b.bin"]["reason"] == "on the server already (same MD5)"
    assert server.stored_sha256("a.txt") == sha(contents["a.txt"])


def test_one_failing_file_does_not_stop_the_others_and_the_rerun_sends_only_it(upclient_upyun_server, tree,
                                                                                tmp_path):
    server = upclient_upyun_server
    root, contents = tree
    env = cli_env(tmp_path)
    server.fail("*", 503, times=None, key="docs/b.bin")
    first = upclient(*sync_args(server, root, tmp_path, "--json", "--retries", "0"), env=env)
    assert first.returncode == 5, first.stderr.decode()  # a retry may help
    lines = json_lines(first.stdout)
    files = by_key(lines)
    assert files["docs/b.bin"]["action"] == "failed" and files["docs/b.bin"]["error"]["status"] == 503
    assert summary(lines)["failed"] == 1 and summary(lines)["uploaded"] == len(TREE) - 1
    assert b"error: docs/b.bin" in first.stderr
    server.clear_faults()
    second = upclient(*sync_args(server, root, tmp_path, "--json"), env=env)
    assert second.returncode == 0
    assert [k for k, v in by_key(json_lines(second.stdout)).items() if v["action"] == "uploaded"] == ["docs/b.bin"]
    assert listing(server) == {rel: sha(data) for rel, data in contents.items()}


def test_symlinks_and_special_files(upclient_upyun_server, tree, tmp_path):
    server = upclient_upyun_server
    root, contents = tree
    os.symlink(root / "a.txt", root / "link.txt")
    os.mkfifo(root / "fifo")
    env = cli_env(tmp_path)
    plain = upclient(*sync_args(server, root, tmp_path), env=env)
    assert plain.returncode == 0, plain.stderr.decode()
    assert b"left out fifo: a special file (FIFO)" in plain.stderr
    assert "link.txt" not in listing(server) and "fifo" not in listing(server)
    followed = upclient(*sync_args(server, root, tmp_path, "--follow-symlinks"), env=env)
    assert followed.returncode == 0
    assert listing(server)["link.txt"] == sha(contents["a.txt"])


def test_two_runs_of_one_job_never_overlap(upclient_upyun_server, tree, tmp_path):
    server = upclient_upyun_server
    root, _ = tree
    env = cli_env(tmp_path)
    with ShapingProxy(server.address, delay=0.001, rate=1e6) as slow:  # 3 s for the big file
        args = ["sync", str(root), server.url, "--password", server.password, "--endpoint",
                f"127.0.0.1:{slow.port}", "--store", str(tmp_path / "store"), "--max-files", "1"]
        with started(*args, env=env) as first:
            assert first.stdout is not None
            assert first.stdout.readline().startswith(b"uploaded ")  # it runs, and holds the lock
            second = upclient(*args, env=env)
            assert second.returncode == 6, second.stderr.decode()
            assert b"another run of this job holds its lock" in second.stderr
            assert f"(pid {first.pid})".encode() in second.stderr
            out, err = first.communicate(timeout=60)
            assert first.returncode == 0, err.decode()
        assert upclient(*args, env=env).returncode == 0  # the lock went with the first run


def test_usage_and_missing_sources(upclient_upyun_server, node_server, tmp_path):
    server = upclient_upyun_server
    env = cli_env(tmp_path)
    missing = upclient("sync", str(tmp_path / "nope"), server.url, *server.cli_flags(), env=env)
    assert missing.returncode == 4 and b"no such folder" in missing.stderr
    f = tmp_path / "file.txt"
    f.write_bytes(b"x")
    assert upclient("sync", str(f), server.url, *server.cli_flags(), env=env).returncode == 2
    (tmp_path / "d").mkdir()
    no_delete = upclient("sync", str(tmp_path / "d"), "tus+" + node_server.url, "--delete", env=env)
    assert no_delete.returncode == 2 and b"--delete needs a destination that lists" in no_delete.stderr
    no_list = upclient("sync", str(tmp_path / "d"), server.url, "--from-list", str(f), env=env)
    assert no_list.returncode == 2


def test_on_a_terminal_the_progress_covers_the_whole_tree(upclient_upyun_server, tree, tmp_path):
    server = upclient_upyun_server
    root, _ = tree
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal has a width
    chunks: List[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    with ShapingProxy(server.address, delay=0.001, rate=1.5e6) as slow:  # 2 s: time for rates and an ETA
        try:
            done = subprocess.run([*UPCLIENT, "sync", str(root), server.url, "--password", server.password,
                                   "--endpoint", f"127.0.0.1:{slow.port}", "--store", str(tmp_path / "s"),
                                   "--part-size", "1M", "--concurrency", "1"],
                                  stdout=subprocess.PIPE, stderr=follower, timeout=120, env=cli_env(tmp_path))
        finally:
            os.close(follower)
            reader.join(10)
            os.close(leader)
    assert done.returncode == 0
    terminal = b"".join(chunks).decode()
    total = sum(TREE.values())
    from upclient.cli.display import format_bytes

    assert f"{len(TREE)}/{len(TREE)} files" in terminal, terminal
    assert f"/{format_bytes(total)}" in terminal, terminal  # bytes of the whole tree, not of one file
    assert "eta " in terminal, terminal


# -- backends where the server names the upload -----------------------------------------------


def test_tus_rerun_asks_the_server_and_resends_only_what_it_lost(node_server, tree, tmp_path):
    root, contents = tree
    env = cli_env(tmp_path)
    with FaultProxy(node_server.url) as proxy:
        url = "tus+" + proxy.url_for(node_server.url)
        args = ["sync", str(root), url, "--store", str(tmp_path / "store"), "--part-size", "1M", "--json"]
        first = upclient(*args, env=env)
        assert first.returncode == 0, first.stderr.decode()
        ids = {k: v["id"] for k, v in by_key(json_lines(first.stdout)).items()}
        assert {k: node_server.stored_sha256(i) for k, i in ids.items()} == {k: sha(v) for k, v in contents.items()}
        assert node_server.stored_metadata(ids["docs/b.bin"])["filename"] == "docs/b.bin"

        with upclient_client(url) as client:
            client.delete(ids["docs/b.bin"])
        proxy.reset_counters()
        second = upclient(*args, env=env)
        assert second.returncode == 0, second.stderr.decode()
        files = by_key(json_lines(second.stdout))
        assert files["docs/b.bin"]["action"] == "uploaded" and files["docs/b.bin"]["reason"] == "gone from the server"
        assert {k for k, v in files.items() if v["action"] == "skipped"} == set(TREE) - {"docs/b.bin"}
        assert [m for m, _ in proxy.request_log].count("POST") == 1
        assert node_server.stored_sha256(files["docs/b.bin"]["id"]) == sha(contents["docs/b.bin"])


def upclient_client(url: str):
    import upclient

    return upclient.Client(url, store=None)


def test_fastdfs_rerun_skips_and_delete_is_refused(upclient_fdfs_server, tree, tmp_path):
    server = upclient_fdfs_server
    root, contents = tree
    env = cli_env(tmp_path)
    args = ["sync", str(root), server.url, "--store", str(tmp_path / "store"), "--part-size", "1M", "--json"]
    first = upclient(*args, env=env)
    assert first.returncode == 0, first.stderr.decode()
    ids = {k: v["id"] for k, v in by_key(json_lines(first.stdout)).items()}
    assert {k: server.stored_sha256(i) for k, i in ids.items()} == {k: sha(v) for k, v in contents.items()}
    stored = set(server.files())
    second = upclient(*args, env=env)
    assert {v["action"] for v in by_key(json_lines(second.stdout)).values()} == {"skipped"}
    assert set(server.files()) == stored  # nothing stored twice
    refused = upclient(*args, "--delete", env=env)
    assert refused.returncode == 2 and b"--delete needs a destination that lists" in refused.stderr


def test_community_rerun_skips_and_delete_removes_only_what_this_job_uploaded(upclient_community_server, tree,
                                                                              tmp_path):
    server = upclient_community_server
    root, contents = tree
    env = cli_env(tmp_path)
    with server.client() as client:
        other = client.put(b"someone else's file", key="other.txt").id
    args = ["sync", str(root), server.url, *server.cli_flags(), "--store", str(tmp_path / "store"), "--json"]
    first = upclient(*args, env=env)
    assert first.returncode == 0, first.stderr.decode()
    ids = {k: v["id"] for k, v in by_key(json_lines(first.stdout)).items()}
    assert {k: server.stored_sha256(i) for k, i in ids.items()} == {k: sha(v) for k, v in contents.items()}
    second = upclient(*args, env=env)
    assert {v["action"] for v in by_key(json_lines(second.stdout)).values()} == {"skipped"}
    os.unlink(root / "docs" / "b.bin")
    deleting = upclient(*args, "--delete", env=env)
    assert deleting.returncode == 0, deleting.stderr.decode()
    assert by_key(json_lines(deleting.stdout))["docs/b.bin"]["action"] == "deleted"
    left = {i for i in server.file_ids() if server.file_object(i).get("deleted_at") is None}
    assert ids["docs/b.bin"] not in left and other in left and ids["a.txt"] in left


def test_an_interrupted_sync_resumes_the_file_it_was_sending(upclient_upyun_server, tmp_path):
    server = upclient_upyun_server
    root = tmp_path / "tree"
    contents = make_tree(root, {"big.bin": 6 * MiB})
    env = cli_env(tmp_path)
    with ShapingProxy(server.address, delay=0.001, rate=2e6) as slow:
        args = ["sync", str(root), server.url, "--password", server.password, "--endpoint", f"127.0.0.1:{slow.port}",
                "--store", str(tmp_path / "store"), "--part-size", "1M", "--concurrency", "1", "--json"]
        with started(*args, env=env) as first:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(len(u["parts"]) >= 2 for u in server.uploads().values()):
                time.sleep(0.02)
            first.send_signal(2)  # SIGINT
            out, err = first.communicate(timeout=30)
            assert first.returncode == 130, err.decode()
            assert summary(json_lines(out))["interrupted"] is True
        second = upclient(*args, env=env)
    assert second.returncode == 0, second.stderr.decode()
    line = by_key(json_lines(second.stdout))["big.bin"]
    assert line["resumed"] is True and line["sent_bytes"] <= 4 * MiB
    assert server.stored_sha256("big.bin") == sha(contents["big.bin"])
