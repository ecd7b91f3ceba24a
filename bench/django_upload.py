"""Benchmark: uploads through Django, streamed by upclient's handler vs Django's default path.

16 browsers (raw sockets sending ``multipart/form-data``, no sizes, as a
browser does) each upload a 20 MiB file at once to a Django site under
gunicorn's threaded worker, which stores it on ``@tus/server`` (its own
process) through :class:`upclient.contrib.django.UpclientStorage`:

* ``streaming``: ``@streaming_upload``; each file goes to the storage while
  the body arrives (:class:`~upclient.contrib.django.StreamingUploadHandler`);
* ``default``: Django's own handlers spool each file to a temporary file
  (``FILE_UPLOAD_TEMP_DIR``, on disk), then the view calls
  ``default_storage.save``, which uploads it from there.

Each mode runs in a fresh gunicorn; for each: MB/s (all the bytes over the
wall time of the 16 uploads), the worker's peak RSS (VmHWM) and the bytes it
wrote to disk during the uploads (``/proc/PID/io`` write_bytes).  Every
stored file is checked against its SHA-256.  Targets: streaming at least
1.5x as fast as the default path, and no bytes written to local disk::

    .venv/bin/python bench/django_upload.py [--files 16] [--size-mib 20] [--threads 20]

This module is also the benchmark's WSGI application (``bench.django_upload:application``)
when gunicorn imports it with ``BENCH_STORAGE_URL`` set.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


# ------------------------------------------------------------------ the site (in the gunicorn worker)

def _site() -> Any:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],  # it sets Content-Length
        INSTALLED_APPS=[],
        USE_TZ=True,
        FILE_UPLOAD_TEMP_DIR=os.environ.get("BENCH_TEMP_DIR") or None,
        STORAGES={"default": {"BACKEND": "upclient.contrib.django.UpclientStorage",
                              "OPTIONS": {"url": os.environ["BENCH_STORAGE_URL"], "part_size": 4 * MiB}}},
    )
    django.setup()
    from django.core.files.storage import default_storage
    from django.core.wsgi import get_wsgi_application
    from django.http import JsonResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    from upclient.contrib.django import streaming_upload

    @streaming_upload(csrf=False, timeout=600)
    def streaming(request: Any) -> Any:
        return JsonResponse({"names": [f.storage_name for f in request.FILES.getlist("file")]})

    @csrf_exempt
    def default(request: Any) -> Any:
        return JsonResponse({"names": [default_storage.save(f"bench/{f.name}", f)
                                       for f in request.FILES.getlist("file")]})

    globals()["urlpatterns"] = [path("streaming", streaming), path("default", default)]
    return get_wsgi_application()


if __name__ != "__main__" and os.environ.get("BENCH_STORAGE_URL"):
    application = _site()


# ------------------------------------------------------------------ the browsers

_BLOCK = os.urandom(MiB)


def _blocks(size: int, seed: int) -> Any:
    """The bytes of one generated file, a MiB at a time: a shared random block stamped with the seed."""
    sent, index = 0, 0
    while sent < size:
        block = (struct.pack(">QQ", seed, index) + _BLOCK[16:])[: size - sent]
        yield block
        sent += len(block)
        index += 1


def _sha256(size: int, seed: int) -> str:
    digest = hashlib.sha256()
    for block in _blocks(size, seed):
        digest.update(block)
    return digest.hexdigest()


def _post(port: int, path: str, filename: str, size: int, seed: int) -> Tuple[int, bytes]:
    """One browser's POST of a generated file: (status, body)."""
    boundary = "----WebKitFormBoundary" + os.urandom(8).hex()
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + size + len(tail)
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall((f"POST /{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
                      "Connection: close\r\n\r\n").encode() + head)
        for block in _blocks(size, seed):
            sock.sendall(block)
        sock.sendall(tail)
        answer = bytearray()
        while True:
            got = sock.recv(65536)
            if not got:
                break
            answer += got
    status_line, _, rest = bytes(answer).partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# ------------------------------------------------------------------ one mode, one gunicorn

def _proc_numbers(pid: int, what: str) -> Dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/{what}").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.split() and value.split()[0].isdigit():
            out[key] = int(value.split()[0])
    return out


def _worker(master: int) -> Optional[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def run_mode(mode: str, storage_url: str, check: Any, files: int, size: int, threads: int,
             temp_dir: Path) -> Dict[str, Any]:
    env = {**os.environ, "BENCH_STORAGE_URL": storage_url, "BENCH_TEMP_DIR": str(temp_dir),
           "PYTHONPATH": str(REPO)}
    log_path = temp_dir / f"gunicorn-{mode}.log"
    from gunicorn import config

    quiet = ["--no-control-socket"] if "control_socket_disable" in {s.name for s in config.KNOWN_SETTINGS} else []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1", "--threads",
             str(threads), "--bind", "127.0.0.1:0", "--timeout", "600", "--worker-tmp-dir", "/dev/shm",
             *quiet, "bench.django_upload:application"],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port, worker = 0, None
        end = time.monotonic() + 60
        while time.monotonic() < end and (not port or worker is None):
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
            port = int(m.group(1)) if m else 0
            worker = _worker(proc.pid)
            time.sleep(0.05)
        if not port or worker is None:
            raise SystemExit(f"gunicorn did not start:\n{log_path.read_text(errors='replace')}")
        _post(port, mode, "warm-up.bin", 64 * 1024, 10_000)  # Django's first request loads what it needs
        written_before = _proc_numbers(worker, "io")["write_bytes"]
        cpu_before = _cpu_seconds(worker)
        results: List[Any] = [None] * files

        def one(i: int) -> None:
            results[i] = _post(port, mode, f"file-{i}.bin", size, i)

        started = time.monotonic()
        browsers = [threading.Thread(target=one, args=(i,)) for i in range(files)]
        for b in browsers:
            b.start()
        for b in browsers:
            b.join()
        elapsed = time.monotonic() - started
        written = _proc_numbers(worker, "io")["write_bytes"] - written_before
        cpu = _cpu_seconds(worker) - cpu_before
        peak = _proc_numbers(worker, "status")["VmHWM"] * 1024
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    for i, (status, body) in enumerate(results):
        if status != 200:
            raise SystemExit(f"{mode}: HTTP {status}: {body[:300]!r}\n{log_path.read_text(errors='replace')[-2000:]}")
        (name,) = json.loads(body)["names"]
        if not check(name, size, i):
            raise SystemExit(f"{mode}: {name} differs from what was sent")
    return {"mode": mode, "seconds": elapsed, "mb_s": files * size / elapsed / 1e6, "peak_rss": peak,
            "disk_written": written, "cpu": cpu}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _storage(kind: str, temp_dir: Path) -> Iterator[Tuple[str, Any]]:
    """The storage server: its backend URL, and ``check(name, size, seed)`` of what it holds."""
    if kind == "sink":
        from bench.sink import SinkProcess
        from upclient import Client

        with SinkProcess() as sink, Client("tus+" + sink.url, store=None) as client:
            yield "tus+" + sink.url, lambda name, size, seed: client.info(name).offset == size
        return
    from upclient.testing.servers import TusNodeServer

    reason = TusNodeServer.unavailable_reason()
    if reason:
        raise SystemExit(f"@tus/server is needed: {reason}")
    with TusNodeServer(temp_dir / "tus") as tus:
        yield "tus+" + tus.url, lambda name, size, seed: tus.stored_sha256(name) == _sha256(size, seed)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--size-mib", type=int, default=20)
    parser.add_argument("--threads", type=int, default=20, help="gunicorn threads")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each path (the median is shown)")
    parser.add_argument("--storage", choices=["tus", "sink"], default="tus",
                        help="@tus/server (stores the files) or bench/sink.py (discards them)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    size = args.size_mib * MiB
    runs: Dict[str, List[Dict[str, Any]]] = {"streaming": [], "default": []}
    with tempfile.TemporaryDirectory(prefix="bench-django-", dir=str(REPO / "bench")) as work:
        temp_dir = Path(work)
        with _storage(args.storage, temp_dir) as (url, check):
            for _ in range(args.rounds):
                for mode in runs:  # alternated, so that neither path always runs on a warmer machine
                    runs[mode].append(run_mode(mode, url, check, args.files, size, args.threads, temp_dir))
    where = ("@tus/server, every file checked by SHA-256" if args.storage == "tus"
             else "bench/sink.py (discards the bytes: Django's side alone), every file's size checked")
    print(f"\n{args.files} concurrent uploads of {args.size_mib} MiB through Django (gunicorn gthread, "
          f"{args.threads} threads) to {where}; median of {args.rounds}:\n")
    print(f"{'path':<10} {'seconds':>8} {'MB/s':>8} {'worker CPU s':>13} {'peak RSS':>10} {'disk written':>13}")
    rows = {}
    for mode, done in runs.items():
        r = sorted(done, key=lambda x: x["seconds"])[len(done) // 2]
        rows[mode] = r
        print(f"{mode:<10} {r['seconds']:>8.2f} {r['mb_s']:>8.1f} {r['cpu']:>13.2f} "
              f"{max(x['peak_rss'] for x in done) / MiB:>6.0f} MiB "
              f"{max(x['disk_written'] for x in done) / MiB:>9.1f} MiB")
    speedup = rows["streaming"]["mb_s"] / rows["default"]["mb_s"]
    print(f"\nstreaming / default: {speedup:.2f}x (target >= 1.5x); streaming wrote "
          f"{max(x['disk_written'] for x in runs['streaming'])} bytes to disk (target 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
