"""A test server as a client sees it: the URL, the settings, the CLI command, what it stored.

The pytest fixtures (:mod:`upclient.testing.plugin`) and ``python -m
upclient.testing`` hand these out, so what a test uses and what the command
prints come from one place::

    with running_tus(tmp_path) as server:
        with server.client() as client:
            result = client.put(path)
        assert server.stored_sha256(result.id) == digest
        command = server.cli_command()   # "upclient put FILE --to tus+http://..."

Each :class:`RunningServer` wraps one server of :mod:`upclient.testing`
(:attr:`~RunningServer.server`, whose methods, fault hooks included, are
also reachable on the wrapper itself) and is a context manager that starts
and stops it.

* :attr:`~RunningServer.url`: what ``Client(...)`` and ``--to`` take.
* :attr:`~RunningServer.settings`: the other ``Client`` arguments it needs
  (credentials, the UPYUN endpoint, the CA to trust over HTTPS).
* :meth:`~RunningServer.client`: a ready ``upclient.Client`` (``store=None``
  unless given), also through a proxy (``via=``).
* :meth:`~RunningServer.stored_sha256`: the digest of what the server stored
  for an ``UploadResult.id``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
from typing import TYPE_CHECKING, Any, ClassVar, Dict, Iterator, List, Optional, Tuple, TypeVar, Union

from upclient.testing.tls import TLSCertificates

if TYPE_CHECKING:  # imported when used: importing the plugin starts no server code
    import upclient
    from upclient.testing.community import CommunityServer
    from upclient.testing.fdfs import FdfsServer
    from upclient.testing.servers import ResumableUploadServer, TusNodeServer
    from upclient.testing.upyun import UpyunServer

__all__ = [
    "RunningServer",
    "RunningTus",
    "RunningCommunity",
    "RunningUpyun",
    "RunningFdfs",
    "running_tus",
    "running_community",
    "running_upyun",
    "running_fdfs",
    "tus_server",
    "choose_tus_kind",
    "TUS_KINDS",
    "TUS_SERVER_ENV",
    "DEFAULT_TOKEN",
    "DEFAULT_OPERATOR",
    "DEFAULT_PASSWORD",
    "DEFAULT_SERVICE",
    "port_or_free",
]

log = logging.getLogger("upclient.testing")

PathLike = Union[str, "os.PathLike[str]"]
Running = TypeVar("Running", bound="RunningServer")

#: Which tus server :func:`tus_server` runs: ``node`` (``@tus/server``),
#: ``python`` (``resumable-upload``), or ``auto`` (node when it and its npm
#: packages are here, else python).
TUS_KINDS = ("auto", "node", "python")
#: Environment variable the ``upclient_tus_server`` fixture reads its kind from.
TUS_SERVER_ENV = "UPCLIENT_TUS_SERVER"

#: Credentials the emulators accept unless told otherwise.
DEFAULT_TOKEN = "upclient-test-token"
DEFAULT_SERVICE = "svc"
DEFAULT_OPERATOR = "op"
DEFAULT_PASSWORD = "pw"


def port_or_free(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens on it and it can be bound now, else 0 (pick a free one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, preferred))
        except OSError:
            return 0
    return preferred


class RunningServer:
    """One server of :mod:`upclient.testing`, with what a client needs to reach it.

    Attributes the wrapper lacks are looked up on :attr:`server`, so a
    server's fault hooks and inspection methods are called on it directly
    (``upclient_community_server.fail_part(2)``).
    """

    #: The backend's name, as ``UploadResult.backend`` says it.
    backend: ClassVar[str] = ""

    def __init__(self, server: Any, *, certs: Optional[TLSCertificates] = None) -> None:
        self.server = server
        #: The certificates the server was started with (HTTPS), or None.
        self.certs = certs

    # ------------------------------------------------------------- lifecycle

    def __enter__(self: Running) -> Running:
        self.server.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.server.__exit__(*exc_info)

    def __getattr__(self, name: str) -> Any:
        if name == "server":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.server, name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} {self.server!r}>"

    # ------------------------------------------------------------- what a client needs

    @property
    def url(self) -> str:
        """The URL ``Client(...)`` and ``upclient put --to`` take."""
        raise NotImplementedError

    @property
    def settings(self) -> Dict[str, Any]:
        """The ``Client`` arguments beyond the URL that reach this server (credentials, endpoint, CA)."""
        settings = self._own_settings()
        if self.certs is not None:
            settings["verify"] = str(self.certs.ca_pem)
        return settings

    @property
    def address(self) -> Tuple[str, int]:
        """``(host, port)`` of the server's listener: what a proxy in front of it forwards to."""
        raise NotImplementedError

    def cli_flags(self) -> List[str]:
        """The ``upclient`` command-line flags beyond ``--to`` that reach this server."""
        return []

    def cli_environment(self) -> Dict[str, str]:
        """Environment variables the ``upclient`` command needs (the CA to trust over HTTPS)."""
        return {"REQUESTS_CA_BUNDLE": str(self.certs.ca_pem)} if self.certs is not None else {}

    def cli_command(self, file: str = "FILE") -> str:
        """The exact shell command that uploads ``file`` here."""
        env = [f"{name}={shlex.quote(value)}" for name, value in self.cli_environment().items()]
        command = shlex.join(["upclient", "put", file, "--to", self.url, *self.cli_flags()])
        return " ".join([*env, command])

    def python_snippet(self) -> str:
        """The exact Python expression that makes a client of this server."""
        args = [repr(self.url), *(f"{name}={value!r}" for name, value in self.settings.items())]
        return f"upclient.Client({', '.join(args)})"

    def client(self, *, via: Any = None, **settings: Any) -> "upclient.Client":
        """A ready ``upclient.Client`` of this server: credentials included, ``store=None`` unless given.

        ``via``: a :class:`~upclient.testing.FaultProxy` or
        :class:`~upclient.testing.ShapingProxy` in front of this server; the
        client then talks to the proxy. ``settings`` go to ``Client``, over
        the ones this server needs.
        """
        import upclient

        url, needed = (self.url, self.settings) if via is None else self._through(via)
        return upclient.Client(url, **{"store": None, **needed, **settings})

    def _through(self, proxy: Any) -> Tuple[str, Dict[str, Any]]:
        """The URL and settings that reach this server through ``proxy``."""
        raise ValueError(f"a {self.backend} server cannot be reached through a proxy")

    def _own_settings(self) -> Dict[str, Any]:
        return {}

    # ------------------------------------------------------------- what it stored

    def stored_sha256(self, upload_id: str) -> str:
        """Hex SHA-256 of the bytes the server stored for an ``UploadResult.id``.

        Raises :class:`FileNotFoundError` when it stored nothing under it
        (whatever the server's own lookup raises: a community emulator a
        ``KeyError``, FastDFS's a ``ValueError`` for an id of no group).
        """
        try:
            return str(self.server.stored_sha256(upload_id))
        except (KeyError, ValueError) as exc:
            raise FileNotFoundError(f"the {self.backend} server stored nothing as {upload_id!r}: {exc}") from exc


def _proxy_port(proxy: Any) -> int:
    port = getattr(proxy, "port", None)
    if not isinstance(port, int):
        raise TypeError(f"via= takes a running FaultProxy or ShapingProxy, not {proxy!r}")
    return port


class RunningTus(RunningServer):
    """A tus server: ``@tus/server`` (:attr:`kind` ``"node"``) or ``resumable-upload`` (``"python"``).

    They differ: only ``resumable-upload`` offers the checksum and
    concatenation extensions, and it has no HTTPS.
    """

    backend = "tus"

    def __init__(self, server: "Union[TusNodeServer, ResumableUploadServer]", *,
                 certs: Optional[TLSCertificates] = None) -> None:
        super().__init__(server, certs=certs)

    @property
    def kind(self) -> str:
        """``"node"`` or ``"python"``: which server this is."""
        from upclient.testing.servers import TusNodeServer

        return "node" if isinstance(self.server, TusNodeServer) else "python"

    @property
    def url(self) -> str:
        return "tus+" + str(self.server.url)

    @property
    def address(self) -> Tuple[str, int]:
        return str(self.server.host), int(self.server.port)

    def _through(self, proxy: Any) -> Tuple[str, Dict[str, Any]]:
        _proxy_port(proxy)
        return "tus+" + str(proxy.url_for(self.server.url)), self.settings


class RunningCommunity(RunningServer):
    """The community multipart API emulator, with the bearer token it accepts.

    Through a proxy (``client(via=...)``) the API calls go through it; the
    part uploads go to the URLs the server hands out, its own (use
    ``fail_part`` for faults on parts).
    """

    backend = "community"

    def __init__(self, server: "CommunityServer", *, token: str = DEFAULT_TOKEN,
                 certs: Optional[TLSCertificates] = None) -> None:
        super().__init__(server, certs=certs)
        self.token = token

    @property
    def url(self) -> str:
        return "community+" + str(self.server.url)

    @property
    def address(self) -> Tuple[str, int]:
        return str(self.server.host), int(self.server.port)

    def _own_settings(self) -> Dict[str, Any]:
        return {"token": self.token}

    def cli_flags(self) -> List[str]:
        return ["--token", self.token]

    def _through(self, proxy: Any) -> Tuple[str, Dict[str, Any]]:
        return f"community+http://127.0.0.1:{_proxy_port(proxy)}", self.settings


class RunningUpyun(RunningServer):
    """The UPYUN emulator: ``upyun://operator@service`` with the ``endpoint`` and ``password`` it needs."""

    backend = "upyun"

    def __init__(self, server: "UpyunServer", *, password: str = DEFAULT_PASSWORD,
                 certs: Optional[TLSCertificates] = None) -> None:
        super().__init__(server, certs=certs)
        self.password = password

    @property
    def url(self) -> str:
        return f"upyun://{self.server.operator}@{self.server.service}"

    @property
    def address(self) -> Tuple[str, int]:
        return str(self.server.host), int(self.server.port)

    def _own_settings(self) -> Dict[str, Any]:
        return {"endpoint": str(self.server.endpoint), "password": self.password}

    def cli_flags(self) -> List[str]:
        return ["--endpoint", str(self.server.endpoint), "--password", self.password]

    def _through(self, proxy: Any) -> Tuple[str, Dict[str, Any]]:
        return self.url, {**self.settings, "endpoint": f"127.0.0.1:{_proxy_port(proxy)}"}


class RunningFdfs(RunningServer):
    """The FastDFS emulator: ``fdfs://tracker``; storages announce themselves through it.

    FastDFS is not HTTP and the tracker hands out the storages' own
    addresses, so there is no ``via=``: use the server's ``fail`` and
    ``stall`` hooks for faults.
    """

    backend = "fdfs"

    def __init__(self, server: "FdfsServer") -> None:
        super().__init__(server)

    @property
    def url(self) -> str:
        return str(self.server.url)

    @property
    def address(self) -> Tuple[str, int]:
        host, _, port = str(self.server.tracker).rpartition(":")
        return host, int(port)

    def _through(self, proxy: Any) -> Tuple[str, Dict[str, Any]]:
        raise ValueError(
            "FastDFS is not HTTP and its tracker sends clients to the storages directly, so a proxy "
            "cannot stand in front of it: use the server's fail() and stall() hooks"
        )


# ------------------------------------------------------------------ starting them


def choose_tus_kind(kind: str = "auto", *, tls: bool = False) -> Tuple[str, Optional[str]]:
    """``("node" | "python", why)``: the server ``kind`` (see :data:`TUS_KINDS`) stands for.

    ``auto`` is ``node`` when ``node`` and the npm packages of ``@tus/server``
    are here (never installing them), else ``python``, and ``why`` says what
    was missing. HTTPS (``tls``) needs ``node``: ``resumable-upload`` has no TLS.
    """
    from upclient.testing.servers import TusNodeServer

    if kind not in TUS_KINDS:
        raise ValueError(f"kind must be one of {TUS_KINDS}, not {kind!r}")
    if kind != "auto":
        if kind == "python" and tls:
            raise ValueError("resumable-upload has no TLS: HTTPS needs @tus/server (node)")
        return kind, None
    reason = TusNodeServer.unavailable_reason(installed=True)
    if reason is None:
        return "node", None
    if tls:
        raise ValueError(f"HTTPS needs @tus/server (resumable-upload has no TLS), which cannot run: {reason}")
    return "python", reason


def tus_server(
    directory: Optional[PathLike] = None,
    *,
    kind: str = "auto",
    port: Optional[int] = None,
    host: str = "127.0.0.1",
    certs: Optional[TLSCertificates] = None,
) -> "Union[TusNodeServer, ResumableUploadServer]":
    """A tus server of ``kind`` (:func:`choose_tus_kind`), not started yet; ``port`` None or 0: a free one."""
    from upclient.testing.servers import ResumableUploadServer, TusNodeServer

    chosen, why = choose_tus_kind(kind, tls=certs is not None)
    if why:
        log.info("the Python tus server (resumable-upload) stands in for @tus/server: %s", why)
    if chosen == "node":
        return TusNodeServer(directory, host=host, port=port or None, tls=certs, auto_install=False)
    return ResumableUploadServer(directory, host=host, port=port or None)


@contextlib.contextmanager
def running_tus(
    directory: Optional[PathLike] = None,
    *,
    kind: str = "auto",
    port: Optional[int] = None,
    certs: Optional[TLSCertificates] = None,
) -> Iterator[RunningTus]:
    """A started tus server (:func:`tus_server`), stopped when the block ends, also on error."""
    with RunningTus(tus_server(directory, kind=kind, port=port, certs=certs), certs=certs) as running:
        yield running


@contextlib.contextmanager
def running_community(
    directory: Optional[PathLike] = None,
    *,
    token: str = DEFAULT_TOKEN,
    certs: Optional[TLSCertificates] = None,
    **options: Any,
) -> Iterator[RunningCommunity]:
    """A started community emulator that accepts ``token``; ``options`` go to ``CommunityServer``."""
    from upclient.testing.community import CommunityServer

    server = CommunityServer(directory, tokens={token}, tls=certs, **options)
    with RunningCommunity(server, token=token, certs=certs) as running:
        yield running


@contextlib.contextmanager
def running_upyun(
    directory: Optional[PathLike] = None,
    *,
    service: str = DEFAULT_SERVICE,
    operator: str = DEFAULT_OPERATOR,
    password: str = DEFAULT_PASSWORD,
    certs: Optional[TLSCertificates] = None,
    **options: Any,
) -> Iterator[RunningUpyun]:
    """A started UPYUN emulator; ``options`` go to ``UpyunServer``."""
    from upclient.testing.upyun import UpyunServer

    server = UpyunServer(directory, service=service, operator=operator, password=password, tls=certs, **options)
    with RunningUpyun(server, password=password, certs=certs) as running:
        yield running


@contextlib.contextmanager
def running_fdfs(directory: Optional[PathLike] = None, **options: Any) -> Iterator[RunningFdfs]:
    """A started FastDFS emulator; ``options`` go to ``FdfsServer``."""
    from upclient.testing.fdfs import FdfsServer

    with RunningFdfs(FdfsServer(directory, **options)) as running:
        yield running
