"""``Client.put_many``'s per-file callbacks, which the command line's ``put`` runs on."""

from __future__ import annotations

import threading
from typing import Dict, List, Tuple

import pytest

import upclient
from upclient import errors
from upclient.progress import Progress

from .conftest import MiB


def test_progress_and_outcomes_name_their_source_by_index(rus_server, make_file, tmp_path):
    # Two sources with the same file name: only the index tells their progress apart.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = make_file(3 * MiB + 1, "a/same.bin")
    second, _ = make_file(MiB // 2, "b/same.bin")
    missing = tmp_path / "missing.bin"
    sources = [str(first), str(missing), str(second)]
    last: Dict[int, Progress] = {}
    done: List[Tuple[int, upclient.PutOutcome]] = []
    plain: List[Progress] = []
    lock = threading.Lock()

    def on_file_progress(i: int, p: Progress) -> None:
        with lock:
            last[i] = p

    def on_file_done(i: int, outcome: upclient.PutOutcome) -> None:
        with lock:
            done.append((i, outcome))

    with upclient.Client("tus+" + rus_server.url, store=None, part_size=MiB) as client:
        outcomes = client.put_many(sources, keys=["one", None, "three"], on_progress=plain.append,
                                   on_file_progress=on_file_progress, on_file_done=on_file_done)
    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, errors.BadInput)
    assert sorted(i for i, _ in done) == [0, 1, 2]  # once each, as each ended
    assert all(outcome is outcomes[i] for i, outcome in done)
    assert last[0].bytes_done == last[0].total == 3 * MiB + 1
    assert last[2].bytes_done == last[2].total == MiB // 2
    assert (last[0].name, last[2].name) == ("one", "three")  # the keys, one per source
    assert 1 not in last
    assert plain and plain[-1].bytes_done in (3 * MiB + 1, MiB // 2)  # on_progress is still called


def test_a_cancel_before_the_start_reports_no_file_done(rus_server, make_file):
    paths = [str(make_file(1000)[0]) for _ in range(3)]
    cancel = threading.Event()
    cancel.set()
    done: List[int] = []
    with upclient.Client("tus+" + rus_server.url, store=None) as client:
        outcomes = client.put_many(paths, cancel=cancel, on_file_done=lambda i, o: done.append(i))
    assert all(isinstance(o.error, errors.Cancelled) for o in outcomes)
    assert done == []


def test_keys_need_one_entry_per_source(rus_server, make_file):
    path = str(make_file(10)[0])
    with upclient.Client("tus+" + rus_server.url, store=None) as client:
        with pytest.raises(errors.BadInput):
            client.put_many([path, path], keys=["only-one"])
