"""Exit statuses tell a wrapper whether a retry can help, on every backend (issue 12, item 4).

``upclient`` runs as a subprocess, as a cron job would run it, against each
backend's real server: ``@tus/server`` (or ``resumable-upload``) and the
community, UPYUN and FastDFS emulators.  Credentials refused exit 3 (FastDFS
has none), an id the server does not have 4, a server answering 5xx or gone
5, a bad argument 2 before any request.  A fault proxy in front of an HTTP
server stands for a gateway that refuses credentials or fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from upclient.cli.exits import EPILOG, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_RETRY, EXIT_USAGE
from upclient.testing import FaultProxy, free_port

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: Dict[str, str]) -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([sys.executable, "-m", "upclient", *args], capture_output=True, env=env,
                          cwd=str(REPO), timeout=60)


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    """This checkout, a private state dir, and no server or credentials from the caller's environment."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("UPCLIENT_", "UPYUN_"))}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    e["XDG_STATE_HOME"] = str(tmp_path / "state")
    return e


@dataclass
class Target:
    """One backend's server as the command reaches it, and ids to ask it about."""

    name: str
    running: Any
    url: str
    flags: List[str]
    stored: str  # an id the server holds
    missing: str  # an id it held once, deleted since
    bad: str  # an id this backend refuses before any request
    wrong_credentials: List[str] = field(default_factory=list)  # flags that replace good ones

    def via(self, proxy: FaultProxy) -> List[str]:
        """``--from`` and flags that reach the server through ``proxy``."""
        if self.name == "tus":
            return ["--from", "tus+" + proxy.url_for(self.running.server.url), *self.flags]
        if self.name == "community":
            return ["--from", f"community+http://127.0.0.1:{proxy.port}", *self.flags]
        assert self.name == "upyun"
        return ["--from", self.url, *self.flags, "--endpoint", f"127.0.0.1:{proxy.port}"]

    def through(self, proxy: FaultProxy, id: str) -> str:
        """``id`` as the server's clients see it through ``proxy`` (tus ids are URLs)."""
        return proxy.url_for(id) if self.name == "tus" else id


def _target(name: str, running: Any) -> Target:
    with running.client() as client:
        stored = client.put(b"kept " * 100, key="kept.bin").id
        missing = client.put(b"gone " * 100, key="gone.bin").id
        client.delete(missing)
    flags = running.cli_flags()
    bad = {
        "tus": "http://127.0.0.2:9/files/elsewhere",  # another origin: credentials would follow it
        "community": "../../admin/delete",
        "upyun": "bad\x01key",
        "fdfs": "not-a-fastdfs-id",
    }[name]
    wrong: List[str] = []
    if name == "community":
        wrong = ["--token", "not-the-token"]
    elif name == "upyun":
        wrong = ["--endpoint", str(running.server.endpoint), "--password", "not-the-password"]
    return Target(name, running, running.url, flags, stored, missing, bad, wrong)


@pytest.fixture(params=["tus", "community", "upyun", "fdfs"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    yield _target(request.param, request.getfixturevalue(f"upclient_{request.param}_server"))


def _status(r: "subprocess.CompletedProcess[bytes]") -> int:
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    return r.returncode


def test_an_id_the_server_holds_exits_0_and_one_it_does_not_exits_4(target, env):
    assert _status(run_cli("info", target.stored, "--from", target.url, *target.flags, env=env)) == 0
    r = run_cli("info", target.missing, "--from", target.url, *target.flags, env=env)
    assert _status(r) == EXIT_NOT_FOUND, r.stderr.decode()
    r = run_cli("get", target.missing, "-", "--from", target.url, *target.flags, env=env)
    assert _status(r) == EXIT_NOT_FOUND, r.stderr.decode()


def test_a_bad_id_is_a_usage_error_before_any_request(target, env, upclient_fault_proxy):
    if target.name == "fdfs":  # not HTTP: no proxy can count its requests
        r = run_cli("info", target.bad, "--from", target.url, *target.flags, env=env)
        assert _status(r) == EXIT_USAGE, r.stderr.decode()
        return
    proxy = upclient_fault_proxy(target.running)
    r = run_cli("info", target.bad, *target.via(proxy), env=env)
    assert _status(r) == EXIT_USAGE, r.stderr.decode()
    assert proxy.request_log == []


def test_credentials_refused_exit_3(target, env, upclient_fault_proxy):
    if target.name == "fdfs":
        pytest.skip("FastDFS has no credentials")
    if target.name == "tus":  # the tus server checks none: a gateway in front of it refuses them
        proxy = upclient_fault_proxy(target.running)
        proxy.respond(401, {"WWW-Authenticate": "Bearer"}, times=None)
        r = run_cli("info", proxy.url_for(target.stored), *target.via(proxy), "-H", "Authorization: Bearer no",
                    env=env)
    else:
        r = run_cli("info", target.stored, "--from", target.url, *target.wrong_credentials, env=env)
    assert _status(r) == EXIT_AUTH, r.stderr.decode()
    assert b"AuthError" in r.stderr


def test_a_server_answering_5xx_exits_5(target, env, upclient_fault_proxy):
    if target.name == "fdfs":
        pytest.skip("FastDFS is not HTTP: see the test of a server that is gone")
    proxy = upclient_fault_proxy(target.running)
    proxy.respond(503, {}, times=None)
    r = run_cli("info", target.through(proxy, target.stored), *target.via(proxy), "--retries", "1", env=env)
    assert _status(r) == EXIT_RETRY, r.stderr.decode()
    assert len(proxy.request_log) == 2  # tried, and tried again once


def test_a_server_that_is_gone_exits_5(target, env):
    port = free_port()  # nothing listens there
    if target.name == "tus":
        host, upstream_port = target.running.address
        id = target.stored.replace(f"{host}:{upstream_port}/", f"127.0.0.1:{port}/")
        flags = ["--from", f"tus+http://127.0.0.1:{port}/files/"]
    elif target.name == "community":
        id, flags = target.stored, ["--from", f"community+http://127.0.0.1:{port}", *target.flags]
    elif target.name == "upyun":
        id, flags = target.stored, ["--from", target.url, *target.flags, "--endpoint", f"127.0.0.1:{port}"]
    else:
        id, flags = target.stored, ["--from", f"fdfs://127.0.0.1:{port}"]
    r = run_cli("info", id, *flags, "--retries", "0", env=env)
    assert _status(r) == EXIT_RETRY, r.stderr.decode()


@pytest.mark.parametrize("argv", [["info"], ["get", "ID", "--from"], ["rm", "ID", "--no-such-flag"], ["frobnicate"]])
def test_usage_exits_2(argv, env):
    r = run_cli(*argv, env=env)
    assert _status(r) == EXIT_USAGE and r.stderr


@pytest.mark.parametrize("verb", [None, "put", "get", "info", "rm", "abort", "ls", "mkdir", "mv", "cp", "purge",
                                  "sync"])
def test_help_lists_the_exit_statuses(verb, env):
    r = run_cli(*([verb] if verb else []), "--help", env=env)
    assert r.returncode == 0
    assert EPILOG in r.stdout.decode()  # as written, not rewrapped


def test_every_verb_of_the_grammar_has_a_function():
    """A verb args.py parses but main.py does not run was a KeyError and a traceback (exit 1)."""
    from upclient.cli.args import build_parser
    from upclient.cli.main import VERBS

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "verb"]
    assert set(subparsers.choices) == set(VERBS)


def test_sync_runs_from_the_command(upclient_fdfs_server, env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("sync", str(empty), upclient_fdfs_server.url, env=env)
    assert _status(r) == 0, r.stderr.decode()
