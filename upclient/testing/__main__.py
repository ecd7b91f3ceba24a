"""``python -m upclient.testing``: run a test server from the command line.

Subcommands: ``tus``, ``community``, ``upyun``, ``fdfs``::

    python -m upclient.testing tus                      # tus+http://127.0.0.1:1080/files/
    python -m upclient.testing community --dir /tmp/c   # community+http://127.0.0.1:PORT
    python -m upclient.testing upyun                    # upyun://op@svc (+ --endpoint, --password)
    python -m upclient.testing fdfs                     # fdfs://127.0.0.1:PORT

The first line written to stdout is the one URL to give ``upclient.Client``
or ``upclient put --to``. The lines after it say what else a client needs,
ready to paste::

    upyun://op@svc
    flags: --endpoint 127.0.0.1:40123 --password pw
    python: upclient.Client('upyun://op@svc', endpoint='127.0.0.1:40123', password='pw')
    cli: upclient put FILE --to upyun://op@svc --endpoint 127.0.0.1:40123 --password pw
    files: /tmp/upclient-upyun-abc123
    serving until Ctrl-C

``tus`` runs ``@tus/server`` when ``node`` and its npm packages are here
(:mod:`upclient.testing.servers.nodepackages`), else the Python server of
``resumable-upload`` (``--server`` picks one); it listens on port 1080 when
that is free (the README's Quick start), else on a free port. ``--tls``
(``tus`` with ``@tus/server``, ``community``, ``upyun``) serves HTTPS with a
throwaway CA, whose file the output names (``verify=`` in Python,
``REQUESTS_CA_BUNDLE`` for the CLI).

Each server then runs until SIGTERM, SIGINT (Ctrl-C) or SIGHUP and exits with status 0.
Diagnostics go to stderr (``--log-level``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from typing import Any, Iterator, List, Optional

from upclient.testing.community import MiB, CommunityServer
from upclient.testing.fdfs import FdfsServer
from upclient.testing.running import (
    DEFAULT_OPERATOR,
    DEFAULT_PASSWORD,
    DEFAULT_SERVICE,
    DEFAULT_TOKEN,
    TUS_KINDS,
    RunningCommunity,
    RunningFdfs,
    RunningServer,
    RunningTus,
    RunningUpyun,
    choose_tus_kind,
    port_or_free,
    tus_server,
)
from upclient.testing.tls import TLSCertificates
from upclient.testing.upyun import UpyunServer

#: The port ``tus`` listens on when it is free: the README's Quick start uses it.
TUS_PORT = 1080


def _size(text: str) -> int:
    """An integer number of bytes, with an optional K/M/G (binary) suffix."""
    units = {"k": 1024, "m": MiB, "g": 1024 * MiB}
    spec = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = units.get(spec[-1:], 1)
    number = spec[:-1] if spec[-1:] in units else spec
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("a size must be >= 1")
    return value


def _common(command: argparse.ArgumentParser, *, tls: bool, port_help: str = "port (default 0: a free one)") -> None:
    command.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    command.add_argument("--port", type=int, default=0, help=port_help)
    command.add_argument("--dir", default=None, help="storage directory (default: a temporary one, removed at exit)")
    if tls:
        command.add_argument(
            "--tls", action="store_true", help="serve HTTPS with a throwaway CA (its file is printed)"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m upclient.testing",
        description="Run a test server. The first line of output is the URL to give upclient; "
        "the next lines, the other flags and settings a client needs.",
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="log level of the diagnostics on stderr (default WARNING)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tus = commands.add_parser("tus", help="a tus server: @tus/server (Node.js) if installed, else resumable-upload")
    _common(tus, tls=True, port_help=f"port (default {TUS_PORT} when free, else a free one; 0: a free one)")
    tus.set_defaults(port=None)
    tus.add_argument(
        "--server",
        choices=TUS_KINDS,
        default="auto",
        help="node: @tus/server; python: resumable-upload (no HTTPS); auto (default): node when installed",
    )
    tus.set_defaults(run=_run_tus)

    community = commands.add_parser("community", help="the community multipart API emulator")
    _common(community, tls=True)
    community.add_argument(
        "--token",
        action="append",
        default=[],
        help=f"an accepted bearer token (repeatable; default {DEFAULT_TOKEN}); TOKEN=USER names its user",
    )
    community.add_argument("--api-key", action="append", default=[], help="an accepted X-API-Key (repeatable)")
    community.add_argument("--part-size", type=_size, default=8 * MiB, help="default part size (default 8M)")
    community.add_argument(
        "--min-part-size",
        type=_size,
        default=5 * MiB,
        help="smallest part size but the last (default 5M, or --part-size if smaller)",
    )
    community.add_argument(
        "--url-lifetime", type=float, default=3600.0, help="seconds a part URL stays valid (default 3600)"
    )
    community.add_argument(
        "--public-url",
        default=None,
        help="base URL put in the URLs handed out (part uploads, oss/cdn/imagekit) instead of the "
        "server's own, e.g. a proxy in front of it",
    )
    community.set_defaults(run=_run_community)

    upyun = commands.add_parser("upyun", help="the UPYUN storage API emulator (REST, FORM, purge, tasks)")
    _common(upyun, tls=True)
    upyun.add_argument(
        "--service", default=DEFAULT_SERVICE, help=f"the service (bucket) name (default {DEFAULT_SERVICE})"
    )
    upyun.add_argument("--operator", default=DEFAULT_OPERATOR, help=f"the operator (default {DEFAULT_OPERATOR})")
    upyun.add_argument(
        "--password", default=DEFAULT_PASSWORD, help=f"the operator's password (default {DEFAULT_PASSWORD})"
    )
    upyun.add_argument("--task-duration", type=float, default=2.0, help="seconds a processing task takes (default 2)")
    upyun.set_defaults(run=_run_upyun)

    fdfs = commands.add_parser("fdfs", help="the FastDFS emulator (trackers and storages, native TCP protocol)")
    _common(fdfs, tls=False, port_help="port of the first tracker (default 0: a free one)")
    fdfs.add_argument(
        "--ip-size",
        type=int,
        choices=(15, 45),
        default=15,
        help="size of the IP fields in tracker replies: 15 (the 6.16 default) or 45 (response_ip_addr_size = IPv6)",
    )
    fdfs.add_argument(
        "--group", action="append", default=[], help="a storage group (repeatable; default group1), one storage each"
    )
    fdfs.add_argument("--trackers", type=int, default=1, help="number of trackers sharing one state (default 1)")
    fdfs.set_defaults(run=_run_fdfs)
    return parser


def announcement(running: RunningServer, files: Any, *, describe: str = "") -> List[str]:
    """The lines printed once a server answers: its URL first, then what else a client needs."""
    lines = [running.url]
    flags = running.cli_flags()
    if flags:
        lines.append("flags: " + " ".join(flags))
    if running.certs is not None:
        lines.append(f"ca: {running.certs.ca_pem}")
    lines.append("python: " + running.python_snippet())
    lines.append("cli: " + running.cli_command())
    if describe:
        lines.append("server: " + describe)
    lines.append(f"files: {files}")
    lines.append("serving until Ctrl-C")
    return lines


@contextlib.contextmanager
def _certificates(wanted: bool) -> Iterator[Optional[TLSCertificates]]:
    if not wanted:
        yield None
        return
    with TLSCertificates() as certs:
        yield certs


def _serve_until_signalled(running: RunningServer, files: Any, describe: str = "") -> int:
    """Start the server, print :func:`announcement`, serve until SIGTERM, SIGINT or SIGHUP."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        stop.set()

    # SIGHUP too: a closed terminal must not leave a tus server's own process behind.
    signals = [signal.SIGTERM, signal.SIGINT, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        with running:
            sys.stdout.write("\n".join(announcement(running, files(), describe=describe)) + "\n")
            sys.stdout.flush()
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _run_tus(args: argparse.Namespace) -> int:
    port = args.port if args.port is not None else port_or_free(TUS_PORT, args.host)
    try:
        kind, why = choose_tus_kind(args.server, tls=args.tls)
    except ValueError as exc:
        raise SystemExit(f"tus: {exc}") from None
    if why:
        sys.stderr.write(f"note: the Python tus server (resumable-upload) runs instead of @tus/server: {why}\n")
    with _certificates(args.tls) as certs:
        server = tus_server(args.dir, kind=kind, port=port, certs=certs, host=args.host)
        running = RunningTus(server, certs=certs)
        if running.kind == "node":
            describe = "@tus/server (Node.js)"
        else:
            describe = "resumable-upload (Python; checksum and concatenation, no HTTPS)"
        return _serve_until_signalled(running, lambda: server.directory, describe)


def _run_community(args: argparse.Namespace) -> int:
    tokens = {}
    for item in args.token or [DEFAULT_TOKEN]:
        token, sep, user = item.partition("=")
        tokens[token] = user if sep and user else CommunityServer.user_for_token(token)
    with _certificates(args.tls) as certs:
        server = CommunityServer(
            args.dir,
            tokens=tokens,
            api_keys=args.api_key,
            host=args.host,
            port=args.port,
            default_part_size=args.part_size,
            min_part_size=min(args.min_part_size, args.part_size),
            url_lifetime=args.url_lifetime,
            public_url=args.public_url,
            tls=certs,
        )
        running = RunningCommunity(server, token=next(iter(tokens)), certs=certs)
        return _serve_until_signalled(running, lambda: server.directory)


def _run_upyun(args: argparse.Namespace) -> int:
    with _certificates(args.tls) as certs:
        server = UpyunServer(
            args.dir,
            service=args.service,
            operator=args.operator,
            password=args.password,
            host=args.host,
            port=args.port,
            task_duration=args.task_duration,
            tls=certs,
        )
        running = RunningUpyun(server, password=args.password, certs=certs)
        return _serve_until_signalled(running, lambda: server.directory)


def _run_fdfs(args: argparse.Namespace) -> int:
    if args.trackers < 1:
        raise SystemExit("fdfs: --trackers must be >= 1")
    server = FdfsServer(
        args.dir,
        host=args.host,
        port=args.port,
        ip_size=args.ip_size,
        groups=args.group or ("group1",),
        trackers=args.trackers,
    )
    return _serve_until_signalled(RunningFdfs(server), lambda: server.root)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
