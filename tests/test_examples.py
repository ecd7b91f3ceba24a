"""The web-view example works as documented: one Client, many request threads, bodies streamed through."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from wsgiref.simple_server import make_server

import requests

import upclient

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wsgi_upload_view.py"


def load_example():
    spec = importlib.util.spec_from_file_location("wsgi_upload_view", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_threaded_web_view_forwards_every_upload_byte_exact(rus_server):
    example = load_example()
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


def test_the_upyun_example_runs_against_its_own_emulator():
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "examples" / "upyun_upload.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPYUN_")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "downloaded copy matches" in done.stdout


def test_the_callback_view_accepts_upyun_and_refuses_forgeries(tmp_path):
    from upclient.testing import UpyunServer

    spec = importlib.util.spec_from_file_location("upyun_callback_view", EXAMPLE.parent / "upyun_callback_view.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
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


def test_the_fdfs_example_runs_against_its_own_emulator():
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "examples" / "fdfs_upload.py"
    env = {k: v for k, v in os.environ.items() if k != "FDFS_TRACKERS"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "downloaded copy matches" in done.stdout


def test_the_deadlines_example_keeps_its_time_promises():
    import subprocess

    script = Path(__file__).resolve().parent.parent / "examples" / "deadlines.py"
    env = dict(os.environ, PYTHONPATH=str(script.parent.parent))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("put(timeout=2) gave up after ") and "deadline passed" in lines[0]
    assert lines[1].startswith("cancel.set() at 0.5 s") and "cancelled" in lines[1]
    assert lines[2] == "no upclient thread left: True"
