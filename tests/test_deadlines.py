"""Time promises against servers that stop answering: every HTTP backend.

Targets (issue: deadlines and seam), with ``read_timeout=60`` throughout:
``put(timeout=2)`` raises within 2.5 s; ``cancel.set()`` and ``close()`` from
another thread stop a call within 0.5 s; a body the server stops reading is a
``Timeout`` after ``read_timeout``.  The assertions leave a wide margin (a
loaded 2-core CI machine), the targets are measured in README.
"""

from __future__ import annotations

import threading
import time

import pytest

import upclient
from upclient import errors
from upclient.testing import FaultProxy, SilentServer, UpyunServer

from .conftest import MiB, sha256_file

PASSWORD = "pw-for-deadlines"


def tus(address, **kw):
    return upclient.Client(f"tus+http://{address}/files/", **kw)


def community(address, **kw):
    return upclient.Client(f"community+http://{address}", token="tok-for-deadlines", **kw)


def upyun(address, **kw):
    return upclient.Client("upyun://op@svc", endpoint=address, password=PASSWORD, **kw)


BACKENDS = {"tus": tus, "community": community, "upyun": upyun}


def make(kind, address, **kw):
    kw.setdefault("store", upclient.MemoryStore())
    kw.setdefault("read_timeout", 60)
    return BACKENDS[kind](address, **kw)


def upclient_threads(before=frozenset()):
    """upclient's threads alive now that were not in ``before`` (other tests' clients may linger)."""
    return [t.name for t in threading.enumerate()
            if t.name.startswith("upclient-") and t.is_alive() and t not in before]


@pytest.fixture(params=[True, False], ids=["never-answers", "never-reads"])
def silent(request):
    with SilentServer(reads=request.param) as server:
        yield server


@pytest.fixture
def big_file(make_file):
    """Larger than the socket buffers, so a body nobody reads blocks the send."""
    return make_file(48 * MiB)[0]


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_put_timeout_holds_against_a_silent_server(kind, silent, big_file):
    before = frozenset(threading.enumerate())
    with make(kind, silent.address, part_size=64 * MiB) as client:
        started = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded) as caught:
            client.put(big_file, timeout=2)
        elapsed = time.monotonic() - started
    assert isinstance(caught.value, TimeoutError)
    assert elapsed < 5, f"put(timeout=2) took {elapsed:.2f} s"
    assert silent.accepted >= 1
    assert not upclient_threads(before)


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_cancel_stops_a_call_held_by_a_silent_server(kind, silent, big_file):
    cancel = threading.Event()
    set_at = []

    def fire():
        set_at.append(time.monotonic())
        cancel.set()

    timer = threading.Timer(1.0, fire)
    with make(kind, silent.address, part_size=64 * MiB) as client:
        timer.start()
        try:
            with pytest.raises(errors.Cancelled) as caught:
                client.put(big_file, cancel=cancel)
            late = time.monotonic() - set_at[0]
        finally:
            timer.cancel()
    assert not isinstance(caught.value, errors.DeadlineExceeded)
    assert late < 1.5, f"the call ended {late:.2f} s after the cancel"


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_close_from_another_thread_stops_a_call_and_leaves_no_thread(kind, silent, make_file):
    path = make_file(4 * MiB)[0]
    before = frozenset(threading.enumerate())
    client = make(kind, silent.address, part_size=MiB, concurrency=2)
    closed_at = []

    def close():
        closed_at.append(time.monotonic())
        client.close()

    timer = threading.Timer(1.0, close)
    timer.start()
    try:
        with pytest.raises(errors.Cancelled):
            client.put(path)
        late = time.monotonic() - closed_at[0]
    finally:
        timer.join(10)
    assert late < 1.5, f"the call ended {late:.2f} s after close()"
    assert not upclient_threads(before)


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_read_timeout_bounds_a_server_that_stops_reading_and_is_a_timeout(kind, big_file):
    with SilentServer(reads=False) as deaf:
        with make(kind, deaf.address, part_size=64 * MiB, read_timeout=1,
                  retry=upclient.RetryPolicy.never()) as client:
            started = time.monotonic()
            with pytest.raises(errors.Timeout):
                client.put(big_file)
            elapsed = time.monotonic() - started
    assert elapsed < 5, f"a 1 s read timeout took {elapsed:.2f} s"


def test_verbs_other_than_put_answer_to_close_too():
    with SilentServer() as silent:
        client = make("upyun", silent.address)
        timer = threading.Timer(0.5, client.close)
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(errors.Cancelled):
                client.info("/some/key")
        finally:
            timer.join(10)
        assert time.monotonic() - started < 3


# -- a stall in the middle of an upload keeps every acknowledged part -------------------------


def test_a_part_stalled_mid_upload_times_out_and_the_rerun_sends_only_the_rest(tmp_path, make_file):
    path, _ = make_file(8 * MiB)
    store = upclient.MemoryStore()
    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password=PASSWORD) as server, \
            FaultProxy(server.endpoint) as proxy:
        address = f"127.0.0.1:{proxy.port}"

        def stall_after_three_parts(progress):
            if progress.parts_done >= 3 and not proxy.pending_faults and not armed:
                armed.append(True)
                proxy.stall(30, method="PUT", times=None)

        armed: list = []
        with make("upyun", address, store=store, part_size=MiB, concurrency=1) as client:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded):
                client.put(path, "/stalled.bin", timeout=3, on_progress=stall_after_three_parts)
            assert time.monotonic() - started < 6
        assert armed, "the stall never armed"
        proxy.clear_faults()
        with make("upyun", address, store=store, part_size=MiB, concurrency=1) as client:
            result = client.put(path, "/stalled.bin")
        assert result.resumed
        assert result.sent_bytes <= 5 * MiB, "acknowledged parts were sent again"
        assert server.stored_sha256("/stalled.bin") == sha256_file(path)


def test_a_stalled_tus_patch_times_out_and_the_rerun_finishes(node_server, make_file):
    path, _ = make_file(6 * MiB)
    store = upclient.MemoryStore()
    with FaultProxy(node_server.url) as proxy:
        proxy.stall(30, method="PATCH", times=None)
        with upclient.Client("tus+" + proxy.url_for(node_server.url), store=store, part_size=2 * MiB) as client:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded):
                client.put(path, timeout=2)
            assert time.monotonic() - started < 5
        proxy.clear_faults()
        with upclient.Client("tus+" + proxy.url_for(node_server.url), store=store, part_size=2 * MiB) as client:
            result = client.put(path)
    assert result.resumed
    assert node_server.stored_sha256(result.id) == sha256_file(path)


def test_a_tus_patch_body_the_server_stops_reading_is_bounded(node_server, make_file):
    """OPTIONS and POST are answered; the PATCH's body is never read past 1 MiB."""
    path, _ = make_file(48 * MiB)
    with FaultProxy(node_server.url) as proxy:
        url = "tus+" + proxy.url_for(node_server.url)
        proxy.stop_reading(30, method="PATCH", after=MiB, times=None)
        with upclient.Client(url, store=upclient.MemoryStore(), part_size=16 * MiB) as client:
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded):
                client.put(path, timeout=2)
            assert time.monotonic() - started < 5
        with upclient.Client(url, store=upclient.MemoryStore(), part_size=16 * MiB, read_timeout=1,
                             retry=upclient.RetryPolicy.never()) as client:
            started = time.monotonic()
            with pytest.raises(errors.Timeout):
                client.put(path)
            assert time.monotonic() - started < 5
