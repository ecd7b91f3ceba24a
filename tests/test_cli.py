"""The ``upclient`` command, run as a subprocess against a real local tus server.

Every test runs ``python -m upclient ...`` the way a user or a cron job
would, against ``resumable-upload`` 0.3.0 on 127.0.0.1, and checks what the
server really holds by downloading it again.  Resume points go to temporary
directories (``--store`` and ``XDG_STATE_HOME``), never to the user's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

import upclient
from upclient.testing.servers import ResumableUploadServer, free_port

# The make_file fixture comes from conftest as well.
from .conftest import MiB, sha256_file

REPO = Path(__file__).resolve().parent.parent
SECRET = "Bearer s3cr3t-t0ken-do-not-print"
INTERRUPTED = "interrupted; run the same command again to resume"

pytestmark = pytest.mark.skipif(
    ResumableUploadServer.unavailable_reason() is not None,
    reason=str(ResumableUploadServer.unavailable_reason()),
)


# -- fixtures and helpers -------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResumableUploadServer]:
    """One server for the module; stopped (and its files removed) at the end."""
    with ResumableUploadServer(tmp_path_factory.mktemp("cli-server")) as srv:
        yield srv


@pytest.fixture
def url(server: ResumableUploadServer) -> str:
    return "tus+" + server.url


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    """The environment of every CLI process: this checkout, a private state dir, no URL."""
    e = dict(os.environ)
    e.pop("UPCLIENT_URL", None)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    e["XDG_STATE_HOME"] = str(tmp_path / "state")  # the default FileStore lands here
    e["PYTHONUNBUFFERED"] = "1"
    return e


def run_cli(
    *args: str, env: Dict[str, str], input: Optional[bytes] = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "upclient", *args],
        input=input,
        capture_output=True,
        env=env,
        cwd=str(REPO),
        timeout=timeout,
    )


def start_cli(*args: str, env: Dict[str, str]) -> subprocess.Popen:
    # SIGINT back to its default, so the child's Python turns it into KeyboardInterrupt
    # even when the test runner was started with SIGINT ignored (e.g. in the background).
    return subprocess.Popen(
        [sys.executable, "-m", "upclient", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=str(REPO),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.fixture
def processes() -> Iterator[List[subprocess.Popen]]:
    """Processes a test starts; killed at the end if still running, whatever happened."""
    procs: List[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


def json_lines(stdout: bytes) -> List[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]


def server_sha256(url: str, upload_id: str, tmp_path: Path) -> str:
    """Download with the library and hash: what the server really holds."""
    dest = tmp_path / f"check-{hashlib.sha1(upload_id.encode()).hexdigest()[:8]}"
    with upclient.Client(url, store=None) as client:
        client.get(upload_id, dest)
    return sha256_file(dest)


def stored_bytes(server: ResumableUploadServer) -> int:
    """Bytes in the server's upload directory (its database excluded)."""
    total = 0
    for entry in os.scandir(server.directory):
        if entry.is_file() and ".sqlite3" not in entry.name:
            try:
                total += entry.stat().st_size
            except FileNotFoundError:  # removed meanwhile (a concatenation)
                pass
    return total


def wait_until_stored(
    server: ResumableUploadServer, proc: subprocess.Popen, at_least: int, timeout: float = 30
) -> None:
    """Poll the server's directory until ``at_least`` more bytes are there."""
    deadline = time.monotonic() + timeout
    while stored_bytes(server) < at_least:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the upload ended (status {proc.returncode}) before it could be stopped: {err.decode()}")
        if time.monotonic() > deadline:
            pytest.fail("the upload made no progress")
        time.sleep(0.005)


# -- put and get ----------------------------------------------------------------------


def test_put_one_file_then_get_it_back(url, env, make_file, tmp_path):
    path, digest = make_file(3 * MiB + 1, "one.bin")
    r = run_cli("put", str(path), "--to", url, "--json", "--part-size", "1M", "--store", str(tmp_path / "s"), env=env)
    assert r.returncode == 0, r.stderr.decode()
    [line] = json_lines(r.stdout)
    assert line["ok"] is True
    assert line["file"] == str(path)
    assert line["size"] == 3 * MiB + 1
    assert line["resumed"] is False
    assert line["sent_bytes"] == 3 * MiB + 1
    assert line["url"] and line["id"]
    assert isinstance(line["elapsed"], float)

    out = tmp_path / "copy.bin"
    g = run_cli("get", line["id"], str(out), "--from", url, env=env)
    assert g.returncode == 0, g.stderr.decode()
    assert sha256_file(out) == digest

    g = run_cli("get", line["id"], "--from", url, "--offset", "1M", "--length", "10", env=env)  # to stdout
    assert g.returncode == 0, g.stderr.decode()
    assert g.stdout == path.read_bytes()[MiB : MiB + 10]


def test_put_several_files(url, env, make_file, tmp_path):
    files = [make_file(0, "empty.bin"), make_file(256 * 1024 + 1, "boundary.bin"), make_file(2 * MiB, "two.bin")]
    r = run_cli(
        "put", *(str(p) for p, _ in files), "--to", url, "--json",
        "--part-size", "256K", "--max-files", "2", "--concurrency", "2", env=env,
    )
    assert r.returncode == 0, r.stderr.decode()
    lines = json_lines(r.stdout)
    assert sorted(x["file"] for x in lines) == sorted(str(p) for p, _ in files)
    by_file = {x["file"]: x for x in lines}
    for path, digest in files:
        line = by_file[str(path)]
        assert line["ok"] and line["size"] == path.stat().st_size
        assert server_sha256(url, line["id"], tmp_path) == digest


def test_human_and_quiet_output(url, env, make_file):
    path, _ = make_file(1000, "small.txt")
    r = run_cli("put", str(path), "--to", url, env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert f"{path} -> http://" in r.stdout.decode()

    q = run_cli("put", str(path), "--to", url, "--quiet", env=env)
    assert q.returncode == 0
    [upload_id] = q.stdout.decode().split()
    assert upload_id.startswith("http://127.0.0.1:")
    assert q.stderr == b""


def test_key_metadata_info_and_rm_with_env_url(url, env, make_file):
    path, _ = make_file(5000, "x.bin")
    env = dict(env, UPCLIENT_URL=url)
    r = run_cli("put", str(path), "--key", "named.bin", "-m", "owner=ops", "--metadata", "note=a b=c",
                "--json", env=env)
    assert r.returncode == 0, r.stderr.decode()
    upload_id = json_lines(r.stdout)[0]["id"]

    i = run_cli("info", upload_id, "--json", env=env)
    assert i.returncode == 0, i.stderr.decode()
    info = json_lines(i.stdout)[0]
    assert info["size"] == 5000 and info["complete"] is True
    assert info["metadata"]["filename"] == "named.bin"
    assert info["metadata"]["owner"] == "ops"
    assert info["metadata"]["note"] == "a b=c"
    plain = run_cli("info", upload_id, env=env)
    assert plain.returncode == 0 and b"named.bin" in plain.stdout

    assert run_cli("rm", upload_id, env=env).returncode == 0
    gone = run_cli("info", upload_id, env=env)
    assert gone.returncode == 4  # not found
    assert b"NotFound" in gone.stderr or b"UploadExpired" in gone.stderr


def test_stdin_is_uploaded_as_a_stream(url, env, tmp_path):
    data = os.urandom(3 * MiB + 17)
    r = run_cli("put", "-", "--key", "stream.bin", "--part-size", "1M", "--to", url, "--json",
                env=env, input=data)
    assert r.returncode == 0, r.stderr.decode()
    [line] = json_lines(r.stdout)
    assert line["ok"] and line["size"] == len(data) and line["file"] == "-"
    assert server_sha256(url, line["id"], tmp_path) == hashlib.sha256(data).hexdigest()


def test_ls_says_tus_cannot_list(url, env):
    r = run_cli("ls", "--from", url, env=env)
    assert r.returncode == 1
    assert b"cannot list" in r.stderr and b"Unsupported" in r.stderr


# -- errors and exit codes ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["put"],
        ["frobnicate"],
        ["put", "{file}", "--to", "{url}", "--part-size", "8X"],
        ["put", "{file}", "--to", "{url}", "--concurrency", "0"],
        ["put", "{file}", "{file}", "--to", "{url}", "--key", "k"],
        ["put", "{file}", "--to", "{url}", "--metadata", "novalue"],
        ["put", "{file}"],  # no --to and no UPCLIENT_URL
        ["put", "{file}", "--to", "ftp://127.0.0.1/files/"],
        ["put", "{file}", "--to", "{url}", "--no-resume", "--store", "x"],
        ["put", "-", "-", "--to", "{url}"],
    ],
)
def test_usage_errors_exit_2(args, url, env, make_file):
    path, _ = make_file(10, "u.bin")
    argv = [a.format(file=path, url=url) for a in args]
    r = run_cli(*argv, env=env)
    assert r.returncode == 2, (argv, r.stderr.decode())
    assert r.stderr  # says why
    assert b"Traceback" not in r.stderr


def test_a_missing_file_is_reported_and_the_others_go_on(url, env, make_file, tmp_path):
    """Issue 12, item 3: one missing file stops nothing, and the exit status says "not found"."""
    path, digest = make_file(10, "there.bin")
    r = run_cli("put", str(path), "/no/such/file.bin", "--to", url, "--json", env=env)
    assert r.returncode == 4, r.stderr.decode()
    assert b"no such file: /no/such/file.bin" in r.stderr
    lines = {line["file"]: line for line in json_lines(r.stdout)}
    assert lines["/no/such/file.bin"]["ok"] is False
    assert lines[str(path)]["ok"] is True
    assert server_sha256(url, lines[str(path)]["id"], tmp_path) == digest


def test_bad_header_value_is_not_echoed(url, env, make_file):
    path, _ = make_file(10, "h.bin")
    r = run_cli("put", str(path), "--to", url, "--header", "Bad Header " + SECRET, env=env)
    assert r.returncode == 2
    assert SECRET.encode() not in r.stderr + r.stdout


def test_unreachable_server_exits_5(env, make_file):
    path, _ = make_file(10, "n.bin")
    closed = f"tus+http://127.0.0.1:{free_port()}/files/"  # nothing listens there
    r = run_cli("put", str(path), "--to", closed, "--json", "--retries", "0", "-vv",
                "-H", f"Authorization: {SECRET}", env=env)
    assert r.returncode == 5, r.stderr.decode()  # a retry may help
    [line] = json_lines(r.stdout)
    assert line["ok"] is False
    assert line["error"]["type"] == "NetworkError"
    assert line["error"]["message"]
    assert b"Traceback" not in r.stderr
    for secret in (SECRET, SECRET.split()[1]):
        assert secret.encode() not in r.stdout + r.stderr


def test_headers_reach_the_server_and_are_not_logged(url, env, make_file, tmp_path):
    path, digest = make_file(2 * MiB, "auth.bin")
    r = run_cli("put", str(path), "--to", url, "-vv", "--part-size", "512K", "--json",
                "-H", f"Authorization: {SECRET}", "-H", "X-Trace: abc", env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert b"DEBUG" in r.stderr  # verbose output is there...
    assert SECRET.split()[1].encode() not in r.stderr + r.stdout  # ...without the secret
    assert server_sha256(url, json_lines(r.stdout)[0]["id"], tmp_path) == digest


def test_version():
    r = subprocess.run([sys.executable, "-m", "upclient", "--version"], capture_output=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(b"upclient ")


# -- progress bar on a terminal -------------------------------------------------------


def test_progress_bar_on_a_terminal(url, env, make_file):
    path, _ = make_file(4 * MiB, "tty.bin")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    chunks: List[bytes] = []

    def drain() -> None:  # keep the pty from filling up
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "upclient", "put", str(path), "--to", url, "--part-size", "512K"],
            stdout=subprocess.PIPE, stderr=slave, env=env, cwd=str(REPO), timeout=60,
        )
    finally:
        os.close(slave)
    reader.join(5)
    os.close(master)
    bar = b"".join(chunks).decode(errors="replace")
    assert r.returncode == 0, bar
    assert "tty.bin" in bar and "100%" in bar and "4.0 MiB/4.0 MiB" in bar
    assert b" -> http://" in r.stdout  # the result line is on stdout, not in the bar


# -- interruptions and resume ---------------------------------------------------------


def test_resume_after_sigkill(url, env, make_file, server, tmp_path, processes):
    size = 48 * MiB
    path, digest = make_file(size, "big.bin")
    cmd = ["put", str(path), "--to", url, "--json", "--part-size", "512K", "--concurrency", "2",
           "--store", str(tmp_path / "resume")]
    base = stored_bytes(server)
    first = start_cli(*cmd, env=env)
    processes.append(first)
    wait_until_stored(server, first, base + size // 3)
    first.kill()  # SIGKILL: no chance to clean up or save anything more
    first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL

    second = run_cli(*cmd, env=env)
    assert second.returncode == 0, second.stderr.decode()
    [line] = json_lines(second.stdout)
    assert line["resumed"] is True
    assert line["size"] == size
    assert 0 < line["sent_bytes"] < size * 0.8  # about a third was kept
    assert server_sha256(url, line["id"], tmp_path) == digest


def test_sigint_exits_130_and_the_next_run_resumes(url, env, make_file, server, tmp_path, processes):
    size = 48 * MiB
    path, digest = make_file(size, "int.bin")
    cmd = ["put", str(path), "--to", url, "--part-size", "512K", "--concurrency", "2",
           "--store", str(tmp_path / "resume")]
    base = stored_bytes(server)
    first = start_cli(*cmd, env=env)
    processes.append(first)
    wait_until_stored(server, first, base + size // 4)
    sent_at = time.monotonic()
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=20)
    assert first.returncode == 130, err.decode()
    assert time.monotonic() - sent_at < 10
    assert INTERRUPTED in err.decode()
    assert b"Traceback" not in err

    second = run_cli(*cmd, "--json", env=env)
    assert second.returncode == 0, second.stderr.decode()
    [line] = json_lines(second.stdout)
    assert line["resumed"] is True and line["sent_bytes"] < size
    assert server_sha256(url, line["id"], tmp_path) == digest


def test_abort_of_a_local_file_gives_up_its_interrupted_upload(url, env, make_file, tmp_path):
    import threading

    import upclient
    from upclient import errors

    from .contract import HookedFileSource

    path, _ = make_file(8 * MiB)
    store_dir = tmp_path / "store"
    cancel = threading.Event()
    with upclient.Client(url, store=upclient.FileStore(store_dir), part_size=1 * MiB) as client:
        with HookedFileSource(path, lambda off: off >= 2 * MiB and cancel.set()) as src:
            with pytest.raises(errors.Cancelled):
                client.put(src, cancel=cancel)
    assert list(upclient.FileStore(store_dir).keys())
    proc = run_cli("abort", str(path), "--from", url, "--store", str(store_dir), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.decode().splitlines()[0]) == {"file": str(path), "ok": True, "aborted": 1}
    assert not list(upclient.FileStore(store_dir).keys())


def test_backend_options_and_credentials_reach_the_backend_and_never_the_output(url, env, make_file):
    path, _ = make_file(3 * MiB)
    proc = run_cli("put", str(path), "--to", url, "-o", "concat=false", "--part-size", "1M", "--json",
                   "--token", "sekrit-token-value", "-vv", env=env)
    # tus takes no token: a clear usage error that names the option, and not the secret
    assert proc.returncode == 2
    assert b"token" in proc.stderr and b"sekrit-token-value" not in proc.stderr + proc.stdout
    proc = run_cli("put", str(path), "--to", url, "-o", "concat=false", "-o", "nonsense=1", env=env)
    assert proc.returncode == 2 and b"nonsense" in proc.stderr
    proc = run_cli("put", str(path), "--to", url, "-o", "concat=false", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.decode().splitlines()[0])["size"] == 3 * MiB


def test_put_to_the_community_api_with_a_category_then_dedup(env, make_file, tmp_path):
    from upclient.testing.community import CommunityServer

    path, digest = make_file(2 * MiB)
    video = path.rename(path.with_suffix(".mp4"))
    with CommunityServer(tmp_path / "community", tokens={"cli-token-123"}, min_part_size=256 * 1024) as server:
        url = "community+" + server.url
        args = ("put", str(video), "--to", url, "--category", "video", "--json", "--part-size", "512K")
        first = run_cli(*args, env=dict(env, UPCLIENT_TOKEN="cli-token-123"))
        assert first.returncode == 0, first.stderr
        one = json.loads(first.stdout.decode().splitlines()[0])
        assert server.stored_sha256(one["id"]) == digest
        assert server.file_object(one["id"])["category"] == "video"
        second = run_cli(*args, env=dict(env, UPCLIENT_TOKEN="cli-token-123"))
        two = json.loads(second.stdout.decode().splitlines()[0])
        assert second.returncode == 0 and two["id"] == one["id"] and two["sent_bytes"] == 0
        assert (one["deduplicated"], two["deduplicated"]) == (False, True)
        assert b"cli-token-123" not in first.stdout + first.stderr + second.stdout + second.stderr


# -- Ctrl-C against a server that never answers ----------------------------------------


class MuteListener:
    """A TCP listener on 127.0.0.1 that accepts and never answers.

    With ``reads=True`` it reads and drops what arrives, so the client waits
    for an answer; with ``reads=False`` it never reads, so a large body fills
    the socket buffers and the client's send blocks.
    """

    def __init__(self, reads: bool) -> None:
        self.reads = reads
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.received = 0
        self.conns: List[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()
            if self.reads:
                threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._stop:
                data = conn.recv(65536)
                if not data:
                    return
                self.received += len(data)

    def close(self) -> None:
        self._stop = True
        for s in [self.sock, *self.conns]:
            with contextlib.suppress(OSError):
                s.close()


def _mute_target(scheme: str, port: int) -> List[str]:
    """``--to`` and credentials for ``scheme`` pointing at 127.0.0.1:port."""
    if scheme == "tus":
        return ["--to", f"tus+http://127.0.0.1:{port}/files/"]
    if scheme == "community":
        return ["--to", f"community+http://127.0.0.1:{port}", "--token", "t0ken"]
    if scheme == "upyun":
        return ["--to", "upyun://op@svc", "--endpoint", f"127.0.0.1:{port}", "--password", "pw"]
    return ["--to", f"fdfs://127.0.0.1:{port}"]


def _interrupt(proc: subprocess.Popen, after_ready: float) -> float:
    """SIGINT ``proc`` and return the seconds until it exited."""
    time.sleep(after_ready)
    assert proc.poll() is None, proc.communicate()[1].decode()
    sent_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test is about
        proc.kill()
        pytest.fail("still running 30 s after SIGINT")
    return time.monotonic() - sent_at


@pytest.mark.parametrize("scheme", ["tus", "community", "upyun", "fdfs"])
def test_sigint_against_a_server_that_never_answers_exits_130_at_once(scheme, env, make_file, tmp_path, processes):
    path, _ = make_file(64 * 1024, "mute.bin")
    mute = MuteListener(reads=True)
    try:
        proc = start_cli("put", "--timeout", "30", str(path), *_mute_target(scheme, mute.port),
                         "--store", str(tmp_path / "s"), env=env)
        processes.append(proc)
        assert mute.accepted.wait(20), "the command never connected"
        deadline = time.monotonic() + 5
        while mute.received == 0 and time.monotonic() < deadline:  # its request is sent...
            time.sleep(0.01)
        took = _interrupt(proc, 0.5)  # ...and it waits for the answer
        out, err = proc.communicate()
    finally:
        mute.close()
    print(f"{scheme}: exit {proc.returncode} {took:.3f} s after SIGINT")
    assert proc.returncode == 130, err.decode()
    assert took < 3, f"{took:.2f} s after SIGINT"  # the target is 1 s; margin for a loaded machine
    assert INTERRUPTED in err.decode()
    assert b"Traceback" not in err


def test_sigint_while_a_body_goes_to_a_server_that_does_not_read_it(env, make_file, tmp_path, processes):
    path, _ = make_file(24 * MiB, "unread.bin")  # one PUT (a part size above it): a body far beyond the buffers
    mute = MuteListener(reads=False)
    try:
        proc = start_cli("put", "--timeout", "30", "--part-size", "64M", str(path),
                         *_mute_target("upyun", mute.port), "--store", str(tmp_path / "s"), env=env)
        processes.append(proc)
        assert mute.accepted.wait(20), "the command never connected"
        took = _interrupt(proc, 1.0)  # the socket buffers fill and the send blocks
        out, err = proc.communicate()
    finally:
        mute.close()
    print(f"unread body: exit {proc.returncode} {took:.3f} s after SIGINT")
    assert proc.returncode == 130, err.decode()
    assert took < 3, f"{took:.2f} s after SIGINT"
    assert INTERRUPTED in err.decode()
    assert b"Traceback" not in err


def test_put_runs_on_put_many(url, make_file, tmp_path, monkeypatch, capsys):
    """The command schedules no files of its own: put_many (and its FilePacer) does."""
    from upclient import cli

    calls: List[list] = []
    real = upclient.Client.put_many

    def spy(self, sources, **kwargs):
        calls.append(list(sources))
        return real(self, sources, **kwargs)

    monkeypatch.setattr(upclient.Client, "put_many", spy)
    files = [str(make_file(1000 + i)[0]) for i in range(3)]
    assert cli.main(["put", *files, "--to", url, "--json", "--store", str(tmp_path / "s")]) == 0
    assert calls == [files]
    lines = json_lines(capsys.readouterr().out.encode())
    assert sorted(x["file"] for x in lines) == sorted(files) and all(x["ok"] for x in lines)


def test_one_ctrl_c_ends_a_put_whose_standard_input_stalled(url, env, processes):
    """A read of standard input waits in ticks, so the first Ctrl-C reaches it.

    (It used to be beyond any cancel: the command waited, said so, and took a
    second Ctrl-C.  Nor may the interpreter's exit trip over a thread still
    reading standard input: "Fatal Python error ... <stdin> at interpreter
    shutdown".)
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "upclient", "put", "-", "--to", url, "--no-resume"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    processes.append(proc)
    assert proc.stdin is not None
    proc.stdin.write(b"x" * 1000)  # then nothing more, and the pipe stays open
    proc.stdin.flush()
    took = _interrupt(proc, 1.5)
    err = proc.communicate(timeout=10)[1].decode()
    assert proc.returncode == 130, err
    assert took < 3, f"{took:.2f} s after SIGINT"
    assert INTERRUPTED in err
    assert "Fatal Python error" not in err and "Traceback" not in err
    assert "Ctrl-C again" not in err


STUCK_PUT = """
import sys, threading
import upclient.client
from upclient.cli import main

def stuck(self, *args, **kwargs):  # an upload no cancel reaches
    threading.Event().wait()

upclient.client.Client.put_many = stuck
sys.exit(main(sys.argv[1:]))
"""


def test_uploads_that_do_not_stop_take_a_second_ctrl_c(url, env, tmp_path, processes):
    """Should the uploads not stop after a Ctrl-C, the command says so, and a second one quits.

    (The wait on the uploads must not be fooled by a KeyboardInterrupt landing inside
    Thread.join, which marks a running thread stopped on CPython 3.11.)
    """
    path = tmp_path / "a.bin"
    path.write_bytes(b"a" * 1000)
    proc = subprocess.Popen(
        [sys.executable, "-c", STUCK_PUT, "put", str(path), "--to", url, "--no-resume"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    processes.append(proc)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(4)  # the grace for the uploads to stop, and a little more
    assert proc.poll() is None, proc.communicate()[1].decode()
    took = _interrupt(proc, 0)
    err = proc.communicate(timeout=10)[1].decode()
    assert proc.returncode == 130, err
    assert took < 3
    assert "waiting for the requests in flight to stop (Ctrl-C again to quit now)" in err
    assert INTERRUPTED in err


@pytest.mark.parametrize("fault", ["stall", "stop_reading"])
def test_sigint_during_a_stalled_patch_exits_at_once_and_the_next_run_resumes(
    fault, url, env, make_file, tmp_path, processes
):
    """A real tus server behind a proxy that holds back a PATCH's answer, or stops reading its body."""
    from upclient.testing.faultproxy import FaultProxy

    size = 24 * MiB
    path, digest = make_file(size, "stalled.bin")
    with FaultProxy(url.partition("+")[2]) as proxy:
        proxied = "tus+" + proxy.url_for(url.partition("+")[2])
        cmd = ["put", str(path), "--to", proxied, "--timeout", "30", "--part-size", "4M", "--concurrency", "1",
               "-o", "concat=false", "--store", str(tmp_path / "resume")]
        first = start_cli(*cmd, env=env)
        processes.append(first)
        assert proxy.wait_for_requests(2, "PATCH", timeout=30), "no PATCH went through"
        getattr(proxy, fault)(600, "PATCH")  # the next PATCH: no answer, or its body unread
        deadline = time.monotonic() + 30
        while not proxy.faults_fired.get(fault) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.faults_fired.get(fault), "the fault never fired"
        took = _interrupt(first, 0.5)
        err = first.communicate()[1]
        print(f"tus PATCH {fault}: exit {first.returncode} {took:.3f} s after SIGINT")
        assert first.returncode == 130, err.decode()
        assert took < 3, f"{took:.2f} s after SIGINT"
        assert INTERRUPTED in err.decode() and b"Traceback" not in err

        second = run_cli(*cmd, "--json", env=env)  # the fault is used up
        assert second.returncode == 0, second.stderr.decode()
        [line] = json_lines(second.stdout)
        assert line["resumed"] is True and 0 < line["sent_bytes"] < size
        assert server_sha256(proxied, line["id"], tmp_path) == digest  # the id names the proxy
