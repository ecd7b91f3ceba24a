"""A Celery worker killed with SIGKILL in the middle of an upload; the task goes to another worker, which resumes.

Worker a (prefork pool, its whole process group killed at once, as a
host that dies) uploads a file to the UPYUN emulator through a slow link
and is killed once the server holds half of its parts.  Redis hands the
unacknowledged task to worker b (after the transport's visibility
timeout), which waits for a's claim on the upload to lapse and resumes it
from the RedisStore: measured on the server, it sends less than 60% of the
file again, through the same multipart upload, and the stored bytes are
the source's.

The 200 MiB upload takes about 15 s on two cores (the link gives it
24 MB/s): it runs by default.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

import pytest

from upclient.testing.redis import RedisServer

from .conftest import MiB
from .test_celery_fleet import client_app, fleet_env, require_redis, send, workers

def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.timeout(300)
def test_a_killed_workers_200_mib_upload_is_resumed_by_another_worker(tmp_path, make_file):
    from upclient.testing import UpyunServer
    from upclient.testing.shaping import ShapingProxy

    require_redis()
    size, part, rate = 200 * MiB, 4 * MiB, 12e6  # two parts in flight: 24 MB/s, about 9 s in all
    path, digest = make_file(size, "huge.bin")
    nparts = size // part
    with RedisServer(tmp_path / "redis") as redis_server, UpyunServer(tmp_path / "upyun") as upyun, \
            ShapingProxy(upyun.url, delay=0.001, rate=rate) as link:
        env = fleet_env(redis_server.url, f"127.0.0.1:{link.port}", FLEET_VISIBILITY_TIMEOUT="4",
                        FLEET_OPTIONS=json.dumps({"part_size": part}))
        app = client_app(redis_server.url)
        try:
            progress: List[Dict[str, Any]] = []

            def half_held() -> bool:
                if task.state == "PROGRESS":
                    progress.append(dict(task.info))
                held = [len(u["parts"]) for u in upyun.uploads().values()]
                return bool(held) and max(held) >= nparts // 2

            with workers("a", env, tmp_path, pool="prefork") as (first,):
                task = send(app, path, "fleet/huge.bin")
                wait_until(half_held, 120, "the server to hold half of the parts")
                first.kill()
            assert first.proc.returncode is not None
            wait_until(lambda: link.active_connections == 0, 20, "the killed worker's connections to close")
            time.sleep(0.2)  # what the link still held has reached the server
            (upload,) = upyun.uploads().values()
            held = len(upload["parts"])
            assert nparts // 2 <= held < nparts, "the upload was not killed in the middle"
            assert progress and {p["worker"].split("@")[0] for p in progress} == {"a"}
            seen = len(upyun.part_log)

            with workers("b", env, tmp_path):
                out = task.get(timeout=180)
        finally:
            app.close()
        assert out["worker"].startswith("b@") and out["resumed"] and not out["done_before"], out
        again = upyun.part_log[seen:]
        resent = sum(received for _, _, _, received in again)
        assert resent < 0.6 * size, f"the second worker sent {resent / size:.0%} of the file again"
        assert resent >= (nparts - held) * part  # it did send the rest (measured on the server)
        assert {u for u, *_ in upyun.part_log} == {out["extra"]["uuid"]}, "the upload was started afresh"
        assert upyun.stored_sha256("fleet/huge.bin") == digest
