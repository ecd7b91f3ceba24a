"""upclient.contrib.celery run by real Celery workers (examples/celery_fleet/fleet_app.py) on a real Redis.

Two worker processes share a redis-server (broker, results and the
RedisStore) and upload to the UPYUN emulator through a shaping proxy, so
a large file takes long enough to be watched.  Checked on the server side:
a task's file is stored byte-exact; a task sent again finds it done and
sends nothing; retryable errors are retried by Celery and the others fail at
once; progress reaches the task's state; two workers given the same file at
once upload it once; and the fan-out example sends a directory and gathers
the workers' progress.  (A worker killed mid-upload: test_celery_kill.py.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from upclient.testing.redis import RedisServer

from .conftest import MiB

REPO = Path(__file__).resolve().parent.parent
FLEET = REPO / "examples" / "celery_fleet"


# -- the rig: workers, a client app, the servers --------------------------------------------


class Worker:
    """``celery -A fleet_app worker`` as a child process in its own session; stopped (or killed) by the test."""

    def __init__(self, name: str, env: Dict[str, str], log_dir: Path, *, pool: str = "threads",
                 concurrency: int = 1) -> None:
        self.name = name
        self.log = log_dir / f"worker-{name}.log"
        command = [sys.executable, "-m", "celery", "-A", "fleet_app", "worker", "-n", f"{name}@%h",
                   f"--pool={pool}", "-c", str(concurrency), "-l", "info",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, cwd=FLEET, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> "Worker":
        deadline = time.monotonic() + timeout
        while " ready." not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"worker {self.name} did not start:\n{self.text()[-3000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL the worker and its pool's processes at once, as a host that dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@contextlib.contextmanager
def workers(names: str, env: Dict[str, str], log_dir: Path, **options: Any) -> Iterator[List[Worker]]:
    """A worker for each letter of ``names``, started at once and ready; stopped afterwards, whatever happened."""
    started: List[Worker] = []
    try:
        for name in names:
            started.append(Worker(name, env, log_dir, **options))
        for w in started:
            w.wait_ready()
        yield started
    finally:
        for w in started:
            w.stop()


def fleet_env(redis_url: str, endpoint: str, **extra: str) -> Dict[str, str]:
    """The environment of fleet_app for the UPYUN emulator at ``endpoint`` (operator op, password pw)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "UPYUN_", "UPCLIENT_"))}
    options = {"endpoint": endpoint, "part_size": 1 * MiB, "concurrency": 2, "read_timeout": 30}
    options.update(json.loads(extra.pop("FLEET_OPTIONS", "{}")))
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(FLEET)]), FLEET_REDIS=redis_url,
               FLEET_TARGET="upyun://op@svc", FLEET_PASSWORD="pw", FLEET_OPTIONS=json.dumps(options),
               FLEET_LOCK_TTL="3", FLEET_BACKOFF="0.5", **extra)
    return env


def client_app(redis_url: str) -> Any:
    """A Celery app of the test's own that sends tasks by name and reads their states: no worker code."""
    from celery import Celery

    app = Celery("fleet-test", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                    result_extended=True)
    return app


def send(app: Any, path: Path, key: str, **kwargs: Any) -> Any:
    return app.send_task("upclient.upload", args=[str(path)], kwargs={"key": key, **kwargs})


def wait_all(results: List[Any], timeout: float = 120.0, on_poll: Optional[Any] = None) -> None:
    """Until every task has ended (an upper bound, not a measure)."""
    deadline = time.monotonic() + timeout
    while not all(r.state in ("SUCCESS", "FAILURE") for r in results):
        if on_poll is not None:
            on_poll()
        if time.monotonic() > deadline:
            pytest.fail(f"tasks still running after {timeout} s: {[r.state for r in results]}")
        time.sleep(0.05)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def require_redis() -> None:
    reason = RedisServer.unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"redis-server is needed: {reason} (make test installs it)")
        pytest.skip(reason)


# -- the module's fleet: one Redis, one emulator behind a slow link, two workers ----------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    from upclient.testing import UpyunServer
    from upclient.testing.shaping import ShapingProxy

    require_redis()
    root = tmp_path_factory.mktemp("fleet")
    with RedisServer(root / "redis") as redis_server, UpyunServer(root / "upyun") as upyun, \
            ShapingProxy(upyun.url, delay=0.001, rate=4e6) as link:
        env = fleet_env(redis_server.url, f"127.0.0.1:{link.port}", FLEET_ATTEMPTS="1")
        with workers("ab", env, root) as started:
            app = client_app(redis_server.url)
            try:
                yield {"app": app, "upyun": upyun, "workers": started, "env": env, "root": root,
                       "redis": redis_server}
            finally:
                app.close()


def test_a_task_uploads_a_file_and_a_task_sent_again_finds_it_done(fleet, make_file):
    app, upyun = fleet["app"], fleet["upyun"]
    path, digest = make_file(3 * MiB + 5, "once.bin")
    first = send(app, path, "fleet/once.bin")
    out = first.get(timeout=120)
    assert out["id"] == "fleet/once.bin" and out["size"] == 3 * MiB + 5 and not out["done_before"]
    assert out["worker"].split("@")[0] in ("a", "b") and out["attempts"] == 1
    assert upyun.stored_sha256("fleet/once.bin") == digest
    parts_before = len(upyun.part_log)

    again = send(app, path, "fleet/once.bin").get(timeout=120)
    assert again["done_before"] and again["id"] == out["id"]
    assert len(upyun.part_log) == parts_before, "a task sent again uploaded the file again"

    forced = send(app, path, "fleet/once.bin", force=True).get(timeout=120)
    assert not forced["done_before"] and len(upyun.part_log) > parts_before
    assert upyun.stored_sha256("fleet/once.bin") == digest


def test_retryable_errors_are_retried_by_celery_and_the_others_fail_at_once(fleet, make_file):
    from upclient import errors

    app, upyun = fleet["app"], fleet["upyun"]
    small, digest = make_file(64 * 1024, "small.bin")  # one request: the "put" route
    upyun.fail("put", 503, times=2, key="/fleet/flaky.bin")  # each try makes one request (FLEET_ATTEMPTS=1)
    flaky = send(app, small, "fleet/flaky.bin")
    out = flaky.get(timeout=120)
    assert out["attempts"] == 3 and flaky.retries == 2
    assert upyun.stored_sha256("fleet/flaky.bin") == digest

    upyun.fail("put", 401, times=None, code=40100017, msg="sign error", key="/fleet/refused.bin")
    refused = send(app, small, "fleet/refused.bin")
    missing = send(app, small.parent / "no-such-file.bin", "fleet/missing.bin")
    wait_all([refused, missing])
    upyun.clear_faults()
    assert refused.state == "FAILURE" and isinstance(refused.result, errors.AuthError) and refused.retries == 0
    assert missing.state == "FAILURE" and isinstance(missing.result, errors.BadInput) and missing.retries == 0
    assert not upyun.exists("fleet/refused.bin")


def test_two_workers_given_the_same_file_at_once_upload_it_once_and_report_progress(fleet, make_file):
    app, upyun = fleet["app"], fleet["upyun"]
    size = 24 * MiB
    path, digest = make_file(size, "same.bin")
    progress: List[Dict[str, Any]] = []
    seen = len(upyun.part_log)  # the module's server: this test's parts are the ones after these
    results = [send(app, path, "fleet/same.bin") for _ in range(2)]

    def watch() -> None:
        for r in results:
            if r.state == "PROGRESS" and isinstance(r.info, dict):
                progress.append(dict(r.info))

    wait_all(results, on_poll=watch)
    outs = [r.get() for r in results]
    assert sorted(o["done_before"] for o in outs) == [False, True], outs
    uploader = next(o for o in outs if not o["done_before"])
    waiter = next(r for r, o in zip(results, outs) if o["done_before"])
    assert waiter.retries >= 1, "the second task did not run while the first uploaded"
    assert {o["id"] for o in outs} == {"fleet/same.bin"}
    sent = upyun.part_log[seen:]
    assert {u for u, *_ in sent} == {uploader["extra"]["uuid"]}, "the second worker began an upload of its own"
    assert len(sent) == size // MiB, "a part was sent twice"
    assert upyun.part_receipts(uploader["extra"]["uuid"]) == {part: 1 for part in range(size // MiB)}
    assert upyun.stored_sha256("fleet/same.bin") == digest
    # the uploading worker's progress reached the task's state: its name, bytes growing to the size
    assert progress, "no PROGRESS state seen"
    assert {p["worker"] for p in progress} == {uploader["worker"]}
    assert all(p["total"] == size and p["path"] == str(path) for p in progress)
    done = [p["bytes_done"] for p in progress]
    assert done == sorted(done) and 0 < done[0] < size


def test_the_fanout_example_sends_a_directory_to_the_fleet_and_gathers_its_progress(fleet, tmp_path):
    upyun = fleet["upyun"]
    outbox = tmp_path / "outbox"
    sizes = {"a.txt": 10, "b/c.bin": 3 * MiB + 1, "b/d.bin": 12 * MiB, "e.bin": 0, "f.bin": 200 * 1024}
    for rel, size in sizes.items():
        (outbox / rel).parent.mkdir(parents=True, exist_ok=True)
        (outbox / rel).write_bytes(os.urandom(size))
    env = dict(fleet["env"])
    done = subprocess.run([sys.executable, str(FLEET / "fanout.py"), str(outbox), "--prefix", "fanout/",
                           "--every", "0.3", "--timeout", "120"], capture_output=True, text=True, env=env,
                          timeout=180, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout, done.stderr)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(Path(item["path"]).relative_to(outbox).as_posix() for item in lines) == sorted(sizes)
    assert all(item["state"] == "SUCCESS" and item["worker"] for item in lines)
    for rel in sizes:
        assert upyun.stored_sha256(f"fanout/{rel}") == sha256_of(outbox / rel)
    progress = [line for line in done.stderr.splitlines() if line.startswith("fleet: ")]
    assert progress[0] == f"fleet: {len(sizes)} files sent to the workers"
    assert progress[-1].startswith("fleet: 100% ") and f"{len(sizes)} of {len(sizes)} files done" in progress[-1]
    assert any("uploading (" in line for line in progress), progress  # the workers' progress, gathered
