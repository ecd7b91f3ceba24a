"""put_many's pacing: how many files at once follows measured throughput.

The controller is driven with synthetic throughput curves (files/s as a
function of the width), so these tests are exact and take no time.
"""

from __future__ import annotations

import threading

import pytest

from upclient import pacing
from upclient.pacing import FilePacer


def drive(pacer: FilePacer, rate_of, windows: int):
    """Feed ``windows`` measurement windows; return the width after each."""
    clock = [1000.0]
    widths = []
    original = pacing.time.monotonic
    pacing.time.monotonic = lambda: clock[0]
    try:
        pacer._window_start = clock[0]
        for _ in range(windows):
            n = pacer._window()
            clock[0] += n / rate_of(pacer.limit)
            pacer._window_done = n
            pacer._adjust()
            widths.append(pacer.limit)
    finally:
        pacing.time.monotonic = original
    return widths


def test_a_latency_bound_link_climbs_fast_to_the_ceiling():
    widths = drive(FilePacer(8), lambda w: 25.0 * w, 12)  # each file waits on the network
    assert widths[:3] == [2, 4, 8]
    assert min(widths[3:]) >= 7


def test_a_cpu_bound_machine_settles_on_one():
    widths = drive(FilePacer(8), lambda w: 1000.0 / (1 + 0.15 * (w - 1)), 30)  # threads only contend
    assert widths[-10:].count(1) >= 6
    assert max(widths[-10:]) <= 2


def test_a_peak_in_the_middle_is_found_and_kept():
    curve = {1: 100, 2: 180, 3: 240, 4: 200, 5: 150, 6: 120, 7: 100, 8: 90}
    widths = drive(FilePacer(8), lambda w: float(curve[w]), 40)
    assert set(widths[-12:]) <= {2, 3, 4}
    assert widths[-12:].count(3) >= 5


def test_the_width_never_leaves_one_to_the_ceiling():
    widths = drive(FilePacer(3), lambda w: 10.0 * w, 20)
    assert max(widths) == 3 and min(widths) >= 1
    assert drive(FilePacer(1), lambda w: 10.0, 5) == [1] * 5


def test_the_gate_admits_at_most_the_width_and_stops_waiting_on_cancel():
    pacer = FilePacer(4)
    assert pacer.acquire()
    stop = threading.Event()
    got = []
    t = threading.Thread(target=lambda: got.append(pacer.acquire(stop)))
    t.start()
    t.join(0.3)
    assert t.is_alive(), "a second upload got in while the width is one"
    stop.set()
    t.join(2)
    assert got == [False]


@pytest.mark.parametrize("ceiling", [1, 4])
def test_put_many_finishes_every_file_whatever_the_width(ceiling, tmp_path):
    import upclient
    from upclient.backends.base import Backend
    from upclient.result import UploadResult
    from upclient.transfer import Part, UploadSession

    class Instant(UploadSession):
        def __init__(self, source):
            self.source = source

        def pending_parts(self):
            return [Part(0, 0, self.source.size)] if self.source.size else []

        def send_part(self, part, io):
            io.body().read()

        def finish(self):
            return UploadResult(id=self.source.name, size=self.source.size, backend="instant")

    class InstantBackend(Backend):
        name = "instant"

        def open_upload(self, source, **kw):
            return Instant(source)

    paths = []
    for i in range(50):
        p = tmp_path / f"{i}.bin"
        p.write_bytes(b"x" * i)
        paths.append(p)
    client = upclient.Client(InstantBackend("instant://", upclient.Settings(max_files=ceiling)), store=None)
    outcomes = client.put_many(paths)
    assert [o.result.id for o in outcomes] == [p.name for p in paths]
