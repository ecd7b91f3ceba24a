"""The hand-over between Django's request thread and a put: BytePipe, and what a cut stream leaves.

The pipe is tested with real threads; the cut stream against real servers
(@tus/server and the FastDFS emulator, the two that store a stream as it
arrives): an upload whose source fails midway must leave nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

from upclient.contrib.django.pipe import BytePipe
from upclient.errors import Cancelled, DeadlineExceeded

MiB = 1024 * 1024


def test_the_reader_gets_every_byte_in_order_while_at_most_capacity_waits() -> None:
    pipe = BytePipe(256 * 1024)
    data = os.urandom(5 * MiB + 123)
    got: List[bytes] = []

    def read_all() -> None:
        while True:
            block = pipe.read(100_000)
            if not block:
                return
            got.append(block)

    reader = threading.Thread(target=read_all)
    reader.start()
    for i in range(0, len(data), 64 * 1024):
        pipe.write(data[i : i + 64 * 1024])
    pipe.close()
    reader.join(30)
    assert b"".join(got) == data
    assert pipe.peak <= 256 * 1024
    assert pipe.written == len(data)


def test_a_chunk_larger_than_the_capacity_still_goes_through() -> None:
    pipe = BytePipe(10)
    pipe.write(b"x" * 100)
    pipe.close()
    assert pipe.read(-1) == b"x" * 100
    assert pipe.read(5) == b""


def test_fail_wakes_a_writer_blocked_on_a_full_pipe() -> None:
    pipe = BytePipe(4)
    pipe.write(b"1234")
    errors: List[BaseException] = []

    def write() -> None:
        try:
            pipe.write(b"5678")
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    pipe.fail(Cancelled("the put failed"))
    writer.join(30)
    assert not writer.is_alive()
    assert isinstance(errors[0], Cancelled)
    with pytest.raises(Cancelled):
        pipe.read(1)


def test_a_reader_waiting_for_bytes_that_never_come_stops_at_the_deadline() -> None:
    pipe = BytePipe(1024, deadline=time.monotonic() + 0.3)
    with pytest.raises(DeadlineExceeded):
        pipe.read(1)
    with pytest.raises(DeadlineExceeded):  # and the writer learns it too
        pipe.write(b"late")


def _tus_uploads(directory: Path) -> List[Path]:
    return [p for p in directory.iterdir() if p.is_file() and not p.name.endswith(".json")]


@pytest.mark.parametrize("backend", ["tus", "fdfs"])
def test_a_stream_cut_off_midway_leaves_no_upload_on_the_server(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The browser goes away after 3 MiB: the put fails, and the server holds nothing of it.

    The server is seen holding the partial upload before the cut, so the
    test cannot pass because nothing had arrived yet.
    """
    server = request.getfixturevalue(f"upclient_{backend}_server")
    if backend == "tus":
        directory = Path(server.server.directory)

        def held() -> int:
            return sum(p.stat().st_size for p in _tus_uploads(directory))

        def count() -> int:
            return len(_tus_uploads(directory))
    else:

        def held() -> int:
            return sum(os.path.getsize(server.server.path(f)) for f in server.server.files())

        def count() -> int:
            return len(server.server.files())

    pipe = BytePipe(256 * 1024, name="cut.bin")
    digest = hashlib.sha256()
    outcome: List[BaseException] = []

    with server.client(part_size=MiB) as client:

        def put() -> None:
            try:
                client.put(pipe, key="cut.bin")
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=put)
        worker.start()
        for _ in range(3 * 4):
            block = os.urandom(256 * 1024)
            digest.update(block)
            pipe.write(block)
        _wait_for(lambda: held() >= 2 * MiB, "the server to hold part of the stream")
        pipe.fail(Cancelled("the browser went away"))
        worker.join(60)
        assert not worker.is_alive()
    assert outcome and isinstance(outcome[0], Cancelled)
    assert count() == 0, "a partial upload was left on the server"


def _wait_for(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    """Poll until ``condition`` holds; a generous upper bound, not a timing assertion."""
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


class _Generated:
    """A non-seekable stream of ``size`` bytes handed out 64 KiB at a time, as a request body is."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(64 * 1024)

    def read(self, n: int = -1) -> bytes:
        take = min(self.left, len(self.block), n if n is not None and n >= 0 else len(self.block))
        self.left -= take
        return self.block[:take]

    def seekable(self) -> bool:
        return False


def test_a_stream_of_unknown_size_is_held_about_one_part_at_a_time(upclient_tus_server: "object") -> None:
    """What a streamed upload holds in memory is near one part, not a part, the next and a copy."""
    import tracemalloc

    part = 4 * MiB
    with upclient_tus_server.client(part_size=part) as client:  # type: ignore[attr-defined]
        tracemalloc.start()
        try:
            result = client.put(_Generated(40 * MiB), key="measured.bin")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.size == 40 * MiB
    assert peak < 2.5 * part, f"{peak / MiB:.1f} MiB held for parts of {part / MiB:.0f} MiB"
