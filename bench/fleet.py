"""Fleet costs: RedisStore against FileStore, Celery workers against put_many, a killed worker's upload.

Runs a real ``redis-server`` and the UPYUN emulator on 127.0.0.1 (for the
small files ``python -m upclient.testing upyun``, its own process; for the
large upload one in this process, which watches the parts it holds), and
real Celery workers of ``examples/celery_fleet/fleet_app.py``.  Prints:

1. the cost of saving one part's resume record (what an upload does after
   every part): FileStore (a temporary file renamed, on this disk),
   RedisStore (one ``SET``) and RedisStore under the upload's lock (the
   fenced script that checks the lock first: what an upload pays);
2. 1,000 files of 16 KiB through one Celery worker of 4 processes
   (``--pool prefork -c 4``) against one process's ``put_many``, in files/s;
3. a 1 GiB upload whose worker is killed (SIGKILL, the whole worker) once
   the server holds half of its parts, and redelivered to another worker,
   against the same upload uninterrupted: total seconds from sending the
   task to its result, with the visibility timeout and lock ttl the run
   used (the wait they add is most of the difference).

``python bench/fleet.py`` (``make bench`` runs it); ``--quick`` for a
smaller run (200 files, 256 MiB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

REPO = Path(__file__).resolve().parent.parent
FLEET = REPO / "examples" / "celery_fleet"
sys.path.insert(0, str(REPO))

import upclient  # noqa: E402
from upclient.testing.redis import RedisServer  # noqa: E402

MiB = 1 << 20
#: The part size of the large upload.
PART = 16 * MiB

#: A resume record as an upload saves it after each part (UPYUN: its uuid and the parts done).
RECORD = {
    "backend": "upyun", "server": "http://127.0.0.1:8080", "id": "3f1c9a2e-5d0b-4d7e-9b8e-1a2b3c4d5e6f",
    "identity": {"name": "video.mp4", "size": 1 << 30, "mtime_ns": 1700000000123456789,
                 "sample": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    "expires": None,
    "state": {"uuid": "3f1c9a2e-5d0b-4d7e-9b8e-1a2b3c4d5e6f", "key": "/videos/video.mp4", "size": 1 << 30,
              "part_size": 8 * MiB, "serial": False, "done": list(range(0, 128, 2))},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- 1. the cost of a saved part record ---------------------------------------------------


def per_save(store: upclient.BaseStore, n: int, key: str = "k") -> float:
    """µs per ``save`` of the record (best of three rounds of ``n``)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(n):
            store.save(key, dict(RECORD, n=i))
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


def store_costs(redis_url: str, n: int) -> Dict[str, float]:
    out = {}
    with tempfile.TemporaryDirectory(dir=REPO / "build" if (REPO / "build").is_dir() else None) as tmp:
        out["FileStore"] = per_save(upclient.FileStore(Path(tmp) / "resume"), n)
    store = upclient.RedisStore(redis_url, prefix="bench:")
    out["RedisStore"] = per_save(store, n)
    with store.lock("locked") as got:
        assert got
        out["RedisStore, under the upload's lock"] = per_save(store, n, key="locked")
    store.close()
    return out


# -- the servers and workers --------------------------------------------------------------


@contextlib.contextmanager
def upyun_emulator(directory: Path) -> Iterator[str]:
    """``python -m upclient.testing upyun`` in its own process; yields its endpoint."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "upclient.testing", "upyun", "--port", str(port),
                             "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the UPYUN emulator did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def fleet_env(redis_url: str, endpoint: str, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "UPYUN_", "UPCLIENT_"))}
    options = json.loads(extra.pop("FLEET_OPTIONS", "{}"))
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(FLEET)]), FLEET_REDIS=redis_url,
               FLEET_TARGET="upyun://op@svc", FLEET_PASSWORD="pw",
               FLEET_OPTIONS=json.dumps({"endpoint": endpoint, **options}), **extra)
    return env


class Worker:
    """``celery -A fleet_app worker`` in its own session (so SIGKILL reaches its pool's processes too)."""

    def __init__(self, name: str, env: Dict[str, str], log_dir: Path, *args: str) -> None:
        self.log = log_dir / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "fleet_app", "worker", "-n", f"{name}@%h", "-l", "warning",
                 "--without-gossip", "--without-mingle", "--without-heartbeat", *args],
                cwd=FLEET, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def client_app(redis_url: str) -> Any:
    from celery import Celery

    app = Celery("fleet-bench", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    return app


def send(app: Any, path: Path, key: str) -> Any:
    return app.send_task("upclient.upload", args=[str(path)], kwargs={"key": key})


def wait_ready(app: Any, names: List[str], timeout: float = 60) -> None:
    """Until each named worker answers a ping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = app.control.ping(timeout=0.5) or []
        seen = {name.split("@")[0] for answer in answers for name in answer}
        if set(names) <= seen:
            return
    raise RuntimeError(f"workers {names} did not start")


# -- 2. many small files ------------------------------------------------------------------


def small_files(root: Path, count: int) -> List[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = root / f"f{i:04d}.bin"
        path.write_bytes(os.urandom(16 * 1024))
        paths.append(path)
    return paths


def put_many_rate(endpoint: str, paths: List[Path]) -> float:
    with upclient.Client("upyun://op@svc", password="pw", endpoint=endpoint, store=None) as client:
        started = time.perf_counter()
        outcomes = client.put_many(paths, keys=[f"many/{p.name}" for p in paths])
        elapsed = time.perf_counter() - started
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    return len(paths) / elapsed


def celery_rate(redis_url: str, endpoint: str, paths: List[Path], log_dir: Path) -> float:
    env = fleet_env(redis_url, endpoint)
    app = client_app(redis_url)
    worker = Worker("many", env, log_dir, "--pool=prefork", "-c", "4")
    try:
        wait_ready(app, ["many"])
        warm = [send(app, paths[0], f"warm/{i}") for i in range(8)]  # each process makes its client
        for r in warm:
            r.get(timeout=60)
        started = time.perf_counter()
        results = [send(app, p, f"celery/{p.name}") for p in paths]
        for r in results:
            r.get(timeout=600)
        elapsed = time.perf_counter() - started
    finally:
        worker.stop()
        app.close()
    return len(paths) / elapsed


# -- 3. a killed worker's 1 GiB upload ----------------------------------------------------


def big_upload(redis_url: str, upyun: Any, path: Path, key: str, log_dir: Path, *, kill_at: Optional[float],
               visibility: float, lock_ttl: float) -> Dict[str, Any]:
    """Send the upload of ``path`` to a worker; SIGKILL it once the server holds ``kill_at`` of the parts,
    and start another."""
    endpoint = upyun.endpoint
    env = fleet_env(redis_url, endpoint, FLEET_VISIBILITY_TIMEOUT=str(visibility), FLEET_LOCK_TTL=str(lock_ttl),
                    FLEET_OPTIONS=json.dumps({"part_size": PART}))
    app = client_app(redis_url)
    first = Worker(f"{key}-a", env, log_dir, "--pool=prefork", "-c", "1")
    second: Optional[Worker] = None
    try:
        wait_ready(app, [f"{key}-a"])
        started = time.perf_counter()
        task = send(app, path, key)
        killed = None
        if kill_at is not None:
            parts = -(-path.stat().st_size // PART)
            while max([len(u["parts"]) for u in upyun.uploads().values()] or [0]) < kill_at * parts:
                if task.state in ("SUCCESS", "FAILURE"):
                    raise RuntimeError("the upload ended before it could be killed")
                time.sleep(0.005)
            first.kill()
            killed = time.perf_counter() - started
            second = Worker(f"{key}-b", env, log_dir, "--pool=prefork", "-c", "1")
        out = task.get(timeout=900)
        total = time.perf_counter() - started
    finally:
        for w in (first, second):
            if w is not None:
                w.stop()
        app.close()
    return {"total": total, "killed_at": killed, "worker": out["worker"], "resumed": out["resumed"],
            "sent": out["sent_bytes"], "attempts": out["attempts"]}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 files and 256 MiB")
    args = parser.parse_args(argv)
    reason = RedisServer.unavailable_reason()
    if reason:
        print(f"fleet: skipped ({reason})")
        return 0
    count, big = (200, 256 * MiB) if args.quick else (1000, 1024 * MiB)
    visibility, lock_ttl = 10.0, 10.0
    root = Path(tempfile.mkdtemp(prefix="upclient-bench-fleet-"))
    try:
        with RedisServer(root / "redis") as redis_server, upyun_emulator(root / "upyun") as endpoint:
            print("fleet: the cost of saving one part's resume record (µs, best of 3 x 2000)")
            for name, us in store_costs(redis_server.url, 2000).items():
                print(f"  {name:<40} {us:8.1f}")

            paths = small_files(root / "small", count)
            single = put_many_rate(endpoint, paths)
            fleet = celery_rate(redis_server.url, endpoint, paths, root)
            print(f"fleet: {count} files of 16 KiB (files/s)")
            print(f"  {'one process, put_many (max_files=4)':<40} {single:8.1f}")
            print(f"  {'Celery, one worker of 4 processes':<40} {fleet:8.1f}   ({fleet / single:.2f}x)")

            path = root / "big.bin"
            with open(path, "wb") as f:
                for _ in range(big // (64 * MiB)):
                    f.write(os.urandom(64 * MiB))
            from upclient.testing import UpyunServer

            with UpyunServer(root / "upyun-big") as upyun:  # here: the bench looks at the parts it holds
                plain = big_upload(redis_server.url, upyun, path, "plain", root, kill_at=None,
                                   visibility=visibility, lock_ttl=lock_ttl)
                killed = big_upload(redis_server.url, upyun, path, "killed", root, kill_at=0.5,
                                    visibility=visibility, lock_ttl=lock_ttl)
            print(f"fleet: {big // MiB} MiB through a worker (s from send to result; visibility_timeout "
                  f"{visibility:g} s, lock ttl {lock_ttl:g} s)")
            print(f"  {'uninterrupted':<40} {plain['total']:8.1f}")
            print(f"  {'killed half way, redelivered':<40} {killed['total']:8.1f}   (killed at "
                  f"{killed['killed_at']:.1f} s; the second worker sent {killed['sent'] / big:.0%} of the file, "
                  f"resumed={killed['resumed']}, attempt {killed['attempts']})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
