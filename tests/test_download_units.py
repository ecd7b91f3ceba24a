"""The pieces of ranged downloads that need no server: the range book, range answers, digests, keys."""

from __future__ import annotations

import pytest

from upclient import errors
from upclient.download import download_key
from upclient.transfer.download import RangeBook, RangeWidth
from upclient.transfer.ranges import RangeIgnored, check_range_answer, digest_of


def test_a_range_book_cuts_a_window_into_ranges_and_knows_which_are_done():
    book = RangeBook(10, 10 + 25, 10)
    assert book.count == 3
    assert [(book.offset(i), book.stop(i)) for i in range(3)] == [(10, 20), (20, 30), (30, 35)]
    assert book.prefix_end() == 10 and not book.complete
    book.mark(2)
    book.mark(0)
    assert book.done_bytes == 15 and book.prefix_end() == 20
    assert book.intervals() == [[0, 1], [2, 3]]
    assert book.runs(split=True) == [(1, 1)]
    book.mark(1)
    assert book.complete and book.prefix_end() == 35 and book.intervals() == [[0, 3]]


def test_missing_neighbours_make_one_run_unless_split():
    book = RangeBook.from_intervals(0, 100, 10, [[2, 4], [7, 8]])
    assert book.missing() == [0, 1, 4, 5, 6, 8, 9]
    assert book.runs(split=False) == [(0, 1), (4, 6), (8, 9)]
    assert book.runs(split=True) == [(i, i) for i in book.missing()]
    assert RangeBook.from_intervals(0, 100, 10, book.intervals()).missing() == book.missing()


def test_an_empty_window_is_complete_from_the_start():
    book = RangeBook(0, 0, 16)
    assert book.count == 0 and book.complete and book.runs(split=True) == []


def test_range_answers():
    ok = dict(strict=True, backend="b")
    check_range_answer(206, "bytes 100-199/1000", 100, 100, 1000, **ok)
    check_range_answer(206, "bytes 900-999/1000", 900, 200, 1000, **ok)  # the file ends first
    check_range_answer(200, None, 0, 1000, 1000, **ok)  # the whole file was asked for
    check_range_answer(200, None, 100, 100, 1000, strict=False, backend="b")
    with pytest.raises(RangeIgnored):
        check_range_answer(200, None, 100, 100, 1000, **ok)
    with pytest.raises(errors.ServiceError):
        check_range_answer(206, "bytes 0-99/1000", 100, 100, 1000, **ok)
    with pytest.raises(errors.ServiceError):
        check_range_answer(206, "bytes 100-299/1000", 100, 100, 1000, **ok)
    with pytest.raises(errors.ServiceError):
        check_range_answer(206, "pages 1-2", 100, 100, 1000, **ok)


def test_only_well_formed_digests_are_checked():
    assert digest_of("md5", '"D41D8CD98F00B204E9800998ECF8427E"') == ("md5", "d41d8cd98f00b204e9800998ecf8427e")
    assert digest_of("md5", "d41d8cd98f00b204e9800998ecf8427e-3") is None  # a multipart ETag
    assert digest_of("md5", None) is None and digest_of("md5", "") is None
    assert digest_of("crc32", 0x1234) == ("crc32", "00001234")
    assert digest_of("crc32", -1) == ("crc32", "ffffffff")


def test_download_keys_differ_by_every_part_and_are_store_keys():
    base = ("upyun", "http://127.0.0.1:1", "/a.bin", "/tmp/a.bin", 100, 0, 100)
    keys = {download_key(*base)}
    for i, other in enumerate(("fdfs", "http://127.0.0.1:2", "/b.bin", "/tmp/b.bin", 101, 1, 99)):
        keys.add(download_key(*(base[:i] + (other,) + base[i + 1:])))
    assert len(keys) == 8
    assert all(k.startswith("download-") and k.replace("-", "").isalnum() for k in keys)


def test_one_stream_that_keeps_a_core_busy_gets_no_company():
    width = RangeWidth(4, now=0.0, cpu=0.0)
    width.observe(0.1, 100, cpu=0.1)  # under a window: nothing yet
    assert (width.limit, width.settled) == (1, False)
    width.observe(0.4, 400_000_000, cpu=0.35)  # 1 GB/s, the process busy 88 % of the time
    assert (width.limit, width.settled) == (1, True)


def test_the_width_doubles_while_it_pays_and_steps_back_when_it_does_not():
    width = RangeWidth(8, now=0.0, cpu=0.0)
    width.observe(0.4, 8_000_000, cpu=0.02)  # 20 MB/s, the process idle: waiting on the network
    assert (width.limit, width.settled) == (2, False)
    width.observe(0.8, 8_000_000 + 15_000_000, cpu=0.04)  # 37.5 MB/s
    assert (width.limit, width.settled) == (4, False)
    width.observe(1.2, 23_000_000 + 16_000_000, cpu=0.06)  # 40 MB/s: not 15 % better
    assert (width.limit, width.settled) == (2, True)
    width.observe(9.0, 10**9, cpu=0.1)
    assert width.limit == 2


def test_the_width_stops_at_the_concurrency():
    width = RangeWidth(4, now=0.0, cpu=0.0)
    for i in range(1, 5):
        width.observe(0.4 * i, sum((10, 20, 40, 80)[:i]) * 400_000, cpu=0.0)
    assert (width.limit, width.settled) == (4, True)
    assert RangeWidth(1, now=0.0, cpu=0.0).settled
