"""The transfer engine, driven through the Client with an in-memory backend.

The backend here is a plain in-process fake: these tests are about
scheduling (bounds, order, retries, cancellation, progress, the store), not
about a protocol; every real protocol is tested against a real server.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import upclient
from upclient import errors
from upclient.backends.base import Backend
from upclient.transfer import Part, UploadSession
from upclient.result import UploadResult
from upclient.settings import Settings


class FakeSession(UploadSession):
    def __init__(self, backend, source, state):
        self.b = backend
        self.source = source
        self.parallel = backend.parallel
        self.done = set(state["done"]) if state else set()
        self.resumed = bool(state)
        part_size = backend.settings.part_size
        offsets = range(0, source.size, part_size)
        self.parts = [Part(i, o, min(part_size, source.size - o)) for i, o in enumerate(offsets)]
        self.parts_total = len(self.parts)
        self.done_bytes = sum(p.size for p in self.parts if p.index in self.done)
        self.upload_id = "fake-1"
        self.lock = threading.Lock()

    def pending_parts(self):
        return [p for p in self.parts if p.index not in self.done]

    def send_part(self, part, io):
        b = self.b
        with b.lock:
            b.inflight += 1
            b.max_inflight = max(b.max_inflight, b.inflight)
            b.order.append(part.index)
        try:
            fail = b.failures.get(part.index, 0)
            if fail:
                b.failures[part.index] = fail - 1
                io.body().read(10)  # a few bytes went out before the failure
                raise errors.NetworkError("reset")
            body = io.body()
            data = b"".join(iter(lambda: body.read(), b""))
            if b.delay:
                time.sleep(b.delay)
            with b.lock:
                b.stored[part.index] = data
            with self.lock:
                self.done.add(part.index)
        finally:
            with b.lock:
                b.inflight -= 1

    def finish(self):
        data = b"".join(self.b.stored[i] for i in range(len(self.parts)))
        self.b.finished = data
        return UploadResult(id="fake-1", size=len(data), backend="fake")

    def state(self):
        with self.lock:
            return {"done": sorted(self.done)}


class FakeBackend(Backend):
    name = "fake"
    put_options = frozenset({"parallel"})

    def __init__(self, settings, parallel=True, delay=0.0):
        super().__init__("fake://", settings)
        self.parallel = parallel
        self.delay = delay
        self.lock = threading.Lock()
        self.inflight = self.max_inflight = 0
        self.order = []
        self.failures = {}
        self.stored = {}
        self.finished = None

    def open_upload(self, source, *, key, metadata, options, state):
        return FakeSession(self, source, state)


def make_client(parallel=True, delay=0.0, **kw):
    kw.setdefault("part_size", 1000)
    kw.setdefault("store", upclient.MemoryStore())
    kw.setdefault("retry", upclient.RetryPolicy(attempts=3, backoff=0))
    settings = Settings(**{k: v for k, v in kw.items() if k != "store"})
    backend = FakeBackend(settings, parallel=parallel, delay=delay)
    client = upclient.Client(backend, **kw)
    return client, backend


@pytest.fixture
def data_file(tmp_path):
    data = bytes(range(256)) * 40 + b"tail"  # 10244 bytes: 11 parts of 1000
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def test_parallel_parts_never_exceed_the_concurrency(data_file):
    path, data = data_file
    client, backend = make_client(concurrency=3, delay=0.02)
    client.put(path)
    assert backend.finished == data
    assert backend.max_inflight == 3


def test_ordered_backends_get_one_part_at_a_time_in_order(data_file):
    path, data = data_file
    client, backend = make_client(parallel=False, concurrency=4, delay=0.005)
    client.put(path)
    assert backend.max_inflight == 1
    assert backend.order == list(range(11))
    assert backend.finished == data


def test_a_failed_part_is_retried_alone_and_progress_is_not_counted_twice(data_file):
    path, data = data_file
    client, backend = make_client(concurrency=2)
    backend.failures = {3: 2, 7: 1}
    seen = []
    result = client.put(path, on_progress=seen.append)
    assert backend.finished == data
    assert backend.order.count(3) == 3 and backend.order.count(7) == 2
    assert seen[-1].bytes_done == len(data)
    assert max(p.bytes_done for p in seen) == len(data)
    assert result.sent_bytes == len(data) + 30  # three failed tries sent 10 bytes each


def test_a_part_that_keeps_failing_fails_the_upload_and_keeps_the_others(data_file):
    path, data = data_file
    store = upclient.MemoryStore()
    client, backend = make_client(concurrency=1, store=store, parallel=False)
    backend.failures = {5: 99}
    with pytest.raises(errors.NetworkError):
        client.put(path)
    (record,) = [store.load(k) for k in store.keys()]
    assert record["state"]["done"] == [0, 1, 2, 3, 4]
    backend.failures = {}
    result = client.put(path)
    assert result.resumed
    assert result.sent_bytes == len(data) - 5000
    assert backend.finished == data
    assert list(store.keys()) == []


def test_cancel_from_another_thread_stops_quickly_and_leaves_no_busy_thread(data_file):
    path, _ = data_file
    before = set(threading.enumerate())
    client, backend = make_client(concurrency=2, delay=0.2)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(errors.Cancelled):
        client.put(path, cancel=cancel)
    assert time.monotonic() - started < 2
    assert backend.inflight == 0
    client.close()
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("upclient-")]


def test_a_timeout_cancels_the_upload_and_keeps_its_resume_point(data_file):
    path, data = data_file
    store = upclient.MemoryStore()
    client, backend = make_client(concurrency=1, delay=0.1, store=store, parallel=False)
    started = time.monotonic()
    with pytest.raises(errors.Cancelled, match="timed out"):
        client.put(path, timeout=0.35)
    assert time.monotonic() - started < 1.5
    assert backend.inflight == 0
    (record,) = [store.load(k) for k in store.keys()]
    assert record["state"]["done"]
    with pytest.raises(errors.BadInput):
        client.put(path, timeout=0)


def test_ctrl_c_in_the_calling_thread_stops_the_workers_and_keeps_the_resume_point(data_file):
    path, data = data_file
    store = upclient.MemoryStore()
    client, backend = make_client(concurrency=2, delay=0.1, store=store)

    def on_progress(p):
        if p.parts_done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.put(path, on_progress=on_progress)
    assert backend.inflight == 0
    (record,) = [store.load(k) for k in store.keys()]
    assert len(record["state"]["done"]) >= 2
    backend.delay = 0
    assert client.put(path).resumed
    assert backend.finished == data


def test_progress_reports_rate_eta_and_parts(data_file):
    path, data = data_file
    client, _ = make_client(concurrency=1, delay=0.05, parallel=False)
    seen = []
    client.put(path, on_progress=seen.append)
    assert len(seen) >= 2
    middle = seen[len(seen) // 2]
    assert 0 < middle.bytes_done < len(data) and middle.rate > 0 and middle.eta is not None
    assert (seen[-1].parts_done, seen[-1].parts_total) == (11, 11)
    assert seen[-1].fraction == 1.0


def test_small_files_do_not_touch_the_store(tmp_path):
    class CountingStore(upclient.MemoryStore):
        saves = 0

        def save(self, key, record):
            CountingStore.saves += 1
            super().save(key, record)

    path = tmp_path / "small.bin"
    path.write_bytes(b"x" * 999)
    client, backend = make_client(store=CountingStore())
    client.put(path)
    assert CountingStore.saves == 0


def test_a_changed_record_identity_starts_afresh(data_file):
    path, data = data_file
    store = upclient.MemoryStore()
    client, backend = make_client(store=store, concurrency=1, parallel=False)
    backend.failures = {5: 99}
    with pytest.raises(errors.NetworkError):
        client.put(path)
    path.write_bytes(data[::-1])  # same path and size, new content
    os.utime(path, ns=(10**9, 10**9))  # and surely a new mtime, whatever the clock's grain
    backend.failures = {}
    result = client.put(path)
    assert not result.resumed
    assert backend.finished == data[::-1]


# -- hints: the server's answer steers a part -------------------------------------------------


class SteeredSession(FakeSession):
    """Takes half of part 1 on its first try and answers Resync (a short write);
    with ``always``, never settles."""

    def __init__(self, backend, source, state, always=False):
        super().__init__(backend, source, state)
        self.always = always
        self.held = {}
        self.recovered = []

    def confirmed(self, part):
        return self.held.get(part.index, 0)

    def send_part(self, part, io):
        from upclient.transfer import Resync

        start = part.offset + self.held.get(part.index, 0)
        body = io.body(start, part.end)
        if part.index == 1 and (self.always or not self.held):
            half = body.read(part.size // 2)
            if not self.always:  # the server keeps what arrived
                self.held[1] = len(half)
                with self.b.lock:
                    self.b.stored[1] = bytes(half)
            return Resync("the server kept half", offset=part.offset + self.held.get(1, 0))
        rest = b"".join(iter(lambda: body.read(), b""))
        with self.b.lock:
            self.b.stored[part.index] = self.b.stored.get(part.index, b"") + rest
        with self.lock:
            self.done.add(part.index)
        return None

    def recover(self, part, cause):
        self.recovered.append(type(cause).__name__)


def test_a_hint_resends_the_rest_keeps_progress_monotonic_and_is_not_a_warning(data_file, caplog):
    path, data = data_file
    client, backend = make_client(parallel=False, concurrency=1)
    sessions = []

    def open_upload(source, *, key, metadata, options, state):
        s = SteeredSession(backend, source, state)
        sessions.append(s)
        return s

    backend.open_upload = open_upload
    seen = []
    with caplog.at_level("DEBUG", logger="upclient"):
        client.put(path, on_progress=lambda p: seen.append(p.bytes_done))
    assert backend.finished == data
    assert sessions[0].recovered == ["Resync"]
    assert seen == sorted(seen) and seen[-1] == len(data)
    retries = [r for r in caplog.records if r.name == "upclient.retry"]
    assert retries and all(r.levelname == "DEBUG" for r in retries)


def test_a_server_that_never_settles_a_part_is_an_offset_conflict(data_file):
    path, _ = data_file
    client, backend = make_client(parallel=False, concurrency=1)
    backend.open_upload = lambda source, **kw: SteeredSession(backend, source, kw["state"], always=True)
    with pytest.raises(errors.OffsetConflict, match="never settled"):
        client.put(path)


def test_a_try_after_a_partial_one_starts_from_what_the_server_holds():
    from upclient.progress import ProgressTracker

    tracker = ProgressTracker("x", 1000, parts_total=1)
    tracker.reader(0)(600)  # a try sent 600 bytes; the server kept 500 of them
    tracker.drop_attempt(0)
    count = tracker.reader(0, base=500)
    assert tracker.snapshot().bytes_done == 500
    count(500)
    tracker.finish_part(0, 1000)
    assert tracker.snapshot().bytes_done == 1000


def test_parts_a_finish_keeps_asking_for_are_sent_three_times_then_it_is_an_error(data_file):
    from upclient.transfer import MoreParts

    path, _ = data_file
    client, backend = make_client(parallel=False, concurrency=1)
    asked = []

    class Forgetful(FakeSession):
        def finish(self):
            asked.append(len(self.b.order))
            return MoreParts([self.parts[0]], reason="the server forgot part 0")

    backend.open_upload = lambda source, **kw: Forgetful(backend, source, kw["state"])
    with pytest.raises(errors.ServiceError, match="three times"):
        client.put(path)
    sends_of_part_0 = backend.order.count(0)
    assert sends_of_part_0 == 1 + 3, f"part 0 went {sends_of_part_0} times"
    assert len(asked) == 4  # finished after each round, the last one too
