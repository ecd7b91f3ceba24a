"""Checksummed uploads never hold a part in memory (issue 16, item 1).

A part's digest (UPYUN's ``Content-MD5``, tus's ``Upload-Checksum``) is
hashed from the file in small steps by the worker that sends the part, and
the part is then streamed: what the client allocates while it uploads stays
far below one part, where it used to be one part per worker.  The servers
run in their own processes, so tracemalloc here counts the client alone;
what they stored is checked byte for byte, and they check every digest.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterator, Tuple

import pytest

import upclient
from upclient.source import DIGEST_BLOCK

from .conftest import MiB, emulator_process, sha256_file

PART = 8 * MiB


def peak_while(call: Callable[[], Any]) -> Tuple[Any, int]:
    """``call()``'s result and the most Python memory allocated at once while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = call()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture
def upyun_emulator(tmp_path: Path) -> Iterator[Tuple[str, Path]]:
    """``python -m upclient.testing upyun`` in its own process: (its endpoint, its storage directory)."""
    store = tmp_path / "upyun"
    with emulator_process("upyun", "--dir", str(store), "--service", "svc", "--operator", "op",
                          "--password", "pw") as (_, fields):
        yield fields["flags"].split("--endpoint ", 1)[1].split()[0], store


def test_a_checksummed_upyun_upload_never_holds_a_part(upyun_emulator, make_file):
    endpoint, store = upyun_emulator
    size = 6 * PART + 12345
    path, digest = make_file(size)
    with upclient.Client("upyun://op@svc", endpoint=endpoint, password="pw", store=None, part_size=PART,
                         concurrency=4) as client:
        # file_md5=True: the whole file's MD5 goes with complete too, hashed while the parts go
        result, peak = peak_while(lambda: client.put(path, key="big.bin", file_md5=True))
    assert result.extra["uuid"], "not a multipart upload"
    assert sha256_file(store / "files" / "svc" / "big.bin") == digest
    # four workers, each with one digest buffer; before, each held its whole part (4 x 8 MiB)
    assert peak < PART / 2, f"{peak / MiB:.1f} MiB allocated at the peak"


def test_a_checksummed_upyun_put_of_one_part_streams_it(upyun_emulator, make_file):
    endpoint, store = upyun_emulator
    path, digest = make_file(PART - 3)
    with upclient.Client("upyun://op@svc", endpoint=endpoint, password="pw", store=None, part_size=PART) as client:
        _, peak = peak_while(lambda: client.put(path, key="one.bin"))
    assert sha256_file(store / "files" / "svc" / "one.bin") == digest
    assert peak < PART / 4, f"{peak / MiB:.1f} MiB allocated at the peak"


def test_a_tus_upload_with_checksums_never_holds_a_part(rus_server, make_file):
    size = 5 * PART + 7
    path, digest = make_file(size)
    with upclient.Client("tus+" + rus_server.url, store=None, part_size=PART, concurrency=4) as client:
        result, peak = peak_while(lambda: client.put(path))
    assert rus_server.stored_sha256(result.id) == digest  # and the server checked each part's checksum
    assert peak < PART / 2, f"{peak / MiB:.1f} MiB allocated at the peak"


def test_a_part_is_hashed_in_steps_of_one_small_buffer(tmp_path):
    """Source.digest: the same digest as hashlib over the bytes, read with one buffer per thread."""
    data = bytes(range(256)) * (3 * DIGEST_BLOCK // 256 + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with upclient.source.FileSource(path) as src:
        (h, peak) = peak_while(lambda: src.digest(100, len(data) - 200, "md5"))
        assert h.hexdigest() == hashlib.md5(data[100:-100]).hexdigest()
        assert src.digest(0, 0, "sha1").hexdigest() == hashlib.sha1(b"").hexdigest()
    assert peak <= DIGEST_BLOCK + 64 * 1024


def test_a_file_that_shrank_is_refused_while_it_is_hashed(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (3 * DIGEST_BLOCK))
    with upclient.source.FileSource(path) as src:
        path.write_bytes(b"x" * DIGEST_BLOCK)  # the same inode, cut short
        with pytest.raises(upclient.errors.SourceChanged):
            src.digest(0, 3 * DIGEST_BLOCK)
