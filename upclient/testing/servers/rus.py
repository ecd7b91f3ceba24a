"""The ``resumable-upload`` package's tus server (PyPI), run with this interpreter."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from upclient.testing.servers.process import PathLike, ServerStartError, _ServerProcess

__all__ = ["ResumableUploadServer"]


class ResumableUploadServer(_ServerProcess):
    """The ``resumable-upload`` 0.3.0 tus server (PyPI), run as a subprocess.

    Runs ``python -m resumable_upload serve`` with the given interpreter
    (default: the current one, which must have ``resumable-upload`` installed).

    :param directory: ``--upload-dir``, where upload bytes are kept (created if
        needed). ``None`` makes a temporary directory that :meth:`close`
        removes.
    :param db_path: ``--db-path``, the SQLite database of upload records;
        default ``<directory>/.uploads.sqlite3``.
    :param checksum_algorithms: ``--checksum-algorithms`` (the server always
        advertises the ``checksum`` extension; sha1 is the protocol's minimum).
    :param upload_expiry: ``--upload-expiry`` in seconds (``Upload-Expires``
        is sent); ``None`` for no expiry (the extension is still advertised).
    :param enable_downloads: ``--enable-downloads``: ``GET <upload url>``
        returns a finished upload's bytes.
    :param max_size: ``--max-size`` in bytes (``Tus-Max-Size``).
    :param max_chunk_size: ``--max-chunk-size``: larger PATCH bodies get 413.
    :param request_timeout: ``--request-timeout``: the server's socket read
        timeout in seconds.
    :param log_level: ``--log-level`` of the server's own log (see
        :meth:`output`).
    :param extra_args: more ``serve`` arguments, appended as given.
    :param python: the interpreter that runs the server.
    :param host: the address to listen on.
    :param port: the port; ``None`` picks a free one (by binding port 0).
    :param startup_timeout: seconds to wait for the server to answer.
    :param stop_timeout: seconds between SIGTERM and SIGKILL when stopping.
    :param env: extra environment variables for the process.

    Storage layout: the bytes of upload ``<uuid>`` are in
    ``<directory>/<uuid>``; its record (metadata as JSON text, length,
    offset, expiry, concatenation parts) is a row of table ``uploads`` in the
    SQLite database.
    """

    name = "resumable-upload"
    DEFAULT_CHECKSUM_ALGORITHMS: Tuple[str, ...] = ("sha1", "sha256", "sha512", "md5")

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        db_path: Optional[PathLike] = None,
        checksum_algorithms: Iterable[str] = DEFAULT_CHECKSUM_ALGORITHMS,
        upload_expiry: Optional[float] = 3600,
        enable_downloads: bool = True,
        max_size: Optional[int] = None,
        max_chunk_size: Optional[int] = None,
        request_timeout: Optional[float] = None,
        log_level: str = "INFO",
        extra_args: Sequence[str] = (),
        python: Optional[str] = None,
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
        if isinstance(checksum_algorithms, str):
            checksum_algorithms = [a for a in checksum_algorithms.split(",")]
        self.checksum_algorithms: Tuple[str, ...] = tuple(a.strip().lower() for a in checksum_algorithms if a.strip())
        self.db_path = Path(db_path).resolve() if db_path is not None else self.directory / ".uploads.sqlite3"
        self.upload_expiry = upload_expiry
        self.enable_downloads = enable_downloads
        self.max_size = max_size
        self.max_chunk_size = max_chunk_size
        self.request_timeout = request_timeout
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.python = python or sys.executable

    @classmethod
    def unavailable_reason(cls, python: Optional[str] = None) -> Optional[str]:
        """Why this server cannot run (package missing), or ``None``."""
        if python is None or python == sys.executable:
            import importlib.util

            if importlib.util.find_spec("resumable_upload") is None:
                return "resumable-upload is not installed: pip install 'upclient[testing]' (or resumable-upload==0.3.0)"
        return None

    def _prepare(self) -> None:
        reason = self.unavailable_reason(self.python)
        if reason:
            raise ServerStartError(reason)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)

    def _command(self, port: int) -> List[str]:
        cmd = [
            self.python,
            "-m",
            "resumable_upload",
            "serve",
            "--host",
            self.host,
            "--port",
            str(port),
            "--base-path",
            "/files",
            "--upload-dir",
            str(self.directory),
            "--db-path",
            str(self.db_path),
            "--log-level",
            self.log_level,
        ]
        if self.checksum_algorithms:
            cmd += ["--checksum-algorithms", ",".join(self.checksum_algorithms)]
        if self.upload_expiry is not None:
            cmd += ["--upload-expiry", str(int(self.upload_expiry))]
        if self.enable_downloads:
            cmd.append("--enable-downloads")
        if self.max_size:
            cmd += ["--max-size", str(int(self.max_size))]
        if self.max_chunk_size:
            cmd += ["--max-chunk-size", str(int(self.max_chunk_size))]
        if self.request_timeout is not None:
            cmd += ["--request-timeout", str(self.request_timeout)]
        cmd += self.extra_args
        return cmd

    def _record(self, upload_url: str) -> Dict[str, Any]:
        upload_id = self.upload_id(upload_url)
        if not self.db_path.exists():
            raise FileNotFoundError(str(self.db_path))
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        finally:
            conn.close()
        if row is None:
            raise FileNotFoundError(f"no upload {upload_id!r} in {self.db_path}")
        return dict(row)

    def stored_record(self, upload_url: str) -> Dict[str, Any]:
        """The upload's row in the server's SQLite database, as a dict.

        Columns: ``upload_id``, ``upload_length`` (-1 while deferred),
        ``offset``, ``metadata`` (JSON text), ``created_at``, ``completed``,
        ``is_partial``, ``expires_at``, ``concat_partial_ids``. Raises
        :class:`FileNotFoundError` for an unknown upload.
        """
        return self._record(upload_url)

    def stored_metadata(self, upload_url: str) -> Dict[str, Optional[str]]:
        """The upload's metadata from the database (values decoded)."""
        raw = self._record(upload_url).get("metadata")
        return dict(json.loads(raw)) if raw else {}
