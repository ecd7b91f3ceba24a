"""A process uploading is killed with SIGKILL at a random point; a second
process resumes it from the resume point and the server's state, ending with
byte-exact content and re-sending no more than what was in flight."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import upclient

from upclient.testing.shaping import ShapingProxy

from .conftest import KiB

PART = 256 * KiB
CONCURRENCY = 2

CHILD = textwrap.dedent(
    """
    import json, sys, time, upclient
    from upclient.source import FileSource
    url, path, store_dir, part, concurrency, options = sys.argv[1:7]
    options = json.loads(options)
    put_options = options.pop("put", {})
    delay = options.pop("read_delay", 0)

    class Slow(FileSource):  # a slow disk, where nothing on the wire can be slowed
        def read(self, offset, length):
            time.sleep(delay)
            return super().read(offset, length)

    client = upclient.Client(url, store=upclient.FileStore(store_dir),
                             part_size=int(part), concurrency=int(concurrency), **options)
    source = Slow(path) if delay else path
    result = client.put(source, on_progress=lambda p: print("progress", p.bytes_done, flush=True), **put_options)
    print("done", int(result.resumed), result.sent_bytes, result.id.replace(" ", "%20"), flush=True)
    """
)


def run_child(url, path, store_dir, kill_at=None, options=None, part=PART):
    """Upload ``path`` to ``url`` (a client URL) in a child process; SIGKILL it past ``kill_at``."""
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(path), str(store_dir), str(part), str(CONCURRENCY),
         json.dumps(options or {})],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    last = 0
    try:
        for line in proc.stdout:
            words = line.split()
            if words[0] == "progress":
                last = int(words[1])
                if kill_at is not None and last >= kill_at:
                    proc.send_signal(signal.SIGKILL)
                    break
            elif words[0] == "done":
                proc.wait(30)
                return {"done": True, "resumed": bool(int(words[1])), "sent": int(words[2]), "id": words[3]}
        proc.wait(30)
        return {"done": False, "last": last, "code": proc.returncode}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def settle(proxy, timeout: float = 10.0) -> None:
    """Wait until the link has delivered what it holds: a killed client's last
    bytes may still reach the server through the proxy's buffers."""
    deadline = time.monotonic() + timeout
    while proxy.active_connections and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)


def server_holds(url, store_dir):
    """(bytes the server holds for the recorded upload, allowed slack) after the kill."""
    store = upclient.FileStore(store_dir)
    (key,) = list(store.keys())
    state = store.load(key)["state"]
    with upclient.Client("tus+" + url, store=None) as client:
        if state["mode"] == "serial":
            return client.info(state["url"]).offset, 0
        held = sum(client.info(p["url"]).offset for p in state["partials"].values())
        return held, CONCURRENCY * PART


@pytest.mark.parametrize("server_name", ["node", "rus"])
def test_resume_after_sigkill_sends_only_what_is_missing(request, server_name, make_file, tmp_path):
    server = request.getfixturevalue(f"{server_name}_server")
    size = 48 * PART
    path, digest = make_file(size)
    kill_at = random.randint(size // 5, size * 3 // 5)
    with ShapingProxy(server.url, delay=0.001, rate=6e6) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/files/"
        first = run_child("tus+" + url, path, tmp_path / "store", kill_at=kill_at)
        assert not first["done"], "the upload finished before it could be killed"
        assert first["code"] == -signal.SIGKILL
        settle(proxy)
        held, slack = server_holds(url, tmp_path / "store")
        assert held > 0, "the resume point names nothing the server has"
        second = run_child("tus+" + url, path, tmp_path / "store")
    assert second["done"] and second["resumed"], second
    # Only what the server did not hold at the kill is sent again (plus, for
    # parallel partial uploads, the parts in flight whose URL was not yet recorded).
    assert size - held <= second["sent"] <= size - held + slack, (first, held, second)
    assert server.stored_sha256(second["id"]) == digest


def test_upyun_resume_after_sigkill_sends_only_what_was_in_flight(make_file, tmp_path):
    from upclient.testing.upyun import UpyunServer

    part = 1024 * KiB
    size = 24 * part
    path, digest = make_file(size)
    kill_at = random.randint(size // 5, size * 3 // 5)
    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password="pw") as server, \
            ShapingProxy(server.url, delay=0.001, rate=6e6) as proxy:
        options = {"password": "pw", "endpoint": f"127.0.0.1:{proxy.port}"}
        first = run_child("upyun://op@svc", path, tmp_path / "store", kill_at=kill_at, options=options, part=part)
        assert not first["done"], "the upload finished before it could be killed"
        assert first["code"] == -signal.SIGKILL
        settle(proxy)
        (upload,) = server.uploads().values()
        held = len(upload["parts"]) * part
        assert held > 0
        second = run_child("upyun://op@svc", path, tmp_path / "store", options=options, part=part)
    assert second["done"] and second["resumed"], second
    # the server is asked which parts it holds: exactly the rest is sent
    assert second["sent"] == size - held, (first, held, second)
    assert server.stored_sha256(path.name) == digest


def test_fdfs_resume_after_sigkill_appends_only_what_the_storage_lacks(make_file, tmp_path):
    """A plain put above part_size: an appender file, resumed after the kill,
    regenerated into a normal file at the end."""
    from upclient.backends.fdfs import FileId
    from upclient.testing import FdfsServer

    size = 40 * PART
    path, digest = make_file(size, name="kill.bin")
    kill_at = random.randint(size // 5, size * 3 // 5)
    options = {"read_delay": 0.03}
    with FdfsServer(tmp_path / "fdfs") as server:
        first = run_child(server.url, path, tmp_path / "store", kill_at=kill_at, options=options)
        assert not first["done"], "the upload finished before it could be killed"
        assert first["code"] == -signal.SIGKILL
        store = upclient.FileStore(tmp_path / "store")
        (key,) = list(store.keys())
        fid = store.load(key)["state"]["id"]
        with upclient.Client(server.url, store=None) as client:
            deadline = time.monotonic() + 10
            held = client.info(fid).size
            while held % PART and time.monotonic() < deadline:  # the storage rolls back the cut append
                time.sleep(0.02)
                held = client.info(fid).size
        assert 0 < held < size and held % PART == 0
        second = run_child(server.url, path, tmp_path / "store", options=options)
        assert second["done"] and second["resumed"], second
        assert second["sent"] == size - held, (first, held, second)
        assert server.stored_sha256(second["id"]) == digest
        assert not FileId.parse(second["id"]).appender and not server.is_appender(second["id"])
        assert fid not in server.files()  # the appender file became the normal one
