"""The community emulator's server: its settings, lifecycle, faults, counters and inspection.

The routes are :mod:`.handlers`, the endpoints :mod:`.api`, the records and
bytes :mod:`.state`, credentials and part URLs :mod:`.auth`; the package
docstring (:mod:`upclient.testing.community`) describes the protocol.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

from upclient.testing.community.api import CommunityApi
from upclient.testing.community.auth import Credentials, PartUrls, user_for_token
from upclient.testing.community.handlers import CommunityHandler, HandlerHost
from upclient.testing.community.protocol import ENDPOINTS, file_object
from upclient.testing.community.state import FileStore, Part, Upload
from upclient.testing.faults import Fault
from upclient.testing.httpbase import GiB, HTTPEmulator, MiB, PathLike, file_digest
from upclient.testing.tls import ServerTLS

__all__ = ["CommunityServer"]

log = logging.getLogger("upclient.testing.community")


class CommunityServer(HTTPEmulator):
    """An emulator of the community multipart API on ``127.0.0.1`` (see the package docstring).

    :param directory: where parts and files are stored (created if needed);
        ``None`` makes a temporary directory that :meth:`close` removes.
    :param tokens: accepted bearer tokens: an iterable (each token's user is
        :meth:`user_for_token`) or a mapping token -> user id (several
        tokens may map to one user, as with rotating tokens).
    :param api_keys: accepted ``X-API-Key`` values.
    :param host: the address to listen on.
    :param port: the port; 0 picks a free one (kept across :meth:`stop` / :meth:`start`).
    :param default_part_size: the part size when init does not ask for one.
    :param min_part_size: requested part sizes below this are raised to it
        (every part but the last is at least this big).
    :param max_part_size: requested part sizes above this are lowered to it.
    :param max_parts: the most parts one upload may have (the part size
        grows to keep to it).
    :param url_lifetime: seconds a presigned part URL stays valid.
    :param clock: returns the time in epoch seconds (expiry, timestamps,
        file keys); inject one to move time forward in tests.
    :param secret: the HMAC key of part URLs (default: random).
    :param bucket, region: reported in file objects.
    :param max_connections: the most connections served at once (one thread
        each); more wait in the listen backlog.
    :param idle_timeout: seconds a connection may stay silent (idle
        keep-alive, or a stalled body) before it is closed.
    :param public_url: the base URL (``http://host:port``, no path) put in
        every URL the emulator hands out (part upload URLs, ``oss_url``,
        ``cdn_url``, ``imagekit_url``) instead of :attr:`url`, so clients
        reach them through a proxy in front of it; ``None``: :attr:`url`.
    :param tls: serve HTTPS: :class:`~upclient.testing.tls.TLSCertificates`
        or a server :class:`ssl.SSLContext` (one requiring client
        certificates gives mutual TLS). :attr:`url` and every URL handed out
        are then ``https://``, and a client reaches the API as
        ``community+https://127.0.0.1:PORT``.

    All methods are thread-safe.
    """

    handler_class = CommunityHandler
    log = log

    def __init__(
        self,
        directory: Optional[PathLike] = None,
        *,
        tokens: Union[Iterable[str], Mapping[str, str]] = (),
        api_keys: Iterable[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        default_part_size: int = 8 * MiB,
        min_part_size: int = 5 * MiB,
        max_part_size: int = 5 * GiB,
        max_parts: int = 10000,
        url_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        secret: Optional[bytes] = None,
        bucket: str = "community-emulator",
        region: str = "local",
        max_connections: int = 64,
        idle_timeout: float = 30.0,
        public_url: Optional[str] = None,
        tls: ServerTLS = None,
    ) -> None:
        self.credentials = Credentials(tokens, api_keys)
        if min(default_part_size, min_part_size, max_part_size, max_parts) < 1 or min_part_size > max_part_size:
            raise ValueError("part sizes and max_parts must be >= 1, min_part_size <= max_part_size")
        super().__init__(
            directory,
            host=host,
            port=port,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            temp_prefix="upclient-community-",
            tls=tls,
        )
        self.default_part_size = int(default_part_size)
        self.min_part_size = int(min_part_size)
        self.max_part_size = int(max_part_size)
        self.max_parts = int(max_parts)
        self.url_lifetime = float(url_lifetime)
        self.clock = clock
        self.bucket = bucket
        self.region = region
        self.public_url: Optional[str] = public_url.rstrip("/") if public_url else None

        self.part_urls = PartUrls(secret if secret is not None else secrets.token_bytes(32), self._now)
        self.files = FileStore(self.directory, self._lock, self._now)
        self.api = CommunityApi(self)
        self._part_puts = 0
        self._part_bytes = 0
        self._part_log: List[Tuple[str, int, int]] = []

    def _prepare_directory(self) -> None:
        self.files.prepare()

    def _now(self) -> float:
        return self.clock()

    @property
    def _public_base(self) -> str:
        """The base of the URLs handed out: ``public_url`` if set, else :attr:`url`."""
        return self.public_url or self.url

    @staticmethod
    def user_for_token(token: str) -> str:
        """The user id of a bearer token given as a plain iterable: ``user-<12 hex>``."""
        return user_for_token(token)

    def _file_object(self, record: Upload) -> Dict[str, Any]:
        """A record's file object, with this server's URLs, bucket and region (lock held)."""
        return file_object(record, base=self._public_base, bucket=self.bucket, region=self.region)

    # ------------------------------------------------------------- inspection

    def stored_path(self, file_id: str) -> Path:
        """The path of the assembled file (it exists once the file is confirmed)."""
        return self.files.object_path(self.files.get(file_id))

    def stored_sha256(self, file_id: str) -> str:
        """Hex SHA-256 of the stored file; :class:`FileNotFoundError` if it is not stored."""
        return file_digest(self.stored_path(file_id), "sha256")

    def part_path(self, file_id: str, part_number: int) -> Path:
        """Where part ``part_number`` of an open upload is (or would be) stored."""
        return self.files.parts_dir(self.files.get(file_id)) / str(int(part_number))

    def uploaded_parts(self, file_id: str) -> List[int]:
        """The numbers of the parts the server holds for an upload, in order."""
        record = self.files.get(file_id)
        with self._lock:
            return [p.number for p in record.parts if p.etag is not None]

    def file_object(self, file_id: str) -> Dict[str, Any]:
        """The file object of a record (deleted ones included), as the API returns it."""
        record = self.files.get(file_id)
        with self._lock:
            return self._file_object(record)

    def file_ids(self) -> List[str]:
        """The ids of every record, oldest first (deleted ones included)."""
        with self._lock:
            return [r.id for r in self.files.oldest_first_locked()]

    # ------------------------------------------------------------------- faults

    def fail_part(
        self, part_number: int, status: int = 500, times: Optional[int] = 1, *, file_id: Optional[str] = None
    ) -> None:
        """The next ``times`` PUTs of part ``part_number`` (of ``file_id``, or of any upload) fail.

        A PUT with a valid URL has its body read and dropped, then gets
        ``status`` (0: the connection is closed without an answer, which the
        SDK retries as a network error). Nothing is stored.
        """
        match = {"route": "part", "part_number": int(part_number), "file_id": file_id}
        self._arm(Fault("fail", times=times, match=match, status=int(status)))

    def fail_complete(
        self, status: int = 500, times: Optional[int] = 1, *, code: Optional[int] = None, commit: bool = False
    ) -> None:
        """The next ``times`` completes answer ``status`` (envelope ``code``: ``code`` or ``status``).

        ``commit=True``: the complete is carried out first (the file is
        confirmed) and only its answer is replaced, as when a response is lost.
        ``status`` 0 closes the connection without an answer.
        """
        self.fail_request("complete", status, times, code=code, commit=commit)

    def fail_request(
        self,
        endpoint: str,
        status: int = 500,
        times: Optional[int] = 1,
        *,
        code: Optional[int] = None,
        commit: bool = False,
    ) -> None:
        """Like :meth:`fail_complete` for any endpoint of :data:`ENDPOINTS` but ``part``.

        ``status`` 200 with a ``code`` makes a business error.
        """
        if endpoint not in ENDPOINTS or endpoint == "part":
            raise ValueError(f"endpoint must be one of {ENDPOINTS} but 'part' (use fail_part)")
        if endpoint == "download" and commit:
            raise ValueError("commit does not apply to downloads")
        self._arm(Fault("fail", times=times, match={"route": endpoint}, status=int(status), code=code, commit=commit))

    def expire_urls(self) -> None:
        """Every part URL issued so far is expired from now on (403); new ones are not."""
        generation = self.part_urls.expire_all()
        log.info("CommunityServer: part URLs before generation %d expired", generation)

    def _part_for_put(self, file_id: str, number: int) -> Tuple[Part, Optional[Fault]]:
        """The part a PUT stores and the fault it meets, if any; one lock hold, so a
        fault is used up only by a PUT that would otherwise have been stored."""
        with self._lock:
            part = self.files.open_part_locked(file_id, number)
            fault = self._use_fault_locked(lambda f: f.matches(route="part", file_id=file_id, part_number=number))
            return part, fault

    # ----------------------------------------------------------------- counters

    @property
    def part_puts(self) -> int:
        """PUT requests to part URLs, whatever their outcome."""
        with self._lock:
            return self._part_puts

    @property
    def part_bytes(self) -> int:
        """Body bytes received by part PUTs, whatever their outcome."""
        with self._lock:
            return self._part_bytes

    @property
    def part_log(self) -> List[Tuple[str, int, int]]:
        """``(file_id, part_number, status)`` of every part PUT, in order (0: no answer)."""
        with self._lock:
            return list(self._part_log)

    def reset_counters(self) -> None:
        """Zero the request counters and the part log."""
        with self._lock:
            self._requests.clear()
            self._part_puts = 0
            self._part_bytes = 0
            self._part_log.clear()

    def _log_part(self, file_id: str, number: int, status: int, nbytes: int) -> None:
        with self._lock:
            self._part_puts += 1
            self._part_bytes += nbytes
            self._part_log.append((file_id, number, status))


if TYPE_CHECKING:  # the handlers take their owner for a HandlerHost: mypy checks that the server is one
    _handler_host: Type[HandlerHost] = CommunityServer
