"""A stream that stops giving bytes cannot hold a call past its deadline, its cancel or ``close()``.

A pipe whose writer stalls (``pg_dump | ...`` waiting on a lock, a browser
that stops sending its body) blocks a read where no socket shutdown reaches.
Each test gives ``put`` the read end of a pipe, writes a little into it and
then nothing, and runs the call in a thread so that a hang fails the test
instead of holding the suite.  On every backend (tus and FastDFS take a
stream of unknown size; UPYUN is told the size; the community API spools the
stream to learn its MD5).  Once the writer has ended, the servers are checked
to hold no finished copy of the stream.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional

import pytest

from upclient import errors

KiB = 1024
MiB = 1024 * KiB
FIRST = b"x" * (40 * KiB)  # the bytes the writer gives before it stalls (less than a pipe holds)


@pytest.fixture(params=["tus", "upyun", "community", "fdfs"])
def server(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"upclient_{request.param}_server")


@pytest.fixture
def stalled() -> Iterator[Any]:
    """The read end of a pipe holding :data:`FIRST`, whose writer then stalls (closed at the end)."""
    r, w = os.pipe()
    os.write(w, FIRST)
    reader = os.fdopen(r, "rb")
    try:
        yield reader
    finally:
        os.close(w)  # a read given up on ends now
        reader.close()


def run(call: Callable[[], Any], limit: float = 20) -> Dict[str, Any]:
    """``call()`` in a thread: what it raised and how long it took; fails if it is still running at ``limit``."""
    outcome: Dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the call was still running {limit} s later: a stalled stream held it"
    return outcome


def put_stream(client: Any, server: Any, stream: Any, **kw: Any) -> Any:
    size: Optional[int] = 10 * MiB if server.backend == "upyun" else None  # UPYUN needs it first
    return client.put(stream, key="stalled.bin", size=size, **kw)


def assert_nothing_stored(server: Any) -> None:
    if server.backend == "upyun":
        with pytest.raises(FileNotFoundError):
            server.stored_sha256("stalled.bin")


def test_put_timeout_holds_against_a_stream_that_stops(server, stalled):
    with server.client(part_size=1 * MiB) as client:
        outcome = run(lambda: put_stream(client, server, stalled, timeout=1))
    assert isinstance(outcome.get("error"), errors.DeadlineExceeded), outcome
    assert outcome["took"] < 5, f"put(timeout=1) took {outcome['took']:.2f} s"
    assert_nothing_stored(server)


def test_cancel_stops_a_put_waiting_for_a_stream(server, stalled):
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    with server.client(part_size=1 * MiB) as client:
        timer.start()
        try:
            outcome = run(lambda: put_stream(client, server, stalled, cancel=cancel))
        finally:
            timer.cancel()
    error = outcome.get("error")
    assert isinstance(error, errors.Cancelled) and not isinstance(error, errors.DeadlineExceeded), outcome
    assert outcome["took"] < 5, f"the put ended {outcome['took']:.2f} s after it started (cancel at 0.5 s)"
    assert_nothing_stored(server)


def test_close_stops_a_put_waiting_for_a_stream(upclient_tus_server, stalled):
    client = upclient_tus_server.client(part_size=1 * MiB)
    timer = threading.Timer(0.5, client.close)
    timer.start()
    try:
        outcome = run(lambda: client.put(stalled, key="stalled.bin"))
    finally:
        timer.cancel()
        client.close()
    assert isinstance(outcome.get("error"), errors.Cancelled), outcome
    assert outcome["took"] < 5


def test_a_stream_that_flows_is_read_whole_with_a_deadline(upclient_tus_server):
    """The waiting must not cost a byte: a stream fed slowly, in small writes, arrives exact."""
    import hashlib

    r, w = os.pipe()
    data = os.urandom(3 * MiB + 17)

    def feed() -> None:
        with os.fdopen(w, "wb") as out:
            for i in range(0, len(data), 256 * KiB):
                out.write(data[i:i + 256 * KiB])
                out.flush()
                time.sleep(0.02)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with upclient_tus_server.client(part_size=1 * MiB) as client, os.fdopen(r, "rb") as stream:
        outcome = run(lambda: client.put(stream, key="flowing.bin", timeout=15))
    feeder.join(5)
    result = outcome.get("value")
    assert result is not None, outcome
    assert result.size == len(data)
    assert upclient_tus_server.stored_sha256(result.id) == hashlib.sha256(data).hexdigest()


def test_cancel_stops_a_copy_whose_source_stalls(upclient_upyun_server, upclient_tus_server, upclient_fault_proxy):
    """A sync's copy streams a download into the upload: a source that stalls must not hold the upload."""
    from upclient.sync.copy import CopySource
    from upclient.sync.items import SourceFile

    data = os.urandom(3 * MiB)
    with upclient_upyun_server.client() as upyun:
        upyun.put(data, key="src.bin")
    proxy = upclient_fault_proxy(upclient_upyun_server)
    proxy.stall(60, method="GET")
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    with upclient_upyun_server.client(via=proxy) as source, upclient_tus_server.client(part_size=1 * MiB) as dest:
        copy = CopySource(source, SourceFile(key="src.bin", ref="src.bin", size=len(data)))
        timer.start()
        try:
            outcome = run(lambda: dest.put(copy, key="copy.bin", cancel=cancel))
        finally:
            timer.cancel()
            copy.close()
    assert isinstance(outcome.get("error"), errors.Cancelled), outcome
    assert outcome["took"] < 5, f"the copy ended {outcome['took']:.2f} s after it started (cancel at 0.5 s)"


class StalledBody:
    """A stream with no descriptor (as a WSGI request body is): a little, then a read that blocks."""

    def __init__(self) -> None:
        self.sent = False
        self.release = threading.Event()

    def read(self, n: int = -1) -> bytes:
        if not self.sent:
            self.sent = True
            return FIRST[:n] if n >= 0 else FIRST
        self.release.wait(30)
        return b""


def test_put_timeout_holds_against_a_body_without_a_descriptor(upclient_tus_server):
    body = StalledBody()
    try:
        with upclient_tus_server.client(part_size=1 * MiB) as client:
            outcome = run(lambda: client.put(body, key="body.bin", timeout=1))
    finally:
        body.release.set()  # the read left blocked in its thread returns
    assert isinstance(outcome.get("error"), errors.DeadlineExceeded), outcome
    assert outcome["took"] < 5, f"put(timeout=1) took {outcome['took']:.2f} s"


def test_a_pipe_that_takes_the_signal_is_read_in_the_calling_thread(upclient_tus_server):
    """Django's BytePipe waits under the call's signal itself: no reading thread, and still bounded."""
    from upclient.contrib.django.pipe import BytePipe

    pipe = BytePipe(1 * MiB)
    pipe.write(FIRST)
    readers = []
    real_read = pipe.read

    def read(size: int = -1, stop: Any = None) -> bytes:
        readers.append(threading.current_thread())
        return real_read(size, stop)

    pipe.read = read  # type: ignore[method-assign]
    callers = []
    with upclient_tus_server.client(part_size=1 * MiB) as client:
        outcome = run(lambda: callers.append(threading.current_thread()) or client.put(pipe, key="p.bin", timeout=1))
    assert isinstance(outcome.get("error"), errors.DeadlineExceeded), outcome
    assert outcome["took"] < 5
    assert readers and set(readers) == set(callers)
