"""The example Django site under a real threaded WSGI server, uploads streamed from the request.

``examples/django_site`` runs under gunicorn's threaded worker in a process
of its own on 127.0.0.1 (gunicorn hands Django the body as it arrives;
waitress would read it all, to a temporary file, before calling Django),
against the emulators and @tus/server.  Browsers are raw sockets sending
``multipart/form-data`` with no sizes, as a browser does; every file is
checked on the storage server by its digest.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, List

import pytest
import requests

from tests.django_rig import SITE, FormFile, SiteServer, concurrently, gunicorn_missing, post_form
from upclient.testing import SilentServer

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(gunicorn_missing() is not None, reason=gunicorn_missing() or "")


def _server(request: pytest.FixtureRequest, backend: str) -> Any:
    return request.getfixturevalue(f"upclient_{backend}_server")


@pytest.mark.parametrize("backend", ["tus", "fdfs", "community", "upyun"])
def test_sixteen_browsers_upload_20_mib_each_and_every_byte_arrives(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """16 concurrent 20 MiB uploads; UPYUN needs sizes, sent as a page's script would (X-Upload-Sizes)."""
    storage = _server(request, backend)
    files = [FormFile("file", f"video-{i}.bin", 20 * MiB, seed=i + 1) for i in range(16)]
    headers = {"X-Upload-Sizes": str(20 * MiB)} if backend == "upyun" else {}
    with SiteServer(tmp_path / "site", storage) as site:
        started = time.monotonic()
        answers = concurrently([lambda f=f: post_form(site.port, "/upload", [f], headers=headers)  # type: ignore[misc]
                                for f in files])
        elapsed = time.monotonic() - started
        peak = site.peak_rss()
        written = site.written_to_disk()
        log = site.log()
    for f, answer in zip(files, answers):
        assert answer is not None and answer.status == 201, (answer, log[-3000:])
        (stored,) = answer.json()["files"]
        assert stored["size"] == f.size and stored["original_name"] == f.filename
        assert storage.stored_sha256(_server_id(storage, stored["name"])) == f.sha256
    with capsys.disabled():
        print(f"\n[django {backend}] 16 x 20 MiB in {elapsed:.1f} s ({16 * 20 / elapsed:.0f} MiB/s); "
              f"worker peak RSS {peak / MiB:.0f} MiB; {written / 1024:.0f} KiB written to disk")
    assert peak < 1024 * MiB  # a generous bound: the files hold 320 MiB in all


def _server_id(storage: Any, name: str) -> str:
    return name  # every emulator takes the storage name: a key, an id, or a tus upload id


def _tus_held(directory: Path) -> List[Path]:
    return [p for p in directory.iterdir() if p.is_file() and not p.name.endswith(".json")]


@pytest.mark.parametrize("backend", ["tus", "fdfs"])
def test_a_browser_that_goes_away_midway_leaves_no_file(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The body stops after 8 of 20 MiB while the storage holds part of it; then nothing is left.

    The storage is seen holding the partial before the browser goes, so the
    test cannot pass for want of an upload to clean up.
    """
    storage = _server(request, backend)
    if backend == "tus":
        directory = Path(storage.server.directory)

        def held() -> int:
            return sum(p.stat().st_size for p in _tus_held(directory))

        def count() -> int:
            return len(_tus_held(directory))
    else:

        def held() -> int:
            return sum(os.path.getsize(storage.server.path(f)) for f in storage.server.files())

        def count() -> int:
            return len(storage.server.files())

    with SiteServer(tmp_path / "site", storage) as site:
        cut = post_form(site.port, "/upload", [FormFile("file", "gone.bin", 20 * MiB, seed=7)],
                        cut_after=8 * MiB, on_cut=lambda: _wait_for(lambda: held() >= 4 * MiB, "a partial file"))
        assert cut is None
        _wait_for(lambda: count() == 0, "the partial file to be removed")
        # the site serves on: the next upload goes through
        whole = FormFile("file", "next.bin", 3 * MiB, seed=8)
        answer = post_form(site.port, "/upload", [whole])
        assert answer is not None and answer.status == 201, site.log()[-3000:]
        assert storage.stored_sha256(answer.json()["files"][0]["name"]) == whole.sha256


def test_a_stalled_storage_server_gets_a_504_within_the_deadline(tmp_path: Path) -> None:
    """The storage accepts connections and never answers: the view answers 504 once its 3 s are up."""
    with SilentServer() as silent:
        storage = (f"tus+http://127.0.0.1:{silent.port}/files/", {"read_timeout": 120.0})
        with SiteServer(tmp_path / "site", storage, env={"UPLOAD_TIMEOUT": "3"}) as site:
            started = time.monotonic()
            answer = post_form(site.port, "/upload", [FormFile("file", "stuck.bin", 20 * MiB, seed=3)])
            elapsed = time.monotonic() - started
            assert answer is not None and answer.status == 504, (answer, site.log()[-3000:])
            assert elapsed < 3 + 30  # the deadline, and a generous margin: not the 120 s read timeout
            # the worker thread is free again: a small request is served at once
            assert requests.get(f"http://127.0.0.1:{site.port}/files/1", timeout=60).status_code == 404


def test_a_body_over_max_size_is_refused_with_413_before_it_is_read(
    upclient_tus_server: Any, tmp_path: Path
) -> None:
    with SiteServer(tmp_path / "site", upclient_tus_server, env={"UPLOAD_MAX_SIZE": str(MiB)}) as site:
        answer = post_form(site.port, "/upload", [FormFile("file", "big.bin", 5 * MiB, seed=4)])
        assert answer is not None and answer.status == 413
        assert _tus_held(Path(upclient_tus_server.server.directory)) == []


def test_an_image_field_and_a_download_through_django(upclient_fdfs_server: Any, tmp_path: Path) -> None:
    """ImageField's dimensions come from the streamed, stored image; FileResponse sends a file back."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (640, 360), (1, 2, 3)).save(buf, "PNG")
    image = buf.getvalue()
    with SiteServer(tmp_path / "site", upclient_fdfs_server) as site:
        r = requests.post(f"http://127.0.0.1:{site.port}/picture", files={"image": ("p.png", image, "image/png")},
                          timeout=60)
        assert r.status_code == 201, site.log()[-3000:]
        assert (r.json()["width"], r.json()["height"]) == (640, 360)
        assert upclient_fdfs_server.stored_sha256(r.json()["name"]) == __import__("hashlib").sha256(image).hexdigest()
        doc = FormFile("file", "report.bin", 3 * MiB + 5, seed=9)
        answer = post_form(site.port, "/upload", [doc])
        assert answer is not None and answer.status == 201
        got = requests.get(f"http://127.0.0.1:{site.port}/files/{answer.json()['files'][0]['id']}", timeout=60)
        assert got.status_code == 200 and got.headers["Content-Length"] == str(doc.size)
        assert __import__("hashlib").sha256(got.content).hexdigest() == doc.sha256


def test_upyun_without_sizes_spools_and_stores_every_byte(upclient_upyun_server: Any, tmp_path: Path) -> None:
    """No X-Upload-Sizes: the handler keeps the file until its end (the size is then known), then puts it."""
    files = [FormFile("file", "a.bin", 6 * MiB + 1, seed=11), FormFile("file", "b.txt", 1000, seed=12)]
    with SiteServer(tmp_path / "site", upclient_upyun_server) as site:
        answer = post_form(site.port, "/upload", files, fields={"note": "two files"})
    assert answer is not None and answer.status == 201
    stored = answer.json()["files"]
    assert [s["original_name"] for s in stored] == ["a.bin", "b.txt"]
    for f, s in zip(files, stored):
        assert upclient_upyun_server.stored_sha256(s["name"]) == f.sha256


def test_collectstatic_of_the_example_site_goes_to_upyun(upclient_upyun_server: Any, tmp_path: Path) -> None:
    server = upclient_upyun_server
    env = {"UPCLIENT_STATIC_URL": server.url, "UPCLIENT_STATIC_OPTIONS": json.dumps(server.settings)}
    site = SiteServer(tmp_path / "site", server, env=env)
    done = site.manage("collectstatic", "--noinput")
    assert "2 static files copied" in done.stdout
    for rel in ("site/site.css", "site/site.js"):
        assert server.stored_sha256("static/" + rel) == __import__("hashlib").sha256(
            (SITE / "static" / rel).read_bytes()).hexdigest()


def _wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll until ``condition`` holds; a generous upper bound, not a timing assertion."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)
