"""``upclient sync`` from one backend to another (issue 12, item 2).

The typical case is a FastDFS cluster moved to UPYUN (``--from-list`` of
file ids); listing backends (UPYUN, community) are sources of their own, and
tus upload URLs can be listed too.  Each file streams from source to
destination: the command runs with a file-size limit far below the files'
sizes (``RLIMIT_FSIZE``), so a temporary copy on disk would kill it.  Bytes
are checked on the destination's side.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
from pathlib import Path
from typing import Dict

import upclient
from upclient.errors import ChecksumMismatch
from upclient.journal import Journal
from upclient.sync import SourceFile, SyncRun

from .test_sync_rig import UPCLIENT, KiB, MiB, by_key, cli_env, json_lines, summary

#: The FastDFS storage command that sends a file's bytes.
FDFS_DOWNLOAD = 14


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def no_big_files() -> None:
    """In the child: writing a file past 1 MiB kills it (SIGXFSZ). Journals and resume points stay far below."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (MiB, MiB))


def sync(*args: str, env: Dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*UPCLIENT, "sync", *args], capture_output=True, env=env, timeout=timeout,
                          preexec_fn=no_big_files)


def test_fastdfs_ids_move_to_upyun_through_memory_and_a_rerun_reads_nothing(upclient_fdfs_server,
                                                                           upclient_upyun_server, tmp_path):
    fdfs, upyun = upclient_fdfs_server, upclient_upyun_server
    sizes = [0, 1, 300 * KiB, 5 * MiB + 3, 9 * MiB]
    with fdfs.client() as client:
        stored = {client.put(os.urandom(n), key=f"f{n}.bin").id: n for n in sizes}
    ids = list(stored)
    listing = tmp_path / "ids.txt"
    listing.write_text("# exported from the FastDFS cluster\n" + "\n".join(ids[:-1])
                       + f"\n{ids[-1]}\tnamed/last.bin\n")
    env = cli_env(tmp_path)
    args = ["--from-list", str(listing), fdfs.url, upyun.url, *upyun.cli_flags(), "--prefix", "fdfs",
            "--store", str(tmp_path / "store"), "--json"]
    first = sync(*args, env=env)
    assert first.returncode == 0, first.stderr.decode()
    files = by_key(json_lines(first.stdout))
    expected = {f"fdfs/{i}": i for i in ids[:-1]}
    expected["fdfs/named/last.bin"] = ids[-1]
    assert {k: v["source"] for k, v in files.items()} == expected
    assert {v["action"] for v in files.values()} == {"uploaded"}
    for key, file_id in expected.items():
        assert upyun.stored_sha256(key) == fdfs.stored_sha256(file_id), key

    fdfs.reset_counts()
    second = sync(*args, env=env)
    assert second.returncode == 0, second.stderr.decode()
    assert {v["action"] for v in by_key(json_lines(second.stdout)).values()} == {"skipped"}
    assert fdfs.counts[FDFS_DOWNLOAD] == 0  # sizes were asked for; not one byte was read


def test_a_listed_id_that_is_gone_is_reported_and_the_others_are_copied(upclient_fdfs_server,
                                                                         upclient_upyun_server, tmp_path):
    fdfs, upyun = upclient_fdfs_server, upclient_upyun_server
    with fdfs.client() as client:
        good = client.put(b"still here", key="a.txt").id
        gone = client.put(b"deleted soon", key="b.txt").id
        client.delete(gone)
    listing = tmp_path / "ids.txt"
    listing.write_text(f"{gone}\n{good}\n")
    r = sync("--from-list", str(listing), fdfs.url, upyun.url, *upyun.cli_flags(), "--store",
             str(tmp_path / "s"), "--json", env=cli_env(tmp_path))
    assert r.returncode == 4, r.stderr.decode()  # not found
    lines = json_lines(r.stdout)
    assert by_key(lines)[gone]["action"] == "failed" and by_key(lines)[gone]["error"]["type"] == "NotFound"
    assert upyun.stored_sha256(good) == sha(b"still here")
    assert summary(lines)["uploaded"] == 1 and summary(lines)["failed"] == 1


def test_upyun_folder_to_the_community_api_checked_by_md5(upclient_upyun_server, upclient_community_server,
                                                          tmp_path):
    upyun, community = upclient_upyun_server, upclient_community_server
    contents = {"photos/2026/a.jpg": os.urandom(3 * MiB), "photos/2026/b/c.png": os.urandom(2000),
                "other/skip.txt": b"not under the prefix"}
    with upyun.client() as client:
        for key, data in contents.items():
            client.put(data, key=key)
    env = cli_env(tmp_path)
    args = [upyun.url, community.url, *upyun.cli_flags(), *community.cli_flags(), "--source-prefix", "photos",
            "--store", str(tmp_path / "s"), "--json"]
    r = sync(*args, env=env)
    assert r.returncode == 0, r.stderr.decode()
    files = by_key(json_lines(r.stdout))
    assert set(files) == {"2026/a.jpg", "2026/b/c.png"}
    for key, line in files.items():
        assert community.stored_sha256(line["id"]) == sha(contents["photos/" + key])
    again = sync(*args, env=env)
    assert {v["action"] for v in by_key(json_lines(again.stdout)).values()} == {"skipped"}


def test_community_files_to_upyun(upclient_community_server, upclient_upyun_server, tmp_path):
    community, upyun = upclient_community_server, upclient_upyun_server
    with community.client() as client:
        made = {client.put(os.urandom(n), key=f"x{n}.bin").id: n for n in (10, 2 * MiB)}
    r = sync(community.url, upyun.url, *community.cli_flags(), *upyun.cli_flags(), "--prefix", "from-community",
             "--store", str(tmp_path / "s"), "--json", env=cli_env(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    files = by_key(json_lines(r.stdout))
    assert sorted(v["source"] for v in files.values()) == sorted(made)
    for key, line in files.items():
        assert key.startswith("from-community/community/")  # the file keys the API gave them
        assert upyun.stored_sha256(key) == community.stored_sha256(line["source"])


def test_tus_upload_urls_to_fastdfs(node_server, upclient_fdfs_server, tmp_path):
    fdfs = upclient_fdfs_server
    with upclient.Client("tus+" + node_server.url, store=None) as client:
        urls = [client.put(os.urandom(n), key=f"t{n}.bin").id for n in (5, 3 * MiB)]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    r = sync("--from-list", str(listing), "tus+" + node_server.url, fdfs.url, "--store", str(tmp_path / "s"),
             "--json", env=cli_env(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    files = by_key(json_lines(r.stdout))
    assert {k: v["source"] for k, v in files.items()} == {u.rsplit("/", 1)[1]: u for u in urls}
    for line in files.values():
        assert fdfs.stored_sha256(line["id"]) == node_server.stored_sha256(line["source"])


def test_a_copy_whose_bytes_differ_from_the_source_md5_fails_and_is_not_journaled(upclient_upyun_server,
                                                                                  upclient_fdfs_server,
                                                                                  tmp_path: Path):
    fdfs, upyun = upclient_fdfs_server, upclient_upyun_server
    with fdfs.client() as src:
        file_id = src.put(b"the real bytes", key="r.txt").id
    journal = Journal(tmp_path / "j.sqlite3")
    events = []
    with fdfs.client() as src, upyun.client() as dst:
        claimed = SourceFile(key="r.txt", ref=file_id, size=14, md5=hashlib.md5(b"other bytes!!!").hexdigest())
        result = SyncRun(dst, journal, source=src, on_event=events.append).run([claimed])
    assert result.failed == 1 and isinstance(result.errors[0], ChecksumMismatch)
    assert [e.action for e in events] == ["failed"] and "MD5" in str(events[0].error)
    assert len(journal) == 0  # the next run copies it again


def test_a_copy_whose_source_breaks_stores_nothing_and_says_a_retry_may_help(upclient_fdfs_server,
                                                                              upclient_upyun_server, tmp_path):
    fdfs, upyun = upclient_fdfs_server, upclient_upyun_server
    data = os.urandom(6 * MiB)
    with fdfs.client() as client:
        file_id = client.put(data, key="big.bin").id
    fdfs.fail(FDFS_DOWNLOAD, times=None)  # every download: the connection is dropped
    listing = tmp_path / "ids.txt"
    listing.write_text(file_id + "\n")
    args = ["--from-list", str(listing), fdfs.url, upyun.url, *upyun.cli_flags(), "--store", str(tmp_path / "s"),
            "--retries", "1", "--json"]
    r = sync(*args, env=cli_env(tmp_path))
    assert r.returncode == 5, r.stderr.decode()
    assert by_key(json_lines(r.stdout))[file_id]["action"] == "failed"
    assert not upyun.exists(file_id) and upyun.uploads() == {}  # no cut file, no upload left open
    fdfs.clear_faults()
    again = sync(*args, env=cli_env(tmp_path))
    assert again.returncode == 0, again.stderr.decode()
    assert upyun.stored_sha256(file_id) == sha(data)
