"""What every backend must do, stated once (the way s3transfer's
``BaseGeneralInterfaceTest`` does).  A backend's test module subclasses
:class:`BackendContract`, sets ``__test__ = True`` and provides two fixtures:

- ``client_factory(**settings) -> upclient.Client`` against its real server;
- ``stored_sha256(result) -> str``: the digest of the bytes the server stored
  for an upload (read on the server side, not through the client).

Each test checks bytes on the server, not just the absence of an exception.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from upclient import errors
from upclient.source import FileSource

from .conftest import MiB, sha256_bytes

PART = 256 * 1024


def resume_points(store) -> list:
    """The store's resume records (digest records, remembered on purpose, aside)."""
    return [k for k in store.keys() if not k.startswith("digest-")]


class HookedFileSource(FileSource):
    """A file source that calls ``hook(offset)`` before each read, from the reading thread."""

    def __init__(self, path, hook: Callable[[int], None]) -> None:
        super().__init__(path)
        self.hook = hook

    def read(self, offset: int, length: int) -> bytes:
        self.hook(offset)
        return super().read(offset, length)


class BackendContract:
    __test__ = False

    #: Whether the backend can download (get) what it stored.
    can_get = True
    #: Whether the backend can delete what it stored.
    can_delete = True
    #: The part size the tests use (a backend with a larger minimum raises it).
    part = PART
    #: Options every put of the contract passes (FastDFS: resumable=True or not).
    put_options: dict = {}
    #: Whether a put keeps a resume point across an interruption.
    resumable = True

    @pytest.mark.parametrize(
        "parts,extra",
        [(0, 0), (0, 1), (1, -1), (1, 0), (1, 1), (3, 17)],
        ids=["empty", "one-byte", "part-minus-one", "one-part", "part-plus-one", "several-parts"],
    )
    def test_put_round_trip_is_byte_exact(self, client_factory, stored_sha256, make_file, parts, extra):
        part = self.part
        size = parts * part + extra
        path, digest = make_file(size)
        with client_factory(part_size=part) as client:
            result = client.put(path, **self.put_options)
            assert result.size == size
            assert stored_sha256(result) == digest
            if self.can_get:
                assert sha256_bytes(client.get(result.id)) == digest

    def test_progress_reaches_exactly_the_size_and_never_goes_back(self, client_factory, make_file):
        part = self.part
        path, _ = make_file(5 * part + 3)
        seen = []
        with client_factory(part_size=part) as client:
            client.put(path, on_progress=seen.append, **self.put_options)
        assert seen, "no progress reported"
        assert seen[-1].bytes_done == seen[-1].total == 5 * part + 3
        assert seen[-1].parts_done == seen[-1].parts_total >= 1  # how many is the backend's choice
        done = [p.bytes_done for p in seen]
        assert done == sorted(done)

    def test_put_bytes_and_file_objects(self, client_factory, stored_sha256, make_file):
        part = self.part
        path, digest = make_file(2 * part + 5)
        with client_factory(part_size=part) as client:
            r1 = client.put(path.read_bytes(), key="from-bytes.bin", **self.put_options)
            with open(path, "rb") as f:
                r2 = client.put(f, key="from-file.bin", **self.put_options)
        assert stored_sha256(r1) == digest
        assert stored_sha256(r2) == digest

    def test_cancel_keeps_the_resume_point_and_the_next_put_sends_only_the_rest(
        self, client_factory, stored_sha256, make_file, store
    ):
        if not self.resumable:
            pytest.skip("puts of this configuration keep no resume point")
        part = self.part
        size = 24 * part
        path, digest = make_file(size)
        cancel = threading.Event()

        def hook(offset: int) -> None:
            if offset >= size // 3:
                cancel.set()

        with client_factory(part_size=part, concurrency=2, store=store) as client:
            with HookedFileSource(path, hook) as source, pytest.raises(errors.Cancelled):
                client.put(source, cancel=cancel, **self.put_options)
            assert resume_points(store), "the resume point was not kept"
            result = client.put(path, **self.put_options)
        assert result.resumed
        assert result.sent_bytes <= size - size // 3 + 2 * part
        assert stored_sha256(result) == digest
        assert not resume_points(store), "a finished upload left its resume point"

    def test_unknown_put_option_is_bad_input_before_any_request(self, client_factory, make_file):
        path, _ = make_file(10)
        with client_factory() as client:
            with pytest.raises(errors.BadInput, match="no_such_option"):
                client.put(path, no_such_option=1)

    def test_missing_file_and_directory_are_bad_input(self, client_factory, tmp_path):
        with client_factory() as client:
            with pytest.raises(errors.BadInput, match="no such file"):
                client.put(tmp_path / "missing.bin")
            with pytest.raises(errors.BadInput, match="directory"):
                client.put(tmp_path)

    def test_get_a_byte_range(self, client_factory, make_file):
        part = self.part
        if not self.can_get:
            pytest.skip("this backend cannot download")
        path, _ = make_file(3 * part)
        data = path.read_bytes()
        with client_factory(part_size=part) as client:
            result = client.put(path, **self.put_options)
            assert client.get(result.id, offset=part - 5, length=10) == data[part - 5 : part + 5]
            assert client.get(result.id, offset=3 * part - 4) == data[-4:]

    def test_get_to_a_file(self, client_factory, make_file, tmp_path):
        part = self.part
        if not self.can_get:
            pytest.skip("this backend cannot download")
        path, digest = make_file(2 * part + 1)
        with client_factory(part_size=part) as client:
            result = client.put(path, **self.put_options)
            dest = tmp_path / "copy.bin"
            assert client.get(result.id, dest) == 2 * part + 1
        assert sha256_bytes(dest.read_bytes()) == digest

    def test_get_reports_progress_and_can_be_cancelled(self, client_factory, make_file, tmp_path):
        if not self.can_get:
            pytest.skip("this backend cannot download")
        path, digest = make_file(3 * MiB + 5)
        seen = []
        with client_factory() as client:
            result = client.put(path, **self.put_options)
            data = client.get(result.id, on_progress=seen.append)
            assert sha256_bytes(data) == digest
            assert (seen[-1].bytes_done, seen[-1].total) == (3 * MiB + 5, 3 * MiB + 5)
            cancel = threading.Event()
            cancel.set()
            dest = tmp_path / "never.bin"
            with pytest.raises(errors.Cancelled):
                client.get(result.id, dest, cancel=cancel)
            assert not dest.exists() and not list(tmp_path.glob("never.bin*"))
            with pytest.raises(errors.BadInput, match="no directory"):
                client.get(result.id, tmp_path / "missing-dir" / "x.bin")

    def test_delete_then_it_no_longer_exists(self, client_factory, make_file):
        if not self.can_delete:
            pytest.skip("this backend cannot delete")
        path, _ = make_file(100)
        with client_factory() as client:
            result = client.put(path, **self.put_options)
            assert client.exists(result.id)
            client.delete(result.id)
            assert not client.exists(result.id)
            with pytest.raises(errors.NotFound):
                client.info(result.id)

    def test_put_many_gives_one_outcome_per_source_in_order(self, client_factory, stored_sha256, make_file, tmp_path):
        part = self.part
        files = [make_file(n) for n in (10, 2 * part + 3, 1000)]
        missing = tmp_path / "not-there.bin"
        with client_factory(part_size=part) as client:
            outcomes = client.put_many([files[0][0], missing, files[1][0], files[2][0]], **self.put_options)
        assert [o.ok for o in outcomes] == [True, False, True, True]
        assert isinstance(outcomes[1].error, errors.BadInput)
        for outcome, (_, digest) in zip([outcomes[0], outcomes[2], outcomes[3]], files):
            assert stored_sha256(outcome.result) == digest

    def test_sixteen_threads_share_one_client(self, client_factory, stored_sha256, make_file):
        part = self.part
        files = [make_file(part * (i % 3) + 100 * i + 1) for i in range(16)]
        results = [None] * 16
        failures = []

        with client_factory(part_size=part, concurrency=4) as client:

            def work(i: int) -> None:
                try:
                    results[i] = client.put(files[i][0], **self.put_options)
                except BaseException as exc:  # reported below
                    failures.append(exc)

            threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert not failures
        for result, (_, digest) in zip(results, files):
            assert stored_sha256(result) == digest

    def test_a_file_changed_during_upload_fails_clearly_and_stores_no_mix(
        self, client_factory, make_file, store
    ):
        part = self.part
        size = 16 * part
        path, _ = make_file(size)

        changed = threading.Event()

        def hook(offset: int) -> None:
            if offset >= size // 4 and not changed.is_set():
                changed.set()
                with open(path, "ab") as f:  # grows it: seen even on coarse mtime clocks
                    f.write(b"0123456789")

        with client_factory(part_size=part, concurrency=1, store=store) as client:
            with HookedFileSource(path, hook) as source, pytest.raises(errors.SourceChanged):
                client.put(source, **self.put_options)
        assert changed.is_set()
        assert not resume_points(store), "a resume point for a changed file was kept"

    def test_closed_client_refuses_work_and_leaves_no_threads(self, client_factory, make_file):
        part = self.part
        path, _ = make_file(4 * part)
        before = set(threading.enumerate())
        client = client_factory(part_size=part)
        client.put(path, **self.put_options)
        client.close()
        alive = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("upclient-")]
        assert not alive
        with pytest.raises(errors.BadInput, match="closed"):
            client.put(path, **self.put_options)


__all__ = ["BackendContract", "MiB"]
