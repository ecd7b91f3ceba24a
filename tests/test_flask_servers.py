"""The Flask example app under real threaded servers (waitress, gunicorn gthread) in a subprocess, end to end.

Browsers on sockets send 20 MiB files at once, as forms and as raw PUT
bodies, to ``examples/flask_app.py``; what each storage server stored
(@tus/server, the community, UPYUN and FastDFS emulators) is compared with
what was sent.  A browser that goes away mid-body leaves nothing on the
storage server; a storage server that stalls gets a 504 within the
deadline.  The serving process's peak RSS is reported, not asserted.

waitress reads a whole request body (to a temporary file past 512 KiB)
before it calls the app, so the streaming cases (a browser that goes away,
memory) run under gunicorn's threaded worker, which hands the app the
socket as the bytes arrive.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List

import pytest

from tests.test_flask_rig import (
    MiB,
    Answer,
    Body,
    app_server,
    form_body,
    leftovers,
    raw_body,
    send,
    send_and_vanish,
    started_on_storage,
    wait_for,
)

BACKENDS = ["tus", "community", "upyun", "fdfs"]
#: Parts of 4 MiB: a 20 MiB file goes in five, several of them in flight while the browser still sends.
PART_SIZE = 4 * MiB


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Any:
    """Each storage server of upclient's pytest plugin, in turn."""
    return request.getfixturevalue(f"upclient_{request.param}_server")


def app_settings(storage: Any, **more: Any) -> dict:
    return {**storage.settings, "part_size": PART_SIZE, **more}


def upload(port: int, i: int, size: int) -> tuple:
    """Browser ``i``: a form (even ``i``) or a raw PUT (odd ``i``) of a file of ``size`` bytes, seed ``i``."""
    if i % 2 == 0:
        body: Body = form_body([("note", f"browser {i}"), ("file", f"form-{i}.bin", i, size)])
        return body, send(port, "POST", "/upload", body)
    body = raw_body(i, size)
    return body, send(port, "PUT", f"/upload/raw-{i}.bin", body)


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_sixteen_browsers_at_once_store_twenty_mib_each_byte_exact(storage, kind, tmp_path, record_property):
    size = 20 * MiB
    with app_server(kind, storage.url, app_settings(storage), tmp_path) as app:
        idle = app.peak_rss()
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            sent = list(pool.map(lambda i: upload(app.port, i, size), range(16)))
        seconds = time.monotonic() - started
        peak = app.peak_rss()
    answers: List[Answer] = [a for _, a in sent]
    assert [a.status for a in answers] == [201] * 16, [a.payload for a in answers]
    for i, (body, answer) in enumerate(sent):
        assert answer.payload["size"] == size
        assert storage.stored_sha256(answer.payload["id"]) == body.digests()[0], i
        if i % 2 == 0:
            assert answer.payload["fields"] == {"note": f"browser {i}"}
    record_property("peak_rss_mib", round(peak / MiB, 1))
    print(f"\n[{storage.backend}/{kind}] 16 x 20 MiB in {seconds:.1f} s: "
          f"{16 * size / MiB / seconds:.0f} MiB/s, peak RSS of the serving process {peak / MiB:.0f} MiB "
          f"({idle / MiB:.0f} MiB before the uploads)")


def browsers_go_away_mid_body(storage: Any, tmp_path: Any, *, reset: bool) -> None:
    """A raw PUT, then a form, each cut off after 13 MiB of 20: the storage keeps nothing of either."""
    size = 20 * MiB
    started = started_on_storage(storage)
    with app_server("gunicorn", storage.url, app_settings(storage), tmp_path, threads=4) as app:
        for i, body in enumerate([raw_body(1, size), form_body([("file", "gone.bin", 2, size)])]):
            path = "/upload/gone.bin" if i == 0 else "/upload"
            method = "PUT" if i == 0 else "POST"
            before = app.log().count("stopped: the client went away")
            # more than two parts sent, so the storage holds some of the file when the browser goes
            send_and_vanish(app.port, method, path, body, cut=13 * MiB, reset=reset,
                            before_leaving=(lambda: wait_for(started, "the upload to begin on the storage"))
                            if started else (lambda: None))
            wait_for(lambda: leftovers(storage) == [], "the partial upload to go from the storage")
            wait_for(lambda before=before: app.log().count("stopped: the client went away") > before,
                     "the app to see the browser go")
            assert leftovers(storage) == [], app.log()
        # the worker threads are free and the app works on
        ok = send(app.port, "PUT", "/upload/after.bin", raw_body(3, 5 * MiB))
    assert ok.status == 201, ok.payload
    assert storage.stored_sha256(ok.payload["id"]) == raw_body(3, 5 * MiB).digests()[0]


def test_a_browser_that_goes_away_mid_body_leaves_no_partial_file(storage, tmp_path):
    """gunicorn hands the app the body as it arrives: the app sees the browser go and aborts the upload."""
    browsers_go_away_mid_body(storage, tmp_path, reset=False)


def test_a_browser_whose_connection_is_reset_mid_body_leaves_no_partial_file(upclient_fdfs_server, tmp_path):
    """A reset is a read error in the app, not an early end: FastDFS would keep the appender file."""
    browsers_go_away_mid_body(upclient_fdfs_server, tmp_path, reset=True)


def test_under_waitress_a_browser_that_goes_away_never_reaches_the_app(upclient_fdfs_server, tmp_path):
    """waitress drops a request whose body never came whole: nothing starts on the storage."""
    storage = upclient_fdfs_server
    with app_server("waitress", storage.url, app_settings(storage), tmp_path, threads=4) as app:
        send_and_vanish(app.port, "PUT", "/upload/gone.bin", raw_body(1, 20 * MiB), cut=13 * MiB)
        ok = send(app.port, "PUT", "/upload/after.bin", raw_body(3, 1 * MiB))
        log = app.log()
    assert "gone.bin" not in log and "went away" not in log, log  # the app never saw it
    assert ok.status == 201, ok.payload
    assert storage.stored_sha256(ok.payload["id"]) == raw_body(3, 1 * MiB).digests()[0]
    assert len(leftovers(storage)) == 1, leftovers(storage)  # the second upload's file alone


@pytest.mark.parametrize("kind", ["waitress", "gunicorn"])
def test_a_storage_server_that_never_answers_gets_504_within_the_deadline(kind, tmp_path):
    from upclient.testing import SilentServer

    with SilentServer() as silent:
        url = f"community+http://127.0.0.1:{silent.port}"
        with app_server(kind, url, {"token": "t", "timeout": 2, "part_size": PART_SIZE}, tmp_path,
                        threads=4) as app:
            answers = [send(app.port, "PUT", "/upload/slow.bin", raw_body(1, 256 * 1024)),
                       send(app.port, "POST", "/upload", form_body([("file", "slow.bin", 2, 256 * 1024)]))]
    print(f"\n[silent storage/{kind}] 504 after " + ", ".join(f"{a.seconds:.1f} s" for a in answers))
    for answer in answers:
        assert answer.status == 504, answer.payload
        assert "did not finish in time" in answer.payload["error"]
        assert answer.seconds < 30  # a generous bound: the deadline is 2 s, the read timeout 60 s


def test_a_storage_server_that_stalls_mid_upload_gets_504_within_the_deadline(upclient_tus_server,
                                                                             upclient_fault_proxy, tmp_path):
    storage = upclient_tus_server
    proxy = upclient_fault_proxy(storage)
    url = "tus+" + proxy.url_for(storage.server.url)
    proxy.stall(120, "PATCH", times=None)  # the upload is created; its bytes never get an answer
    with app_server("gunicorn", url, {"timeout": 3, "part_size": PART_SIZE}, tmp_path,
                    threads=4) as app:
        answer = send(app.port, "PUT", "/upload/stalled.bin", raw_body(1, 10 * MiB))
        log = app.log()
    print(f"\n[tus stalled mid-upload/gunicorn] 504 after {answer.seconds:.1f} s")
    assert answer.status == 504, answer.payload
    assert answer.seconds < 60  # generous: the deadline is 3 s, the stall 120 s
    assert proxy.faults_fired.get("stall"), proxy.request_log
    assert re.search(r"upload of stalled\.bin failed: DeadlineExceeded", log), log


def test_the_example_answers_a_browser_with_its_form(upclient_tus_server, tmp_path):
    import urllib.request

    with app_server("waitress", upclient_tus_server.url, {}, tmp_path, threads=2) as app:
        page = urllib.request.urlopen(f"http://127.0.0.1:{app.port}/", timeout=30).read().decode()
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page


def test_the_example_without_a_url_says_how_to_run_it(tmp_path):
    import subprocess
    import sys

    from tests.test_flask_rig import EXAMPLES, REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK_", "UPCLIENT_"))}
    done = subprocess.run([sys.executable, str(EXAMPLES / "flask_app.py")], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 2 and "python -m upclient.testing tus" in done.stderr
