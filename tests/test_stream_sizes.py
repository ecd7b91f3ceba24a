"""A stream that goes on past its announced ``size=`` never ends as a stored, cut file.

Before, tus, UPYUN and FastDFS silently uploaded the first ``size`` bytes and
reported a success.
"""

from __future__ import annotations

import os
import threading

import pytest

import upclient
from upclient import errors
from upclient.testing import FdfsServer, UpyunServer

from .conftest import MiB


def pipe_of(data: bytes):
    """A real pipe holding ``data``, its writer closed once all is written."""
    r, w = os.pipe()

    def write() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    threading.Thread(target=write, daemon=True).start()
    return os.fdopen(r, "rb")


def test_tus_refuses_a_stream_longer_than_announced(node_server):
    data = os.urandom(3 * MiB + 10)
    with upclient.Client("tus+" + node_server.url, store=None, part_size=MiB) as client, pipe_of(data) as stream:
        with pytest.raises(errors.SourceChanged, match="longer"):
            client.put(stream, size=3 * MiB)


def test_upyun_refuses_a_stream_longer_than_announced(tmp_path):
    data = os.urandom(3 * MiB + 10)
    with UpyunServer(tmp_path / "u", service="svc", operator="op", password="pw") as server:
        with upclient.Client("upyun://op@svc", endpoint=server.endpoint, password="pw", store=None,
                             part_size=MiB) as client, pipe_of(data) as stream:
            with pytest.raises(errors.SourceChanged, match="longer"):
                client.put(stream, key="cut.bin", size=3 * MiB)
        assert not server.exists("cut.bin")


def test_fdfs_refuses_a_stream_longer_than_announced(tmp_path):
    data = os.urandom(3 * MiB + 10)
    with FdfsServer(tmp_path / "f") as server:
        with upclient.Client(server.url, store=None, part_size=MiB) as client, pipe_of(data) as stream:
            with pytest.raises(errors.SourceChanged, match="longer"):
                client.put(stream, size=3 * MiB)
        assert not [f for f in server.files() if server.stored_sha256(f)]  # nothing finished was kept


# -- upclient put - : standard input of unknown size reaches every backend (issue 12, item 6) ----------


def _cli(*args, env, stdin=None, timeout=120):
    import subprocess

    from .test_sync_rig import UPCLIENT

    return subprocess.Popen([*UPCLIENT, *args], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_stdin_of_unknown_size_reaches_upyun_through_a_spool_that_is_gone_afterwards(upclient_upyun_server, tmp_path):
    import hashlib
    import subprocess

    from .test_sync_rig import UPCLIENT, cli_env

    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    data = os.urandom(3 * MiB + 5)
    server = upclient_upyun_server
    r = subprocess.run([*UPCLIENT, "put", "-", "--key", "from/stdin.bin", "--to", server.url, *server.cli_flags(),
                        "--part-size", "1M", "--json"], input=data, capture_output=True, timeout=120,
                       env=cli_env(tmp_path, TMPDIR=str(spool_dir)))
    assert r.returncode == 0, r.stderr.decode()
    assert server.stored_sha256("from/stdin.bin") == hashlib.sha256(data).hexdigest()
    assert list(spool_dir.iterdir()) == []  # the spool went with the command


def test_stdin_of_unknown_size_reaches_the_community_api(upclient_community_server, tmp_path):
    import hashlib
    import json
    import subprocess

    from .test_sync_rig import UPCLIENT, cli_env

    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    data = os.urandom(MiB + 3)
    server = upclient_community_server
    r = subprocess.run([*UPCLIENT, "put", "-", "--key", "x.bin", "--to", server.url, *server.cli_flags(), "--json"],
                       input=data, capture_output=True, timeout=120, env=cli_env(tmp_path, TMPDIR=str(spool_dir)))
    assert r.returncode == 0, r.stderr.decode()
    [line] = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert server.stored_sha256(line["id"]) == hashlib.sha256(data).hexdigest()
    assert list(spool_dir.iterdir()) == []


def test_with_size_stdin_streams_to_upyun_as_it_is_read(upclient_upyun_server, tmp_path):
    """--size: parts reach the server while standard input is still open, so nothing was spooled."""
    import hashlib
    import time

    from .test_sync_rig import cli_env

    server = upclient_upyun_server
    data = os.urandom(4 * MiB)
    r, w = os.pipe()
    with os.fdopen(r, "rb") as stdin:
        proc = _cli("put", "-", "--size", str(len(data)), "--key", "piped.bin", "--to", server.url,
                    *server.cli_flags(), "--part-size", "1M", env=cli_env(tmp_path), stdin=stdin)
    try:
        with os.fdopen(w, "wb") as writer:
            writer.write(data[: 2 * MiB + 10])
            writer.flush()
            deadline = time.monotonic() + 30
            while not any(entry[2] == 204 for entry in server.part_log) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.02)
            assert any(entry[2] == 204 for entry in server.part_log), "no part arrived before the end"
            writer.write(data[2 * MiB + 10:])
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert server.stored_sha256("piped.bin") == hashlib.sha256(data).hexdigest()


def test_stdin_shorter_than_its_size_stores_nothing(upclient_upyun_server, tmp_path):
    import subprocess

    from .test_sync_rig import UPCLIENT, cli_env

    server = upclient_upyun_server
    r = subprocess.run([*UPCLIENT, "put", "-", "--size", "3M", "--key", "short.bin", "--to", server.url,
                        *server.cli_flags(), "--part-size", "1M"], input=os.urandom(2 * MiB), capture_output=True,
                       timeout=120, env=cli_env(tmp_path))
    assert r.returncode not in (0, 2), r.stderr.decode()
    assert b"SourceChanged" in r.stderr and b"3145728 were announced" in r.stderr
    assert not server.exists("short.bin")


def test_size_is_for_standard_input_only(upclient_upyun_server, tmp_path):
    import subprocess

    from .test_sync_rig import UPCLIENT, cli_env

    f = tmp_path / "f.bin"
    f.write_bytes(b"x")
    server = upclient_upyun_server
    r = subprocess.run([*UPCLIENT, "put", str(f), "--size", "1", "--to", server.url, *server.cli_flags()],
                       capture_output=True, timeout=60, env=cli_env(tmp_path))
    assert r.returncode == 2 and b"--size is the size of standard input" in r.stderr
