"""upclient's pytest plugin (upclient.testing.plugin): its fixtures in this suite, and pytest
run in a child process on test files a user would write, with nothing but the plugin.

Every upload is checked on the server side: the digest of what the server
stored equals the source's.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

import upclient
from upclient.testing.running import RunningServer

from .conftest import KiB

README = Path(__file__).resolve().parent.parent / "README.rst"


def _readme_user_tests() -> str:
    """The test file README's "Testing your own code" shows, exactly as it is there."""
    section = README.read_text(encoding="utf-8").split("\nTesting your own code\n", 1)[1]
    lines = []
    for line in section.split(".. code-block:: python\n\n", 1)[1].splitlines():
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    return "\n".join(lines) + "\n"


#: A user's test file: the one README's "Testing your own code" shows.
USER_TESTS = _readme_user_tests()


def run_pytest(directory: Path, files: Dict[str, str], *args: str, env: Dict[str, str] = None
               ) -> "subprocess.CompletedProcess[str]":
    """pytest in a child process on ``files`` (written into ``directory``), as a user runs it.

    ``-p upclient.testing.plugin`` loads the plugin whether or not this
    environment's upclient was installed with its entry point (pytest loads
    it once either way: the entry point has the module's name).
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "upclient.testing.plugin", "-p", "no:cacheprovider", "-q", *args],
        cwd=str(directory),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def refused(address) -> bool:
    """Whether nothing listens on ``(host, port)`` any more."""
    try:
        socket.create_connection(address, timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


# -- the fixtures, in this suite ----------------------------------------------------------


@pytest.mark.parametrize(
    "name, scheme",
    [
        ("upclient_tus_server", "tus+http://127.0.0.1:"),
        ("upclient_community_server", "community+http://127.0.0.1:"),
        ("upclient_upyun_server", "upyun://op@svc"),
        ("upclient_fdfs_server", "fdfs://127.0.0.1:"),
    ],
)
def test_each_server_fixture_takes_a_put_and_tells_what_it_stored(request, name, scheme, make_file, tmp_path):
    server = request.getfixturevalue(name)
    assert isinstance(server, RunningServer) and server.url.startswith(scheme)
    path, digest = make_file(300 * KiB + 1)
    with server.client() as client:
        assert isinstance(client.store, upclient.MemoryStore)  # store=None: nothing in the user's state dir
        result = client.put(path)
    assert server.stored_sha256(result.id) == digest
    with pytest.raises(FileNotFoundError):
        server.stored_sha256(result.id + "-not-stored")
    # its directory is under the test's tmp_path
    assert tmp_path in Path(getattr(server.server, "directory", getattr(server.server, "root", ""))).parents


def test_settings_reach_the_client_over_the_fixtures_own(upclient_upyun_server, make_file, tmp_path):
    store = upclient.FileStore(tmp_path / "resume")
    path, digest = make_file(2 * 1024 * KiB + 5)
    with upclient_upyun_server.client(store=store, part_size=1024 * KiB) as client:
        assert client.store is store
        result = client.put(path, key="folder/big.bin")
    assert result.id == "folder/big.bin"
    assert upclient_upyun_server.stored_sha256(result.id) == digest
    with pytest.raises(upclient.errors.AuthError):
        with upclient_upyun_server.client(password="wrong") as client:
            client.put(b"x", key="x.txt")


def test_the_servers_fault_hooks_are_the_fixtures_own(upclient_community_server, make_file):
    upclient_community_server.fail_part(2, status=500)
    path, digest = make_file(300 * KiB)
    with upclient_community_server.client(part_size=64 * KiB) as client:
        result = client.put(path)
    assert upclient_community_server.stored_sha256(result.id) == digest
    assert [status for _, number, status in upclient_community_server.part_log if number == 2] == [500, 200]


def test_a_fault_proxy_in_front_of_tus(upclient_tus_server, upclient_fault_proxy, make_file):
    proxy = upclient_fault_proxy(upclient_tus_server)
    proxy.reset_after(100 * KiB, method="PATCH")
    path, digest = make_file(1024 * KiB)
    with upclient_tus_server.client(via=proxy, part_size=256 * KiB) as client:
        result = client.put(path)
    assert proxy.faults_fired == {"reset": 1}
    assert proxy.request_count("PATCH") >= 2  # the one cut off, and what followed
    assert upclient_tus_server.stored_sha256(result.id) == digest


def test_a_fault_proxy_in_front_of_upyun(upclient_upyun_server, upclient_fault_proxy, make_file):
    proxy = upclient_fault_proxy(upclient_upyun_server)
    proxy.respond(503, {"Retry-After": "0"}, method="PUT")
    path, digest = make_file(100 * KiB)
    with upclient_upyun_server.client(via=proxy) as client:
        result = client.put(path, key="through-the-proxy.bin")
    assert proxy.faults_fired == {"respond": 1} and proxy.request_count("PUT") == 2
    assert upclient_upyun_server.stored_sha256(result.id) == digest


def test_a_shaping_proxy_in_front_of_community(upclient_community_server, upclient_shaping_proxy, make_file):
    proxy = upclient_shaping_proxy(upclient_community_server, delay=0.001, rate=None)
    path, digest = make_file(100 * KiB)
    with upclient_community_server.client(via=proxy) as client:
        result = client.put(path)
    assert proxy.connections >= 1 and proxy.bytes_up > 0  # the API calls went through it
    assert upclient_community_server.stored_sha256(result.id) == digest


def test_fastdfs_cannot_be_put_behind_a_proxy(upclient_fdfs_server, upclient_fault_proxy):
    proxy = upclient_fault_proxy(upclient_fdfs_server)
    with pytest.raises(ValueError, match="fail\\(\\) and stall\\(\\)"):
        upclient_fdfs_server.client(via=proxy)


@pytest.mark.parametrize("kind", ["node", "python"])
def test_the_environment_picks_the_tus_server(kind, tmp_path, make_file):
    """``$UPCLIENT_TUS_SERVER`` picks the tus server of the fixture; ``.kind`` says which it is."""
    if kind == "node":
        reason = upclient.testing.TusNodeServer.unavailable_reason(installed=True)
        if reason:
            pytest.skip(reason)
    test = f'''
def test_kind(upclient_tus_server, tmp_path):
    assert upclient_tus_server.kind == {kind!r}
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    with upclient_tus_server.client() as client:
        result = client.put(path)
    print("stored", upclient_tus_server.stored_sha256(result.id))
'''
    run = run_pytest(tmp_path / "user", {"test_kind.py": test}, "-s", env={"UPCLIENT_TUS_SERVER": kind})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stored " + hashlib.sha256(b"x" * 1000).hexdigest() in run.stdout


# -- pytest on a user's test file ---------------------------------------------------------


def test_pytest_runs_a_users_tests_with_the_fixtures(tmp_path):
    run = run_pytest(tmp_path / "user", {"test_uploads.py": USER_TESTS})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def test_servers_and_proxies_are_stopped_after_a_failed_test(tmp_path):
    record = tmp_path / "addresses.json"
    test = f'''
import json

def test_fails(upclient_tus_server, upclient_community_server, upclient_upyun_server, upclient_fdfs_server,
               upclient_fault_proxy, upclient_shaping_proxy):
    servers = [upclient_tus_server, upclient_community_server, upclient_upyun_server, upclient_fdfs_server]
    proxies = [upclient_fault_proxy(upclient_tus_server), upclient_fault_proxy(upclient_upyun_server.server.url),
               upclient_shaping_proxy(upclient_community_server)]
    with open({str(record)!r}, "w") as f:
        json.dump({{"addresses": [s.address for s in servers] + [("127.0.0.1", p.port) for p in proxies],
                   "storage": upclient_fdfs_server.storage("group1"),
                   "pid": getattr(upclient_tus_server.server, "pid", None)}}, f)
    assert False, "a user's test failed"
'''
    run = run_pytest(tmp_path / "user", {"test_failing.py": test})
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout + run.stderr
    seen = json.loads(record.read_text())
    host, port = seen["storage"].rsplit(":", 1)
    for address in [*seen["addresses"], (host, int(port))]:
        assert refused(tuple(address)), address
    if seen["pid"] is not None:
        with pytest.raises(ProcessLookupError):
            os.kill(seen["pid"], 0)


def test_the_plugin_is_loaded_once_however_it_is_named(tmp_path):
    """The entry point, ``-p`` and ``pytest_plugins`` all name the same module: one registration."""
    conftest = 'pytest_plugins = ["upclient.testing.plugin"]\n'
    test = '''
def test_one(pytestconfig, upclient_fdfs_server):
    import upclient.testing.plugin as plugin
    names = [n for n, p in pytestconfig.pluginmanager.list_name_plugin() if p is plugin]
    assert names == ["upclient.testing.plugin"]
'''
    run = run_pytest(tmp_path / "user", {"conftest.py": conftest, "test_once.py": test})
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_suite_itself_has_the_plugin_once(pytestconfig):
    import upclient.testing.plugin as plugin

    assert [p for _, p in pytestconfig.pluginmanager.list_name_plugin() if p is plugin] == [plugin]

