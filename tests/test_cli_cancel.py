"""The commands' cancel token: Ctrl-C stops ``put`` and ``sync`` without a watchdog on every request.

``upclient put`` and ``upclient sync`` run their uploads in a thread and
cancel them from the main thread on Ctrl-C.  Their token is upclient's own
signal, which tells the requests in flight itself when it is set; a
``threading.Event`` cannot, so every request of every file registered with the
deadline watchdog, and its thread was started again and again (42 threads for
a sync of 1,000 small files).  Run in-process, against the UPYUN emulator;
what is stored is checked on the server.  That Ctrl-C still stops both
commands at once is tested with the real command in test_deadlines.py and
test_cli.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List

import pytest

from upclient.cli import main
from upclient.transfer import deadline

from .test_sync_rig import KiB, make_tree


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> List[object]:
    """Every signal handed to the watchdog while the test runs."""
    seen: List[object] = []
    real = deadline._watchdog.watch

    def watch(signal: object) -> None:
        seen.append(signal)
        real(signal)  # type: ignore[arg-type]

    monkeypatch.setattr(deadline._watchdog, "watch", watch)
    return seen


def flags(server) -> List[str]:
    return [server.url, *server.cli_flags(), "-q", "--no-progress"]


def test_a_sync_without_a_deadline_needs_no_watchdog(upclient_upyun_server, tmp_path: Path, watched, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    contents = make_tree(tmp_path / "tree", {f"d/{i}.bin": 10 * KiB + i for i in range(12)})
    assert main(["sync", str(tmp_path / "tree"), *flags(upclient_upyun_server), "--prefix", "n"]) == 0
    for rel, data in contents.items():
        assert upclient_upyun_server.stored_sha256(f"n/{rel}") == hashlib.sha256(data).hexdigest()
    assert watched == []


def test_a_put_of_several_files_without_a_deadline_needs_no_watchdog(upclient_upyun_server, tmp_path: Path, watched,
                                                                     monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    contents = make_tree(tmp_path, {f"{i}.bin": 10 * KiB + i for i in range(5)})
    paths = [str(tmp_path / rel) for rel in contents]
    assert main(["put", *paths, "--to", *flags(upclient_upyun_server)]) == 0
    for rel, data in contents.items():
        assert upclient_upyun_server.stored_sha256(rel) == hashlib.sha256(data).hexdigest()
    assert watched == []
