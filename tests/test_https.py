"""HTTPS end to end on 127.0.0.1: every HTTP backend against a real server that terminates TLS itself.

Certificates come from :class:`upclient.testing.TLSCertificates` (a throwaway
CA from ``trustme``). The servers are the reference tus server
(``@tus/server`` over node's ``https``) and the community and UPYUN
emulators, each started once per module; every upload is checked on the
server side by the digest of what it stored.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

import upclient
from upclient import errors
from upclient.testing import CommunityServer, TLSCertificates, TusNodeServer, UpyunServer

from .conftest import KiB, MiB, sha256_bytes
from .contract import HookedFileSource, resume_points

REPO = Path(__file__).resolve().parent.parent
TOKEN = "https-t0ken"
PASSWORD = "https-pa55"
ATTEMPTS = 4


def no_retry_wait() -> upclient.RetryPolicy:
    """Several attempts, no waiting between them: a retried TLS failure would show as more handshakes."""
    return upclient.RetryPolicy(attempts=ATTEMPTS, backoff=0)


# -- servers, once per module ---------------------------------------------------------


@pytest.fixture(scope="module")
def certs() -> Iterator[TLSCertificates]:
    with TLSCertificates() as made:
        yield made


def node_or_skip() -> None:
    reason = TusNodeServer.unavailable_reason()
    if reason and os.environ.get("CI"):
        pytest.fail(f"@tus/server is not installed: {reason} (run make test)")
    if reason:
        pytest.skip(f"@tus/server not installed: {reason}; `make test` installs it")


@pytest.fixture(scope="module")
def tus_server(certs, tmp_path_factory) -> Iterator[TusNodeServer]:
    node_or_skip()
    with TusNodeServer(tmp_path_factory.mktemp("tus-https"), tls=certs) as server:
        yield server


@pytest.fixture(scope="module")
def community_server(certs, tmp_path_factory) -> Iterator[CommunityServer]:
    with CommunityServer(tmp_path_factory.mktemp("community-https"), tokens={TOKEN},
                         min_part_size=64 * KiB, tls=certs) as server:
        yield server


@pytest.fixture(scope="module")
def upyun_server(certs, tmp_path_factory) -> Iterator[UpyunServer]:
    with UpyunServer(tmp_path_factory.mktemp("upyun-https"), service="svc", operator="op",
                     password=PASSWORD, tls=certs) as server:
        yield server


@pytest.fixture(scope="module")
def strict_tus_server(certs, tmp_path_factory) -> Iterator[TusNodeServer]:
    """@tus/server that requires a client certificate signed by the test CA."""
    node_or_skip()
    with TusNodeServer(tmp_path_factory.mktemp("tus-mtls"), tls=certs, require_client_cert=True) as server:
        yield server


@pytest.fixture(scope="module")
def strict_community_server(certs, tmp_path_factory) -> Iterator[CommunityServer]:
    """The community emulator, requiring a client certificate signed by the test CA."""
    context = certs.server_context(require_client_cert=True)
    with CommunityServer(tmp_path_factory.mktemp("community-mtls"), tokens={TOKEN},
                         min_part_size=64 * KiB, tls=context) as server:
        yield server


@dataclass
class Target:
    """One backend's HTTPS server and how a client reaches it and reads what it stored."""

    kind: str
    server: Any
    part: int

    def client(self, **kw: Any) -> upclient.Client:
        kw.setdefault("store", None)
        kw.setdefault("part_size", self.part)
        if self.kind == "tus":
            return upclient.Client("tus+" + self.server.url, **kw)
        if self.kind == "community":
            return upclient.Client("community+" + self.server.url, token=TOKEN, **kw)
        return upclient.Client("upyun://op@svc", password=PASSWORD, endpoint=self.server.endpoint, **kw)

    def stored_sha256(self, result: Any) -> str:
        if self.kind == "upyun":
            return self.server.stored_sha256(result.key)  # type: ignore[no-any-return]
        return self.server.stored_sha256(result.id)  # type: ignore[no-any-return]

    def handshake_failures(self) -> int:
        """Failed TLS handshakes the server saw (the emulators count them, node logs them)."""
        if isinstance(self.server, TusNodeServer):
            return self.server.output().count("TLS handshake failed")
        assert self.server.wait_idle(10, disconnected=True)
        return len(self.server.tls_failures)


PARTS = {"tus": 256 * KiB, "community": 256 * KiB, "upyun": MiB}  # UPYUN parts are whole MiB
#: How many parts the resumed file has: tus sends one stream read in 1 MiB blocks, so it needs more.
RESUME_PARTS = {"tus": 24, "community": 8, "upyun": 8}


@pytest.fixture(params=sorted(PARTS))
def target(request) -> Target:
    server = request.getfixturevalue(f"{request.param}_server")
    return Target(request.param, server, PARTS[request.param])


@pytest.fixture(params=["community", "tus"])
def strict(request) -> Target:
    server = request.getfixturevalue(f"strict_{request.param}_server")
    return Target(request.param, server, 256 * KiB)


# -- verification ---------------------------------------------------------------------


def test_a_server_of_an_unknown_ca_is_refused_once_with_advice(target, make_file):
    path, _ = make_file(3 * target.part + 1, name="refused.bin")
    before = target.handshake_failures()
    with target.client(retry=no_retry_wait()) as client, pytest.raises(errors.TLSError) as caught:
        client.put(path)
    message = str(caught.value)
    assert "verify=" in message and "REQUESTS_CA_BUNDLE" in message, message
    assert not caught.value.retryable and isinstance(caught.value, errors.NetworkError)
    if target.kind != "tus":  # node does not report a client's refusal of its certificate
        assert target.handshake_failures() - before == 1


def test_put_and_get_with_verify_naming_the_ca_file(target, certs, make_file):
    path, digest = make_file(2 * target.part + 7, name="verified.bin")
    with target.client(verify=str(certs.ca_pem)) as client:
        result = client.put(path)
        assert result.size == 2 * target.part + 7
        assert target.stored_sha256(result) == digest
        assert sha256_bytes(client.get(result.id)) == digest


def test_requests_ca_bundle_in_the_environment_is_trusted(target, certs, make_file, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs.ca_pem))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    path, digest = make_file(target.part + 1, name="from-env.bin")
    with target.client() as client:
        result = client.put(path)
        assert sha256_bytes(client.get(result.id)) == digest
    assert target.stored_sha256(result) == digest


def test_resume_over_https_sends_only_what_the_server_lacks(target, certs, make_file, store):
    part = target.part
    size = RESUME_PARTS[target.kind] * part
    path, digest = make_file(size, name="resumed.bin")
    cancel = threading.Event()

    def hook(offset: int) -> None:
        if offset >= size // 2:
            cancel.set()

    with target.client(verify=str(certs.ca_pem), store=store, concurrency=2) as client:
        with HookedFileSource(path, hook) as source, pytest.raises(errors.Cancelled):
            client.put(source, cancel=cancel)
        assert resume_points(store), "the interrupted upload left no resume point"
        result = client.put(path)
        assert result.resumed
        assert result.sent_bytes <= size // 2 + 2 * part  # at most the two parts in flight again
        assert target.stored_sha256(result) == digest
        assert sha256_bytes(client.get(result.id)) == digest
    assert not resume_points(store)


# -- verify=False, once ---------------------------------------------------------------

UNVERIFIED_CLIENT = textwrap.dedent(
    """
    import hashlib, json, logging, sys, warnings
    import upclient

    url, token, path = sys.argv[1:4]
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append([record.name, record.levelno, record.getMessage()])

    logging.getLogger("upclient").addHandler(Keep())
    logging.getLogger("upclient").setLevel(logging.DEBUG)
    warnings.simplefilter("always")  # a warning per request would show as many
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with upclient.Client(url, token=token, verify=False, store=None, part_size=64 * 1024,
                             concurrency=2) as client:
            result = client.put(path)
            data = client.get(result.id)
    print(json.dumps({"id": result.id, "records": records,
                      "warnings": [w.category.__name__ for w in caught],
                      "sha256": hashlib.sha256(data).hexdigest()}))
    """
)


def test_verify_false_works_and_is_warned_about_once(community_server, make_file, tmp_path):
    """Run in a child process: the warning is once per process, whatever other tests did before."""
    path, digest = make_file(10 * 64 * KiB + 3, name="unverified.bin")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("REQUESTS_CA_BUNDLE", None)
    env.pop("CURL_CA_BUNDLE", None)
    parts_before = community_server.part_puts
    run = subprocess.run(
        [sys.executable, "-c", UNVERIFIED_CLIENT, "community+" + community_server.url, TOKEN, str(path)],
        capture_output=True, env=env, cwd=str(tmp_path), timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()
    report = json.loads(run.stdout.decode().splitlines()[-1])
    assert community_server.stored_sha256(report["id"]) == digest
    assert report["sha256"] == digest
    assert community_server.part_puts - parts_before >= 11  # many requests...
    warned = [r for r in report["records"] if r[1] >= 30]  # logging.WARNING
    assert len(warned) == 1, warned  # ... one warning
    assert warned[0][0].startswith("upclient") and "verif" in warned[0][2]
    assert "InsecureRequestWarning" not in report["warnings"]
    assert b"InsecureRequestWarning" not in run.stderr


@pytest.fixture
def cli_env(tmp_path) -> Dict[str, str]:
    env = dict(os.environ)
    for name in ("UPCLIENT_URL", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(REPO)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def run_cli(*args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "upclient", *args], capture_output=True, env=env,
                          cwd=str(REPO), timeout=120)


def test_cli_refuses_an_unknown_ca_and_says_how_to_fix_it(tus_server, make_file, cli_env):
    path, _ = make_file(1000, name="cli-refused.bin")
    refused = run_cli("put", str(path), "--to", "tus+" + tus_server.url, "--json", env=cli_env)
    assert refused.returncode == 1, refused.stderr.decode()
    assert b"--insecure" in refused.stderr and b"verify=" in refused.stderr


def test_cli_insecure_uploads_and_warns_once(tus_server, make_file, cli_env):
    path, digest = make_file(3 * 256 * KiB + 1, name="cli.bin")
    url = "tus+" + tus_server.url
    done = run_cli("put", str(path), "--to", url, "--json", "--part-size", "256K", "--insecure", env=cli_env)
    assert done.returncode == 0, done.stderr.decode()
    line = json.loads(done.stdout.decode().splitlines()[0])
    assert tus_server.stored_sha256(line["id"]) == digest
    stderr = done.stderr.decode()
    assert stderr.count("not verified") == 1, stderr
    assert "InsecureRequestWarning" not in stderr


# -- mutual TLS -----------------------------------------------------------------------


def test_a_client_certificate_gives_mutual_tls(strict, certs, make_file):
    path, digest = make_file(3 * strict.part + 5, name="mutual.bin")
    with strict.client(verify=str(certs.ca_pem), cert=certs.client_cert_pair) as client:
        result = client.put(path)
        assert sha256_bytes(client.get(result.id)) == digest
    assert strict.stored_sha256(result) == digest


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("times", [1, 10], ids=["once", "ten-clients"])
def test_without_a_client_certificate_the_server_refuses_and_it_is_tried_once(strict, certs, make_file, times):
    """Every refused client learns why: with TLS 1.3 it sends its request before the refusal
    arrives, and a server that closed on those unread bytes would reset the alert away."""
    path, _ = make_file(strict.part + 1, name="no-cert.bin")
    before = strict.handshake_failures()
    for _ in range(times):
        with strict.client(verify=str(certs.ca_pem), retry=no_retry_wait()) as client:
            with pytest.raises(errors.TLSError) as caught:
                client.put(path)
        assert "cert=" in str(caught.value), str(caught.value)  # the advice: present a client certificate
        assert not caught.value.retryable
    assert wait_for(lambda: strict.handshake_failures() >= before + times)
    assert strict.handshake_failures() - before == times


# -- the emulators' handshake ---------------------------------------------------------


def test_a_client_stalling_its_handshake_holds_up_no_one_and_is_cut_after_the_timeout(certs, make_file, tmp_path):
    path, digest = make_file(2 * 64 * KiB + 1, name="beside-a-staller.bin")
    server = CommunityServer(tmp_path / "community", tokens={TOKEN}, min_part_size=64 * KiB, tls=certs)
    server.handshake_timeout = 120.0  # far longer than the upload takes
    with server, socket.create_connection(("127.0.0.1", server.port)) as staller:
        with upclient.Client("community+" + server.url, token=TOKEN, store=None, part_size=64 * KiB,
                             verify=str(certs.ca_pem)) as client:
            result = client.put(path)
        assert server.stored_sha256(result.id) == digest
        staller.setblocking(False)
        with pytest.raises(BlockingIOError):  # still open: its handshake did not stand in the way
            staller.recv(1)

        server.handshake_timeout = 0.2
        with socket.create_connection(("127.0.0.1", server.port)) as second:
            second.settimeout(30)  # a generous bound on the 0.2 s deadline
            assert second.recv(1) == b""  # the server gave up on it and closed
        assert any("timed out" in reason for reason in server.tls_failures), server.tls_failures


def test_the_emulators_hand_out_https_addresses(community_server, upyun_server, certs, make_file):
    assert upyun_server.endpoint == f"https://127.0.0.1:{upyun_server.port}"
    path, digest = make_file(1000, name="where.bin")
    with Target("community", community_server, 64 * KiB).client(verify=str(certs.ca_pem)) as client:
        result = client.put(path)
    record = community_server.file_object(result.id)
    for name in ("oss_url", "cdn_url", "imagekit_url"):
        assert record[name].startswith(f"https://127.0.0.1:{community_server.port}/"), record[name]
    assert community_server.stored_sha256(result.id) == digest
