"""The reference tus server, ``@tus/server`` with ``@tus/file-store`` on Node.js.

The script that runs it ships in this package; where its npm packages are
found, or how to install them, is :mod:`.nodepackages`'s job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import ssl
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from upclient.testing.servers.nodepackages import (
    NODE_DIR_ENV,
    NODE_MODULES_ENV,
    SCRIPT,
    find_node_modules,
)
from upclient.testing.servers.process import PathLike, ServerStartError, _ServerProcess, log
from upclient.testing.tls import TLSCertificates

__all__ = ["TusNodeServer", "NODE_DIR_ENV", "NODE_MODULES_ENV", "NODE_BIN_ENV", "MIN_NODE_VERSION"]

#: Environment variable naming the ``node`` executable to use.
NODE_BIN_ENV = "UPCLIENT_NODE"
#: Oldest Node.js that @tus/server 2.4.5 supports.
MIN_NODE_VERSION = (20, 19, 0)


_install_lock = threading.Lock()
_node_version_cache: Dict[str, Tuple[int, ...]] = {}


def _node_version(node: str) -> Tuple[int, ...]:
    if node not in _node_version_cache:
        try:
            out = subprocess.run(
                [node, "--version"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerStartError(f"cannot run {node!r} --version: {exc}") from exc
        match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", out)
        if not match:
            raise ServerStartError(f"unexpected output of {node} --version: {out!r}")
        _node_version_cache[node] = tuple(int(x) for x in match.groups())
    return _node_version_cache[node]


class TusNodeServer(_ServerProcess):
    """The reference tus server, ``@tus/server`` + ``@tus/file-store``, on Node.js.

    :param directory: where the file store keeps uploads (created if needed).
        ``None`` makes a temporary directory that :meth:`close` removes.
    :param node_modules: the ``node_modules`` directory holding
        ``@tus/server`` and ``@tus/file-store``; default: the environment
        variable ``UPCLIENT_TUS_NODE_MODULES``, else the first of the places
        :mod:`upclient.testing.servers.nodepackages` lists (a source
        checkout's ``tests/servers``, ``NODE_PATH``, the user cache). When
        they are nowhere, :meth:`start` raises :class:`ServerStartError`
        naming the ``npm install`` command that puts them in the user cache.
    :param node_dir: a directory with ``package.json``, ``package-lock.json``
        and ``node_modules`` (default ``$UPCLIENT_TUS_NODE_DIR``): its
        ``node_modules`` is used, and installed with ``npm ci`` if missing.
    :param node: the ``node`` executable (default: ``$UPCLIENT_NODE`` or
        ``node`` on ``PATH``).
    :param expiration: seconds after creation when an unfinished upload
        expires (``Upload-Expires`` is sent); 0 turns expiration off.
    :param max_size: ``Tus-Max-Size`` in bytes (``None``: no limit).
    :param relative_location: send a relative ``Location`` instead of an
        absolute one built from the request's ``Host`` header.
    :param auto_install: run ``npm ci`` in ``node_dir`` (or in the source
        checkout's ``tests/servers``) when its ``node_modules`` lacks the
        packages; never anywhere else.
    :param tls: serve HTTPS (node's ``https`` module) with the server
        certificate of these :class:`~upclient.testing.tls.TLSCertificates`;
        :attr:`url` and an absolute ``Location`` are then ``https://``.
    :param require_client_cert: with ``tls``: a client must present a
        certificate signed by the CA of ``tls`` (mutual TLS), else its
        handshake fails (node logs it to :meth:`output`).
    :param host, port, startup_timeout, stop_timeout, env: see
        :class:`ResumableUploadServer`; ``port=None`` lets the server pick a
        free port itself.

    Storage layout: the bytes of upload ``<id>`` are in ``<directory>/<id>``
    and its record (JSON: ``id``, ``size``, ``metadata``, ``creation_date``)
    in ``<directory>/<id>.json``.
    """

    name = "tus-node-server"
    script_name = "tus-node-server.mjs"

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        node_modules: Optional[PathLike] = None,
        node_dir: Optional[PathLike] = None,
        node: Optional[str] = None,
        expiration: float = 3600.0,
        max_size: Optional[int] = None,
        relative_location: bool = False,
        auto_install: bool = True,
        tls: Optional[TLSCertificates] = None,
        require_client_cert: bool = False,
        host: str = "127.0.0.1",
        port: Optional[int] = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(
            directory,
            host=host,
            port=port,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            env=env,
        )
        self._node_modules_arg = node_modules
        self._node_dir_arg = node_dir
        #: The ``node_modules`` directory in use (known once started).
        self.node_modules: Optional[Path] = None
        self.node = node or os.environ.get(NODE_BIN_ENV) or "node"
        self.expiration = float(expiration)
        self.max_size = max_size
        self.relative_location = relative_location
        self.auto_install = auto_install
        if require_client_cert and tls is None:
            raise ValueError("require_client_cert needs tls")
        self.tls = tls
        self.require_client_cert = require_client_cert

    @classmethod
    def unavailable_reason(
        cls,
        node: Optional[str] = None,
        *,
        installed: bool = False,
        node_modules: Optional[PathLike] = None,
        node_dir: Optional[PathLike] = None,
    ) -> Optional[str]:
        """Why this server cannot run here (no suitable ``node``), or ``None``.

        Meant for ``pytest.skip``. It does not check the npm packages, which
        :meth:`start` may install in a source checkout, unless
        ``installed=True``: then they must already be where
        :meth:`start` would look (``node_modules``, ``node_dir`` as for the
        constructor).
        """
        if installed:
            search = find_node_modules(node_modules, node_dir)
            if search.found is None:
                return search.missing_message()
        node = node or os.environ.get(NODE_BIN_ENV) or "node"
        if shutil.which(node) is None:
            return f"{node!r} not found"
        try:
            version = _node_version(node)
        except ServerStartError as exc:
            return str(exc)
        if version < MIN_NODE_VERSION:
            return "Node.js %s is older than %s" % (
                ".".join(map(str, version)),
                ".".join(map(str, MIN_NODE_VERSION)),
            )
        return None

    def _script(self) -> Path:
        return SCRIPT

    def _prepare(self) -> None:
        script = self._script()
        if not script.is_file():  # pragma: no cover - a broken installation
            raise ServerStartError(f"{script} not found: upclient was installed without its package data")
        node_path = shutil.which(self.node)
        if node_path is None:
            raise ServerStartError(f"{self.node!r} not found; @tus/server needs Node.js >= 20.19")
        version = _node_version(self.node)
        if version < MIN_NODE_VERSION:
            raise ServerStartError(
                "Node.js %s is too old for @tus/server 2.4.5 (needs >= 20.19)" % ".".join(map(str, version))
            )
        self._ensure_installed()

    def _ensure_installed(self) -> None:
        if self.node_modules is not None:
            return
        search = find_node_modules(self._node_modules_arg, self._node_dir_arg)
        if search.found is None and search.installable is not None and self.auto_install:
            self._npm_ci(search.installable)
            search = find_node_modules(self._node_modules_arg, self._node_dir_arg)
        if search.found is None:
            raise ServerStartError(search.missing_message())
        self.node_modules = search.found

    @staticmethod
    def _npm_ci(node_dir: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise ServerStartError(f"@tus/server is not installed in {node_dir} and npm is not available")
        marker = node_dir / "node_modules" / "@tus" / "server" / "package.json"
        with _install_lock, _interprocess_lock(node_dir):
            if marker.is_file():
                return
            log.info("installing the Node test servers: npm ci --prefix %s", node_dir)
            result = subprocess.run(
                [npm, "ci", "--prefix", str(node_dir), "--no-audit", "--no-fund"],
                capture_output=True,
                text=True,
                timeout=600,
                stdin=subprocess.DEVNULL,
            )
            if result.returncode != 0 or not marker.is_file():
                raise ServerStartError(
                    f"npm ci --prefix {node_dir} failed with status {result.returncode}",
                    result.stdout + result.stderr,
                    result.returncode,
                )

    def _uses_stdout_url(self) -> bool:
        return True

    def _cwd(self) -> Optional[Path]:
        return self.directory

    def _command(self, port: int) -> List[str]:
        cmd = [
            self.node,
            str(self._script()),
            "--dir",
            str(self.directory),
            "--host",
            self.host,
            "--port",
            str(port),
            "--expiration-ms",
            str(int(round(self.expiration * 1000))),
        ]
        if self.node_modules is not None:
            cmd += ["--node-modules", str(self.node_modules)]
        if self.max_size:
            cmd += ["--max-size", str(int(self.max_size))]
        if self.relative_location:
            cmd.append("--relative-location")
        if self.tls is not None:
            cmd += ["--tls-cert", str(self.tls.server_cert), "--tls-key", str(self.tls.server_key)]
            if self.require_client_cert:
                cmd += ["--tls-client-ca", str(self.tls.ca_pem)]
        return cmd

    def _probe_context(self) -> Optional[ssl.SSLContext]:
        if self.tls is None:
            return None
        return self.tls.client_context(with_client_cert=self.require_client_cert)

    def record_path(self, upload_url: str) -> Path:
        """The JSON file holding the upload's record (``<directory>/<id>.json``)."""
        return self.directory / (self.upload_id(upload_url) + ".json")

    def stored_metadata(self, upload_url: str) -> Dict[str, Optional[str]]:
        """The upload's metadata from its JSON record (values decoded).

        A key sent without a value maps to ``None``. Raises
        :class:`FileNotFoundError` for an unknown upload.
        """
        record = json.loads(self.record_path(upload_url).read_text("utf-8"))
        return dict(record.get("metadata") or {})


@contextlib.contextmanager
def _interprocess_lock(directory: Path) -> Any:
    """Serialize ``npm ci`` between processes (pytest-xdist workers)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"upclient-npm-{key}.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
