"""The examples run as documented, as a user runs them: subprocesses whose output is a pipe.

Each one is checked on the server side (the bytes it stored are the
source's), and their output is read as a log would hold it.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import os
import pty
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Optional, Tuple
from wsgiref.simple_server import make_server

import pytest
import requests

import upclient
from upclient.testing import UpyunServer
from upclient.testing.shaping import ShapingProxy


REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
#: The examples that need a server started beforehand; the others start their own.
NEED_A_SERVER = {"put_many.py", "resume_after_interrupt.py", "stream_stdin.py", "tus_upload.py",
                 "wsgi_upload_view.py"}
MiB = 1024 * 1024


def example_env(tmp_path: Path, **extra: str) -> dict:
    """The environment of an example: this checkout importable, resume points under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPYUN_", "FDFS_", "UPCLIENT_"))}
    env.update(PYTHONPATH=str(REPO), XDG_STATE_HOME=str(tmp_path / "state"), **extra)
    return env


def run_example(name: str, *args: str, env: dict, cwd: Path = REPO, stdin: Optional[bytes] = None,
                timeout: float = 120) -> Tuple[int, str, str]:
    """``python examples/NAME ARGS`` with stdout and stderr pipes: (status, stdout, stderr)."""
    script = os.path.relpath(EXAMPLES / name, cwd)
    done = subprocess.run([sys.executable, script, *args], input=stdin, capture_output=True,
                          timeout=timeout, env=env, cwd=cwd)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


@contextlib.contextmanager
def serving(name: str, *args: str, env: dict) -> Iterator[Tuple["subprocess.Popen[str]", str]]:
    """An example that serves until stopped: yields (process, its first stdout line); killed at the end."""
    command = [sys.executable, str(EXAMPLES / name), *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          cwd=REPO) as proc:
        try:
            assert proc.stdout is not None
            watchdog = threading.Timer(30, proc.kill)
            watchdog.start()
            try:
                first = proc.stdout.readline().strip()
            finally:
                watchdog.cancel()
            yield proc, first
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def progress_lines(text: str, label: str) -> List[str]:
    return [line for line in text.splitlines() if line.startswith(label + ":")]


def assert_progress_is_whole_lines(stdout: str, stderr: str, label: str) -> None:
    """Off a terminal: no carriage returns, at most a line per tenth, the last one at 100%."""
    assert "\r" not in stdout and "\r" not in stderr, (stdout, stderr)
    lines = progress_lines(stderr, label)
    assert 1 <= len(lines) <= 11, stderr
    assert re.match(rf"{re.escape(label)}: 100%", lines[-1]), lines
    percents = [int(re.match(rf"{re.escape(label)}:\s*(\d+)%", line).group(1)) for line in lines]
    assert percents == sorted(set(percents)), lines  # each tenth once, in order


# ------------------------------------------------------------------ every example


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_says_what_it_shows_and_how_to_run_it_locally(name):
    doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
    assert doc and len(doc.splitlines()[0]) > 20, name
    assert f"python examples/{name}" in doc, name
    if name in NEED_A_SERVER:  # says how to start one, and that it prints the URL to pass
        assert "python -m upclient.testing tus" in doc, name
        assert "URL" in doc, name


# ------------------------------------------------------------------ examples with their own server


def test_the_upyun_example_runs_against_its_own_emulator(tmp_path):
    status, out, err = run_example("upyun_upload.py", env=example_env(tmp_path))
    assert status == 0, err
    assert "downloaded copy matches" in out
    assert_progress_is_whole_lines(out, err, "isos/big.iso")


def test_the_fdfs_example_runs_against_its_own_emulator(tmp_path):
    status, out, err = run_example("fdfs_upload.py", env=example_env(tmp_path))
    assert status == 0, err
    assert "downloaded copy matches" in out
    assert_progress_is_whole_lines(out, err, "big.mp4")


def test_the_deadlines_example_keeps_its_time_promises(tmp_path):
    status, out, err = run_example("deadlines.py", env=example_env(tmp_path), timeout=60)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("put(timeout=2) gave up after ") and "deadline passed" in lines[0]
    assert lines[1].startswith("cancel.set() at 0.5 s") and "cancelled" in lines[1]
    assert lines[2] == "no upclient thread left: True"
    assert lines[3].startswith("a stalled stream: put(timeout=1) gave up after ") and "deadline passed" in lines[3]
    assert float(lines[3].split("after ")[1].split(" s")[0]) < 5


# ------------------------------------------------------------------ examples against a tus server


def test_the_tus_example_uploads_and_prints_whole_progress_lines_into_a_pipe(rus_server, make_file, tmp_path):
    src, digest = make_file(20 * MiB, "big.iso")
    status, out, err = run_example("tus_upload.py", str(src), "tus+" + rus_server.url, env=example_env(tmp_path))
    assert status == 0, err
    upload_id = out.strip()
    assert rus_server.stored_sha256(upload_id) == digest
    assert_progress_is_whole_lines(out, err, "big.iso")


def test_the_tus_example_runs_from_the_examples_directory_with_the_url_from_the_environment(
        rus_server, make_file, tmp_path):
    src, digest = make_file(300_000, "small.bin")
    env = example_env(tmp_path, UPCLIENT_URL="tus+" + rus_server.url)
    status, out, err = run_example("tus_upload.py", str(src), env=env, cwd=EXAMPLES)
    assert status == 0, err
    assert rus_server.stored_sha256(out.strip()) == digest


def test_on_a_terminal_the_progress_is_one_line_redrawn(rus_server, make_file, tmp_path):
    src, digest = make_file(20 * MiB, "big.iso")
    leader, follower = pty.openpty()
    chunks: List[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed its end
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        done = subprocess.run([sys.executable, str(EXAMPLES / "tus_upload.py"), str(src), "tus+" + rus_server.url],
                              stdout=subprocess.PIPE, stderr=follower, timeout=120, env=example_env(tmp_path))
    finally:
        os.close(follower)
        reader.join(10)
        os.close(leader)
    assert done.returncode == 0
    assert rus_server.stored_sha256(done.stdout.decode().strip()) == digest
    terminal = b"".join(chunks).decode()
    lines = terminal.split("\r\n")  # the terminal turns each "\n" into "\r\n"
    assert lines[-1] == "" and len(lines) == 2, terminal  # a single line, ended once
    draws = [d for d in lines[0].split("\r") if d]
    assert all(d.startswith("big.iso:") for d in draws), draws
    assert draws[-1].startswith("big.iso: 100%")


def test_the_resume_example_sends_only_what_the_server_lacks(rus_server, make_file, tmp_path):
    src, digest = make_file(8 * MiB, "half.bin")
    # a slow link (a part takes 0.7 s), so the upload is still going when half its parts are done
    with ShapingProxy(rus_server.url, delay=0.001, rate=1.5e6) as link:
        url = "tus+" + link.url_for(rus_server.url)
        status, out, err = run_example("resume_after_interrupt.py", str(src), url, env=example_env(tmp_path))
    assert status == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "cancelled; resume points kept: 1", out
    sent = re.fullmatch(r"resumed=True: sent (\d+) of (\d+) bytes", lines[1])
    assert sent, out
    assert 0 < int(sent.group(1)) <= 8 * MiB // 2 and int(sent.group(2)) == 8 * MiB
    upload_id = rus_server.url.rstrip("/") + "/" + lines[2].rsplit("/", 1)[-1]
    assert rus_server.stored_sha256(upload_id) == digest


def test_put_many_uploads_each_file_and_reports_the_one_that_failed(rus_server, make_file, tmp_path):
    files = [make_file(n) for n in (0, 70_000, 2 * MiB)]
    missing = tmp_path / "no-such-file.log"
    env = example_env(tmp_path, UPCLIENT_URL="tus+" + rus_server.url)
    status, out, err = run_example("put_many.py", *(str(p) for p, _ in files), str(missing), env=env)
    assert status == 1, err
    ok = dict(re.findall(r"^ok    (\S+) -> (\S+)$", out, re.M))
    assert {p: rus_server.stored_sha256(i) for p, i in ok.items()} == {str(p): d for p, d in files}
    assert re.search(rf"^error {re.escape(str(missing))}: ", out, re.M), out


def test_stdin_is_streamed_without_knowing_its_size(rus_server, tmp_path):
    data = os.urandom(3 * MiB + 17)
    status, out, err = run_example("stream_stdin.py", "piped.tar", "tus+" + rus_server.url,
                                   env=example_env(tmp_path), stdin=data)
    assert status == 0, err
    size, upload_id = re.fullmatch(r"(\d+) bytes from stdin -> (\S+)\n", out).groups()
    assert int(size) == len(data)
    assert rus_server.stored_sha256(upload_id) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", sorted(NEED_A_SERVER - {"wsgi_upload_view.py"}))
def test_without_a_server_url_an_example_says_how_to_run_it(name, tmp_path):
    status, out, err = run_example(name, env=example_env(tmp_path))
    assert status == 2
    assert "python -m upclient.testing tus" in err and out == ""


# ------------------------------------------------------------------ web views


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name[:-3], EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_threaded_web_view_forwards_every_upload_byte_exact(rus_server):
    example = load_example("wsgi_upload_view.py")
    client = upclient.Client("tus+" + rus_server.url, store=None, part_size=256 * 1024)
    httpd = make_server("127.0.0.1", 0, example.make_app(client), server_class=example.ThreadingWSGIServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/upload"
        bodies = [os.urandom(n) for n in (0, 1, 300_000, 1_000_000, 70_000, 5, 600_000, 2_000)]

        def send(i):
            return requests.put(url, data=bodies[i], headers={"X-Filename": f"f{i}.bin"}, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(len(bodies))))
        for body, answer in zip(bodies, answers):
            assert answer.status_code == 201, answer.text
            assert rus_server.stored_sha256(answer.json()["id"]) == hashlib.sha256(body).hexdigest()
        assert requests.get(url, timeout=10).status_code == 404
    finally:
        httpd.shutdown()
        httpd.server_close()
        client.close()
        thread.join(5)


def test_the_web_view_example_serves_on_the_port_it_is_given(rus_server, make_file, tmp_path):
    src, digest = make_file(400_000)
    with serving("wsgi_upload_view.py", "tus+" + rus_server.url, "--port", "0",
                 env=example_env(tmp_path)) as (proc, first):
        listening = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+/upload)", first)
        assert listening, first
        answer = requests.put(listening.group(1), data=src.read_bytes(), timeout=30)
    assert answer.status_code == 201, answer.text
    assert rus_server.stored_sha256(answer.json()["id"]) == digest


def test_the_callback_view_accepts_upyun_and_refuses_forgeries(tmp_path):
    example = load_example("upyun_callback_view.py")
    uploads = []
    httpd = make_server("127.0.0.1", 0, example.make_app("op", "pw", on_upload=uploads.append))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    notify = f"http://127.0.0.1:{httpd.server_port}/upyun/notify"
    try:
        with UpyunServer(tmp_path / "upyun", operator="op", password="pw") as server:
            with upclient.Client("upyun://op@svc", password="pw", endpoint=server.endpoint, store=None) as c:
                c.put(b"\xff\xd8 a jpeg", key="cb/x.jpg", form=True, policy={"notify-url": notify})
            assert server.wait_callbacks(10)
            assert [cb["status"] for cb in server.callbacks] == [200]
        forged = requests.post(notify, data={"url": "/cb/evil.jpg"}, timeout=10,
                               headers={"Authorization": "UPYUN op:Zm9yZ2Vk", "Date": "x"})
        assert forged.status_code == 401
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert [u.get("url") for u in uploads] == ["/cb/x.jpg"]


@pytest.mark.parametrize("unset", [("UPYUN_OPERATOR", "UPYUN_PASSWORD"), ("UPYUN_PASSWORD",), ("UPYUN_OPERATOR",)])
def test_the_callback_view_names_each_missing_variable(unset, tmp_path):
    given = {k: "x" for k in ("UPYUN_OPERATOR", "UPYUN_PASSWORD") if k not in unset}
    status, out, err = run_example("upyun_callback_view.py", env=example_env(tmp_path, **given), timeout=30)
    assert status == 2, err
    assert "Traceback" not in err and err.startswith("usage: ")
    assert re.search(r"missing environment variables?: " + ", ".join(unset) + "$", err, re.M), err


def test_the_callback_view_listens_on_loopback_by_default_and_takes_genuine_callbacks(tmp_path):
    env = example_env(tmp_path, UPYUN_OPERATOR="op", UPYUN_PASSWORD="pw")
    with serving("upyun_callback_view.py", "--port", "0", env=env) as (proc, first):
        listening = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)/upyun/notify", first)
        assert listening, first
        notify = listening.group(1) + "/upyun/notify"
        with UpyunServer(tmp_path / "upyun", operator="op", password="pw") as server:
            with upclient.Client("upyun://op@svc", password="pw", endpoint=server.endpoint, store=None) as c:
                c.put(b"\xff\xd8 a jpeg", key="cb/y.jpg", form=True, policy={"notify-url": notify})
            assert server.wait_callbacks(10)
            assert [cb["status"] for cb in server.callbacks] == [200]
        assert requests.post(notify, data={"url": "/cb/evil.jpg"}, timeout=10,
                             headers={"Authorization": "UPYUN op:Zm9yZ2Vk", "Date": "x"}).status_code == 401
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    assert "'url': '/cb/y.jpg'" in out and "evil" not in out


def test_the_upyun_example_names_the_variables_a_real_service_still_needs(tmp_path):
    status, out, err = run_example("upyun_upload.py", env=example_env(tmp_path, UPYUN_SERVICE="svc"), timeout=30)
    assert status == 2 and "Traceback" not in err, err
    assert err.rstrip().endswith("UPYUN_SERVICE is set, so set UPYUN_OPERATOR and UPYUN_PASSWORD too"), err
