"""A burst of small FastDFS files asks the tracker once, not once a file; a failed upload asks again."""

from __future__ import annotations

import hashlib

import upclient
from upclient.backends.fdfs.protocol import Cmd
from upclient.testing import FdfsServer


def test_a_burst_of_small_files_asks_the_tracker_less_than_once_a_file(tmp_path):
    with FdfsServer(tmp_path / "fdfs") as server:
        with upclient.Client(server.url, store=None) as client:
            server.reset_counts()
            ids = [client.put(b"%d" % i * 1000, key=f"f{i}.txt").id for i in range(20)]
            asked = server.counts[int(Cmd.QUERY_STORE)]
        assert 1 <= asked < 20
        for i, fid in enumerate(ids):
            assert server.stored_sha256(fid) == hashlib.sha256(b"%d" % i * 1000).hexdigest()


def test_an_upload_that_fails_asks_the_tracker_again(tmp_path):
    with FdfsServer(tmp_path / "fdfs") as server:
        with upclient.Client(server.url, store=None, retry=upclient.RetryPolicy(attempts=3, backoff=0)) as client:
            client.put(b"warm", key="a.txt")
            server.reset_counts()
            server.fail(int(Cmd.UPLOAD), after=100)  # the storage drops the connection mid-body, once
            result = client.put(b"x" * 1000, key="b.txt")
            asked = server.counts[int(Cmd.QUERY_STORE)]
        assert asked >= 1  # the retry did not reuse the storage that failed
        assert server.stored_sha256(result.id) == hashlib.sha256(b"x" * 1000).hexdigest()
