"""The entry point: parse the command line and run its verb."""

from __future__ import annotations

import sys
from typing import Dict, Optional, Sequence

from . import verbs
from .args import build_parser
from .command import Command, Verb
from .exits import EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["main", "VERBS"]


def put(cmd: Command) -> int:
    """``upclient put`` (its module, with the journal, is imported when the verb runs)."""
    from .put import put as run

    return run(cmd)


def sync(cmd: Command) -> int:
    """``upclient sync`` (the sync machinery is imported only when the verb runs)."""
    from .sync import sync as run

    return run(cmd)


#: Each verb of the command line and the function that runs it.
VERBS: Dict[str, Verb] = {
    "put": put,
    "get": verbs.get,
    "info": verbs.info,
    "rm": verbs.rm,
    "abort": verbs.abort,
    "ls": verbs.ls,
    "mkdir": verbs.mkdir,
    "mv": verbs.mv,
    "cp": verbs.cp,
    "purge": verbs.purge,
    "sync": sync,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``upclient`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) or a usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return Command(args, parser).run(VERBS[args.verb])
    except SystemExit as exc:  # parser.error() after parsing
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:  # between the verbs' own handlers
        sys.stderr.write("upclient: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
