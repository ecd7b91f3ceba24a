"""upclient's pytest plugin: real test servers on 127.0.0.1 as fixtures.

Installed with ``pip install 'upclient[testing]'`` (entry point ``pytest11``
named ``upclient``), so a project's pytest has these fixtures with no
conftest::

    def test_upload(upclient_tus_server, tmp_path):
        path = tmp_path / "report.csv"
        path.write_bytes(b"a,b\\n1,2\\n")
        with upclient_tus_server.client() as client:
            result = client.put(path)
        assert upclient_tus_server.stored_sha256(result.id) == hashlib.sha256(path.read_bytes()).hexdigest()

Servers (each function-scoped, its files under the test's ``tmp_path``,
stopped afterwards, also when the test failed):

``upclient_tus_server``
    ``@tus/server`` when ``node`` and its npm packages are here, else the
    Python server of ``resumable-upload``; ``$UPCLIENT_TUS_SERVER``
    (``auto``, ``node`` or ``python``) picks one, ``.kind`` says which.
``upclient_community_server``, ``upclient_upyun_server``, ``upclient_fdfs_server``
    The emulators of :mod:`upclient.testing` (community parts may be as
    small as 64 KiB; UPYUN is ``upyun://op@svc`` with password ``pw``).

Each is a :class:`~upclient.testing.running.RunningServer`: ``.url`` (what
``Client`` takes), ``.client(**settings)`` (a ready ``upclient.Client``,
credentials included, ``store=None`` unless given), ``.stored_sha256(id)``
(of the bytes the server stored for an ``UploadResult.id``), ``.server``
(the emulator itself), and the server's own fault hooks
(``upclient_community_server.fail_part(2)``, ``upclient_fdfs_server.fail(...)``).

Proxies (factories; every proxy made is stopped afterwards):

``upclient_fault_proxy(upstream, **options)``
    A :class:`~upclient.testing.FaultProxy` in front of ``upstream`` (one of
    the servers above, or a URL); ``server.client(via=proxy)`` talks through it.
``upclient_shaping_proxy(upstream, delay=..., rate=..., **options)``
    A :class:`~upclient.testing.ShapingProxy` (latency, bandwidth cap).

The servers' code is imported when a fixture first needs it: loading the
plugin costs a pytest run only the import of upclient itself.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

from upclient.testing.redis import upclient_redis_server  # noqa: F401 - a fixture of this plugin too

if TYPE_CHECKING:
    from upclient.testing.faultproxy import FaultProxy
    from upclient.testing.running import RunningCommunity, RunningFdfs, RunningTus, RunningUpyun
    from upclient.testing.shaping import ShapingProxy

__all__ = [
    "upclient_tus_server",
    "upclient_community_server",
    "upclient_upyun_server",
    "upclient_fdfs_server",
    "upclient_fault_proxy",
    "upclient_shaping_proxy",
    "upclient_redis_server",
]


@pytest.fixture
def upclient_tus_server(tmp_path: Path) -> Iterator["RunningTus"]:
    """A tus server on 127.0.0.1 (``@tus/server``, else ``resumable-upload``), stopped afterwards."""
    from upclient.testing.running import TUS_SERVER_ENV, running_tus

    kind = os.environ.get(TUS_SERVER_ENV, "auto").strip().lower() or "auto"
    with running_tus(tmp_path / "upclient-tus-server", kind=kind) as server:
        yield server


@pytest.fixture
def upclient_community_server(tmp_path: Path) -> Iterator["RunningCommunity"]:
    """The community multipart API emulator on 127.0.0.1, stopped afterwards.

    It takes parts down to 64 KiB (the service: 5 MiB), so a multipart
    upload in a test needs no big file.
    """
    from upclient.testing.running import running_community

    with running_community(tmp_path / "upclient-community-server", min_part_size=64 * 1024) as server:
        yield server


@pytest.fixture
def upclient_upyun_server(tmp_path: Path) -> Iterator["RunningUpyun"]:
    """The UPYUN emulator on 127.0.0.1 (``upyun://op@svc``, password ``pw``), stopped afterwards."""
    from upclient.testing.running import running_upyun

    with running_upyun(tmp_path / "upclient-upyun-server") as server:
        yield server


@pytest.fixture
def upclient_fdfs_server(tmp_path: Path) -> Iterator["RunningFdfs"]:
    """The FastDFS emulator (a tracker and a storage of group1) on 127.0.0.1, stopped afterwards."""
    from upclient.testing.running import running_fdfs

    with running_fdfs(tmp_path / "upclient-fdfs-server") as server:
        yield server


def _upstream(upstream: Any) -> Any:
    """What a proxy forwards to: a running server's listener, or ``upstream`` as given."""
    from upclient.testing.running import RunningServer

    return upstream.address if isinstance(upstream, RunningServer) else upstream


@pytest.fixture
def upclient_fault_proxy() -> Iterator[Callable[..., "FaultProxy"]]:
    """``make(upstream, **options)``: a started FaultProxy in front of ``upstream``, stopped afterwards."""
    from upclient.testing.faultproxy import FaultProxy

    with contextlib.ExitStack() as proxies:

        def make(upstream: Any, **options: Any) -> FaultProxy:
            return proxies.enter_context(FaultProxy(_upstream(upstream), **options))

        yield make


@pytest.fixture
def upclient_shaping_proxy() -> Iterator[Callable[..., "ShapingProxy"]]:
    """``make(upstream, delay=0.02, rate=20e6, **options)``: a started ShapingProxy, stopped afterwards."""
    from upclient.testing.shaping import ShapingProxy

    with contextlib.ExitStack() as proxies:

        def make(upstream: Any, **options: Any) -> ShapingProxy:
            return proxies.enter_context(ShapingProxy(_upstream(upstream), **options))

        yield make
