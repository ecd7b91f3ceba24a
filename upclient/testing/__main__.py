"""``python -m upclient.testing``: run a test server from the command line.

Subcommands:

``community``
    The community multipart API emulator
    (:class:`~upclient.testing.community.CommunityServer`)::

        python -m upclient.testing community --port 0 --dir /tmp/community --token t0k3n

    The first line written to stdout is the server's base URL
    (``http://127.0.0.1:PORT``).

``upyun``
    The UPYUN storage API emulator
    (:class:`~upclient.testing.upyun.UpyunServer`)::

        python -m upclient.testing upyun --port 0 --dir /tmp/upyun --service svc --operator op --password pw

    The first line written to stdout is the server's ``host:port``
    (``127.0.0.1:PORT``, what the official SDK takes as ``endpoint=``).

``fdfs``
    The FastDFS emulator (:class:`~upclient.testing.fdfs.FdfsServer`): trackers
    and one storage per group, native TCP protocol::

        python -m upclient.testing fdfs --port 0 --dir /tmp/fdfs [--ip-size 15|45] [--group group1 ...] [--trackers 1]

    The first line written to stdout is the first tracker's ``host:port``
    (``127.0.0.1:PORT``; the storages announce themselves through it).

Each server then runs until SIGTERM or SIGINT and exits with status 0.
Diagnostics go to stderr (``--log-level``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any, Callable, ContextManager, List, Optional

from upclient.testing.community import MiB, CommunityServer
from upclient.testing.fdfs import FdfsServer
from upclient.testing.upyun import UpyunServer


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m upclient.testing", description="Run a test server.")
    parser.add_argument(
        "--log-level", default="WARNING", help="log level of the diagnostics on stderr (default WARNING)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    community = commands.add_parser("community", help="the community multipart API emulator")
    community.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    community.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    community.add_argument("--dir", default=None, help="storage directory (default: a temporary one, removed at exit)")
    community.add_argument(
        "--token", action="append", default=[], help="an accepted bearer token (repeatable); TOKEN=USER names its user"
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
    upyun.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    upyun.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    upyun.add_argument("--dir", default=None, help="storage directory (default: a temporary one, removed at exit)")
    upyun.add_argument("--service", default="svc", help="the service (bucket) name (default svc)")
    upyun.add_argument("--operator", default="op", help="the operator (default op)")
    upyun.add_argument("--password", default="pw", help="the operator's password (default pw)")
    upyun.add_argument("--task-duration", type=float, default=2.0, help="seconds a processing task takes (default 2)")
    upyun.set_defaults(run=_run_upyun)

    fdfs = commands.add_parser("fdfs", help="the FastDFS emulator (trackers and storages, native TCP protocol)")
    fdfs.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fdfs.add_argument("--port", type=int, default=0, help="port of the first tracker (default 0: a free one)")
    fdfs.add_argument("--dir", default=None, help="storage directory (default: a temporary one, removed at exit)")
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


def _serve_until_signalled(server: ContextManager[Any], announce: Callable[[], str]) -> int:
    """Start ``server``, write ``announce()`` as the first stdout line, serve until SIGTERM/SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with server:
            sys.stdout.write(announce() + "\n")
            sys.stdout.flush()
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _run_community(args: argparse.Namespace) -> int:
    tokens = {}
    for item in args.token:
        token, sep, user = item.partition("=")
        tokens[token] = user if sep and user else CommunityServer.user_for_token(token)
    if not tokens and not args.api_key:
        raise SystemExit("community: give at least one --token or --api-key")
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
    )
    return _serve_until_signalled(server, lambda: server.url)


def _run_upyun(args: argparse.Namespace) -> int:
    server = UpyunServer(
        args.dir,
        service=args.service,
        operator=args.operator,
        password=args.password,
        host=args.host,
        port=args.port,
        task_duration=args.task_duration,
    )
    return _serve_until_signalled(server, lambda: server.endpoint)


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
    return _serve_until_signalled(server, lambda: server.tracker)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
