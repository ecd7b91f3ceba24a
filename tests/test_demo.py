"""make demo runs the main job end to end, and what it says is what happened."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def run_demo(*args: str, code: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    command = [sys.executable, "-m", "upclient.demo", *args]
    if code:  # run some set-up first, then the demo's main
        main = f"import sys, upclient.demo\nsys.exit(upclient.demo.main({list(args)!r}))"
        command = [sys.executable, "-c", f"{code}\n{main}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def mib(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"B": 1 / MiB, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


def refuses_connections(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess:
    """One run of the demo (as make demo runs it, into a pipe) that the tests below read."""
    return run_demo("--size", "12M", "--part-size", "1M")


def test_the_demo_uploads_resumes_verifies_and_deduplicates(demo):
    proc = demo
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "\r" not in out + proc.stderr  # no progress bar into a pipe
    assert "resumed        yes" in out
    assert "identical: the server holds exactly the source's bytes" in out
    assert "deduplicated, the server already had it" in out
    assert "MD5            remembered from the first upload, not read again" in out
    # its servers listen on loopback only, and are gone once it has ended
    ports = {int(p) for p in re.findall(r"//127\.0\.0\.1:(\d+)", out)}
    assert len(ports) == 3, out  # the tus server, the proxy before it, the dedup emulator
    assert not re.search(r"//(?!127\.0\.0\.1[:/])", out), out
    assert all(refuses_connections(port) for port in ports)


def test_the_demo_says_once_where_the_upload_stopped_and_the_resume_sends_the_rest(demo):
    proc = demo
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # one figure for the cancel, measured on the server, not a plan and then a measure
    assert len(re.findall(r"cancel.*\d+ ?%", out)) == 1, out
    kept = re.search(r"^   cancelled +the server keeps (\S+ \S+) of 12\.0 MiB \((\d+)%\)$", out, re.M)
    assert kept, out
    sent = re.search(r"^   sent +(\S+ \S+) of 12\.0 MiB: only what the server did not keep$", out, re.M)
    assert sent, out
    # what the server kept plus what the resume sent is the file (each figure rounded to 0.1 MiB)
    assert abs(mib(kept.group(1)) + mib(sent.group(1)) - 12) <= 0.1, out
    assert abs(mib(kept.group(1)) / 12 * 100 - int(kept.group(2))) <= 1


def test_the_id_shown_is_the_uploads_url_on_the_server_itself(demo):
    proc = demo
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    server = re.search(r"^   server +a tus server \(resumable-upload\) at (http://127\.0\.0\.1:\d+/files/)$", out, re.M)
    proxy = re.search(r"through a local proxy at http://127\.0\.0\.1:(\d+)", out)
    upload_id = re.search(r"^   id +(\S+)$", out, re.M)
    assert server and proxy and upload_id, out
    assert upload_id.group(1).startswith(server.group(1)), out
    assert f":{proxy.group(1)}/" not in upload_id.group(1)


def test_the_kind_of_upload_is_explained_where_it_is_first_named(demo):
    proc = demo
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "concat" in line)
    assert "a concat upload" in lines[first]
    assert re.match(r"   concat upload +tus concatenation: the parts go up in parallel as partial uploads, "
                    r"and the server joins them$", lines[first + 1]), out


def test_without_its_tus_server_the_demo_says_what_to_install():
    proc = run_demo(code="import sys\nsys.modules['resumable_upload'] = None  # as if not installed")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pip install 'upclient[testing]'" in proc.stderr and "resumable-upload" in proc.stderr
