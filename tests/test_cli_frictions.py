"""The command's first-hour frictions (issue 13, item 8) and an ``rm`` that never guesses (issue 12, item 5).

* ``get ID`` with no DEST refuses to write bytes to a terminal; ``-`` says
  "yes, the terminal", and a pipe gets them as before.
* A tus id is the upload's URL: ``info``, ``get`` and ``rm`` find the server
  from it without ``--from``, unless credentials are given (they go only to
  a server the user named).
* ``rm X`` deletes X on the server even when a local file X is there;
  ``abort FILE`` gives up that file's interrupted upload.

Each runs ``python -m upclient`` against a real server on 127.0.0.1 and checks
what the server holds; a fault proxy in front of it counts the requests that
must not be made.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import threading
import tty
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from upclient import errors
from upclient.store import FileStore

from .conftest import MiB
from .contract import HookedFileSource, resume_points

REPO = Path(__file__).resolve().parent.parent
TOKEN = "s3cr3t-t0ken-of-the-user"


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    """This checkout, a private state dir, and no server or credentials from the caller's environment."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("UPCLIENT_", "UPYUN_"))}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    e["XDG_STATE_HOME"] = str(tmp_path / "state")
    return e


def state_store(tmp_path: Path) -> FileStore:
    """The store the command uses by default under the ``env`` fixture's XDG_STATE_HOME."""
    return FileStore(tmp_path / "state" / "upclient" / "resume")


def run_cli(*args: str, env: Dict[str, str], cwd: Optional[Path] = None) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([sys.executable, "-m", "upclient", *args], capture_output=True, env=env,
                          cwd=str(cwd or REPO), stdin=subprocess.DEVNULL, timeout=60)


def run_on_terminal(*args: str, env: Dict[str, str]) -> Tuple[int, bytes, bytes]:
    """Run the command with its stdout on a terminal (a pty in raw mode: bytes pass unchanged)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    shown: List[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command closed its end
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        with subprocess.Popen([sys.executable, "-m", "upclient", *args], stdout=slave, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=env, cwd=str(REPO)) as proc:
            os.close(slave)
            slave = -1
            try:
                _, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
        reader.join(10)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return proc.returncode, b"".join(shown), err


# -- get: no binary on a terminal -----------------------------------------------------------


@pytest.fixture
def tus_upload(upclient_tus_server) -> Tuple[str, bytes]:
    data = os.urandom(3000)
    with upclient_tus_server.client() as client:
        return client.put(data, key="t.bin").id, data


def test_get_without_dest_refuses_a_terminal_before_any_request(upclient_tus_server, upclient_fault_proxy,
                                                                tus_upload, env):
    upload_id, _ = tus_upload
    proxy = upclient_fault_proxy(upclient_tus_server)
    url = "tus+" + proxy.url_for(upclient_tus_server.server.url)
    status, shown, err = run_on_terminal("get", proxy.url_for(upload_id), "--from", url, env=env)
    assert status == 2, err.decode()
    assert b"refusing to write the file's bytes to the terminal" in err and b"pass - as DEST" in err
    assert shown == b""
    assert proxy.request_log == []


def test_get_to_dash_writes_to_a_terminal_and_without_dest_to_a_pipe(upclient_tus_server, tus_upload, env):
    upload_id, data = tus_upload
    url = upclient_tus_server.url
    status, shown, err = run_on_terminal("get", upload_id, "-", "--from", url, "-q", env=env)
    assert status == 0, err.decode()
    assert shown == data
    piped = run_cli("get", upload_id, "--from", url, env=env)
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout == data


# -- a tus id that is a URL names its server ---------------------------------------------------


def test_info_get_and_rm_of_a_tus_upload_url_need_no_from(upclient_tus_server, tus_upload, env, tmp_path):
    upload_id, data = tus_upload
    info = run_cli("info", upload_id, "--json", env=env)
    assert info.returncode == 0, info.stderr.decode()
    assert json.loads(info.stdout)["size"] == len(data)
    dest = tmp_path / "back.bin"
    got = run_cli("get", upload_id, str(dest), env=env)
    assert got.returncode == 0, got.stderr.decode()
    assert dest.read_bytes() == data
    assert run_cli("rm", upload_id, env=env).returncode == 0
    with upclient_tus_server.client() as client, pytest.raises(errors.NotFound):
        client.info(upload_id)  # gone on the server


@pytest.mark.parametrize("credentials", [{"UPCLIENT_TOKEN": TOKEN}, {"-H": f"Authorization: Bearer {TOKEN}"}],
                         ids=["token-in-environment", "header"])
def test_a_url_id_never_takes_credentials_to_a_server_no_one_named(credentials, upclient_tus_server,
                                                                   upclient_fault_proxy, tus_upload, env):
    upload_id, _ = tus_upload
    proxy = upclient_fault_proxy(upclient_tus_server)  # stands for a server the id came from
    flags = [item for pair in credentials.items() if pair[0] == "-H" for item in pair]
    env = dict(env, **{k: v for k, v in credentials.items() if k != "-H"})
    r = run_cli("info", proxy.url_for(upload_id), *flags, env=env)
    assert r.returncode == 2, r.stderr.decode()
    assert f"--from tus+http://127.0.0.1:{proxy.port}/files/".encode() in r.stderr
    assert TOKEN.encode() not in r.stdout + r.stderr
    assert proxy.request_log == []


def test_a_url_id_with_a_password_names_no_server_and_is_not_echoed(env):
    r = run_cli("info", f"http://alice:{TOKEN}@127.0.0.1:9/files/x", env=env)
    assert r.returncode == 2
    assert b"pass --from URL" in r.stderr
    assert TOKEN.encode() not in r.stdout + r.stderr


# -- rm deletes remotely; abort gives up a local upload -----------------------------------------


def test_rm_deletes_on_the_server_even_when_a_local_file_has_that_name(upclient_upyun_server, make_file,
                                                                     env, tmp_path):
    server = upclient_upyun_server
    work = tmp_path / "work"
    work.mkdir()
    local, local_digest = make_file(4 * MiB, "a.bin")
    local = local.rename(work / "a.bin")
    store = state_store(tmp_path)
    cancel = threading.Event()
    with server.client(store=store, part_size=1 * MiB, concurrency=1) as client:
        client.put(b"remote a.bin", key="a.bin")
        with HookedFileSource(local, lambda off: off >= 2 * MiB and cancel.set()) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, key="backup/a.bin", cancel=cancel)
    points = resume_points(store)
    assert len(points) == 1
    remote = ["--from", server.url, *server.cli_flags()]

    r = run_cli("rm", "a.bin", *remote, "--json", env=env, cwd=work)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout) == {"id": "a.bin", "ok": True, "deleted": True}
    with pytest.raises(FileNotFoundError):
        server.stored_sha256("a.bin")  # deleted on the server...
    assert resume_points(store) == points  # ...and the local upload's resume point kept
    assert hashlib.sha256(local.read_bytes()).hexdigest() == local_digest

    again = run_cli("rm", "a.bin", *remote, env=env, cwd=work)
    assert again.returncode == 4  # not found, and a pointer to abort
    assert b"upclient abort a.bin" in again.stderr

    gave_up = run_cli("abort", "a.bin", *remote, "--json", env=env, cwd=work)
    assert gave_up.returncode == 0, gave_up.stderr.decode()
    assert json.loads(gave_up.stdout) == {"file": "a.bin", "ok": True, "aborted": 1}
    assert resume_points(store) == []
    assert local.read_bytes() and hashlib.sha256(local.read_bytes()).hexdigest() == local_digest
    with server.client(store=store, part_size=1 * MiB) as client:
        assert not client.put(local, key="backup/a.bin").resumed  # starts afresh


def test_abort_of_no_local_file_is_a_usage_error(upclient_upyun_server, env, tmp_path):
    server = upclient_upyun_server
    r = run_cli("abort", "nope.bin", "--from", server.url, *server.cli_flags(), env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert b"no such file: nope.bin" in r.stderr and b"rm deletes a stored file" in r.stderr


def test_rm_takes_no_store_any_more(upclient_upyun_server, env, tmp_path):
    """``rm X --store DIR`` used to give up a local X's upload: now a usage error, nothing deleted."""
    server = upclient_upyun_server
    with server.client() as client:
        client.put(b"kept", key="k.bin")
    r = run_cli("rm", "k.bin", "--store", str(tmp_path), "--from", server.url, *server.cli_flags(), env=env)
    assert r.returncode == 2
    assert server.stored_sha256("k.bin") == hashlib.sha256(b"kept").hexdigest()
