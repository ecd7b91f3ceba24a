"""The command line's grammar: the verbs and their flags, and the values they take."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any, Dict, Sequence, Tuple

from .. import __version__
from .exits import EPILOG

__all__ = ["build_parser", "parse_size", "put_options", "UsageError", "URL_ENV"]

URL_ENV = "UPCLIENT_URL"


class UsageError(Exception):
    """A problem with the command line found after parsing: exit status 2."""


class _VerbParser(argparse.ArgumentParser):
    """A verb's parser: its ``--help`` ends with the exit statuses, as the command's does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EPILOG)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


#: How an id that is a URL finds its server, for the help of get, info and rm.
_URL_ID = "without --from, an http(s) URL names its own tus server when no credentials are given"

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

def parse_size(text: str) -> int:
    """``8M`` -> 8388608.  Units K, M, G, T are powers of 1024 (``KiB``, ``MB`` also read so)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (try 8M, 512K, 1G or a number of bytes)")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value != int(value):
        raise ValueError(f"not a whole number of bytes: {text!r}")
    return int(value)


def _size_arg(text: str) -> int:
    try:
        n = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return n


def _positive_size_arg(text: str) -> int:
    n = _size_arg(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte")
    return n


def _positive_int_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _non_negative_int_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("cannot be negative")
    return n


def _seconds_arg(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not n > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return n


def _header_arg(text: str) -> Tuple[str, str]:
    # The value may be a secret: never echo it back, not even in an error.
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not _HEADER_NAME_RE.match(name):
        raise argparse.ArgumentTypeError("expected 'Name: value' (the value is not shown)")
    value = value.strip()
    if "\r" in value or "\n" in value:
        raise argparse.ArgumentTypeError(f"the value of header {name} contains a line break")
    return name, value


def _metadata_arg(text: str) -> Tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, not {text!r}")
    return key, value


def _option_value(text: str) -> Any:
    """A backend option from the command line: true/false and integers as such, else the text."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else text

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection and output")
    g.add_argument(
        "-H", "--header", action="append", type=_header_arg, default=[], metavar="'NAME: VALUE'",
        help="extra HTTP header on every request (repeatable); values are never printed",
    )
    g.add_argument("--timeout", type=_seconds_arg, metavar="SECONDS",
                   help="network timeout for connecting and for each read (default 10 s and 60 s)")
    g.add_argument("--retries", type=_non_negative_int_arg, metavar="N",
                   help="tries again after a network or server failure, per request or part (default 4)")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    g.add_argument("--token", default=os.environ.get("UPCLIENT_TOKEN"), metavar="TOKEN",
                   help="bearer token, for backends that take one (default $UPCLIENT_TOKEN); never printed")
    g.add_argument("--api-key", default=os.environ.get("UPCLIENT_API_KEY"), metavar="KEY",
                   help="API key, with --user-id and --org-id (default $UPCLIENT_API_KEY); never printed")
    g.add_argument("--password", metavar="PASSWORD",
                   help="the operator's password, for upyun:// (default $UPYUN_PASSWORD); never printed")
    g.add_argument("--auth-server", metavar="URL",
                   help="a server that signs requests, instead of a password (upyun://)")
    g.add_argument("--endpoint", metavar="HOST[:PORT]",
                   help="the API host, for upyun:// (default v0.api.upyun.com); an emulator or proxy too")
    g.add_argument("--user-id", metavar="ID", help="user id for API-key calls")
    g.add_argument("--org-id", metavar="ID", help="organisation id for API-key calls")
    g.add_argument("--json", action="store_true", help="machine-readable output: one JSON object per line")
    g.add_argument("-q", "--quiet", action="store_true", help="print only ids and errors")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="log what happens to stderr (-vv for more)")

    parser = argparse.ArgumentParser(
        prog="upclient",
        description="Reliable, resumable uploads to tus, UPYUN, FastDFS and community multipart storage.",
        epilog=f"The server URL defaults to ${URL_ENV}.\n\n{EPILOG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"upclient {__version__}")
    sub: "argparse._SubParsersAction[argparse.ArgumentParser]" = parser.add_subparsers(
        dest="verb", metavar="VERB", parser_class=_VerbParser)
    sub.required = True
    parser.set_defaults(verb_parsers=sub.choices)

    p = sub.add_parser("put", parents=[common], help="upload files",
                       description="Upload files; a re-run of an interrupted put resumes it.")
    p.add_argument("files", nargs="+", metavar="FILE", help="files to upload; - reads standard input")
    p.add_argument("--to", metavar="URL", help=f"where to upload, e.g. tus+https://host/files/ (default ${URL_ENV})")
    p.add_argument("--key", help="name of the upload on the server (one FILE only)")
    p.add_argument("--metadata", "-m", action="append", type=_metadata_arg, default=[], metavar="KEY=VALUE",
                   help="metadata stored with the upload (repeatable)")
    p.add_argument("--part-size", type=_positive_size_arg, metavar="SIZE",
                   help="bytes per part or request, e.g. 8M, 512K (default 16M)")
    p.add_argument("--concurrency", type=_positive_int_arg, metavar="N", help="parts in flight at once (default 4)")
    p.add_argument("--max-files", type=_positive_int_arg, metavar="N", help="files uploaded at once (default 4)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--no-resume", action="store_true",
                        help="start afresh and keep no resume point on disk")
    resume.add_argument("--store", metavar="DIR", help="directory for resume points (default: user state dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--category", help="the file's category, for backends that sort files (community)")
    p.add_argument("--size", type=_size_arg, metavar="BYTES",
                   help="the size of standard input (-), for a caller who knows it: sent as it is read. "
                   "Without it, stdin of unknown size goes to a backend that needs the size first (upyun) "
                   "through a temporary file in $TMPDIR, as big as the input and deleted afterwards")
    p.add_argument("-o", "--option", action="append", type=_metadata_arg, default=[], metavar="KEY=VALUE",
                   help="an option of the backend's put (repeatable), e.g. -o concat=false; a dotted "
                   "KEY fills a mapping: -o form=true -o policy.notify-url=URL -o headers.x-gmkerl-rotate=90")

    p = sub.add_parser("get", parents=[common], help="download a file",
                       description="Download a stored file (to stdout if DEST is - or missing; "
                       "missing is refused when stdout is a terminal).")
    p.add_argument("id", metavar="ID", help=f"what put printed (the upload URL for tus: {_URL_ID})")
    p.add_argument("dest", nargs="?", metavar="DEST",
                   help="file to write; - for stdout; missing: stdout unless it is a terminal")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")
    p.add_argument("--offset", type=_size_arg, default=0, metavar="BYTES", help="start at this byte")
    p.add_argument("--length", type=_size_arg, metavar="BYTES", help="at most this many bytes")

    p = sub.add_parser("info", parents=[common], help="show what the server knows about a file")
    p.add_argument("id", metavar="ID", help=f"what put printed (the upload URL for tus: {_URL_ID})")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")

    p = sub.add_parser("rm", parents=[common], help="delete a stored file (never a local one)",
                       description="Delete a stored file or upload on the server. ID is always the "
                       "server's: a local file of the same name changes nothing (see abort).")
    p.add_argument("id", metavar="ID", help=f"what put printed (the upload URL for tus: {_URL_ID})")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")

    p = sub.add_parser("abort", parents=[common], help="give up the interrupted upload of a local file",
                       description="Give up the interrupted upload of a local FILE to the server: "
                       "the server frees what it holds of it and the resume point is forgotten, so "
                       "the next put starts afresh. The local file is not touched.")
    p.add_argument("file", metavar="FILE", help="the local file whose interrupted upload to give up")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")
    p.add_argument("--store", metavar="DIR", help="directory of resume points (default: user state dir)")

    p = sub.add_parser("ls", parents=[common], help="list stored files (where the backend can); FastDFS: groups",
                       description="List stored files under PREFIX. For fdfs:// URLs: the groups, or with "
                       "a GROUP the storage servers of that group.")
    p.add_argument("prefix", nargs="?", default="", metavar="PREFIX|GROUP")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")

    p = sub.add_parser("mkdir", parents=[common], help="create a folder (storage backends: upyun)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")
    for verb, what in (("mv", "move (rename)"), ("cp", "copy")):
        p = sub.add_parser(verb, parents=[common], help=f"{what} a stored file on the server (upyun)")
        p.add_argument("src", metavar="SRC")
        p.add_argument("dst", metavar="DST")
        p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")
    p = sub.add_parser("purge", parents=[common], help="refresh CDN copies of stored files (upyun)")
    p.add_argument("targets", nargs="+", metavar="KEY|URL")
    p.add_argument("--domain", help="the CDN domain keys are served from (default <service>.b0.upaiyun.com)")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")

    p = sub.add_parser(
        "sync", parents=[common], help="make a folder's files (or another backend's) present on a backend",
        description="Upload what SRC holds to DST; a re-run sends only what is new, changed or unfinished.\n\n"
        "SRC is a local folder (walked down; keys are the paths below it, with /), a backend that lists\n"
        "(upyun://..., community+https://...), or with --from-list the backend the listed ids are on\n"
        "(fdfs://..., tus+https://...). From a backend, each file streams to DST through memory.\n\n"
        "Finished files are kept in a journal, with a lock beside it so that two runs of the same sync\n"
        "never overlap (the second exits 6): <store dir>/journal/, the store dir being --store DIR or\n"
        "the user state directory (~/.local/state/upclient/resume on Linux). An unchanged file the\n"
        "journal holds is skipped without being read; the destination is asked whether it still holds\n"
        "it (one listing where it lists, else one info per file; --trust-journal skips that).",
    )
    p.add_argument("src", metavar="SRC", help="a local folder, a backend URL that lists, or (with --from-list) "
                   "the backend the ids are on")
    p.add_argument("dst", metavar="DST", help="the backend URL to sync to")
    p.add_argument("--prefix", default="", metavar="P",
                   help="key prefix at the destination, e.g. backup/2026/ (a key is P + the path below SRC)")
    p.add_argument("--source-prefix", default="", metavar="P",
                   help="only the files under P of a source backend (their keys lose P)")
    p.add_argument("--from-list", metavar="FILE",
                   help="the files to copy from SRC: an id a line (FastDFS file ids, tus upload URLs), or "
                   "ID<TAB>KEY; # comments; - reads standard input")
    p.add_argument("--dry-run", action="store_true", help="say what would be uploaded and deleted; change nothing")
    p.add_argument("--delete", action="store_true",
                   help="delete files under the prefix that are gone from SRC (destinations that list: upyun, "
                   "community); never without this flag")
    p.add_argument("--follow-symlinks", action="store_true", help="follow symlinks (left out by default)")
    p.add_argument("--trust-journal", action="store_true",
                   help="skip what the journal holds without asking the destination whether it still has it")
    p.add_argument("--store", metavar="DIR",
                   help="directory of resume points, the journal and the lock (default: user state dir)")
    p.add_argument("--part-size", type=_positive_size_arg, metavar="SIZE",
                   help="bytes per part, e.g. 8M (default 16M; 6M for a copy from a backend)")
    p.add_argument("--concurrency", type=_positive_int_arg, metavar="N", help="parts in flight at once (default 4)")
    p.add_argument("--max-files", type=_positive_int_arg, metavar="N", help="files uploaded at once (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser

def put_options(pairs: Sequence[Tuple[str, str]]) -> Dict[str, Any]:
    """``-o KEY=VALUE`` pairs as put options; ``a.b=v`` sets key ``b`` of mapping option ``a``."""
    options: Dict[str, Any] = {}
    for key, value in pairs:
        outer, dot, inner = key.partition(".")
        if dot and inner:
            slot = options.setdefault(outer, {})
            if not isinstance(slot, dict):
                raise UsageError(f"-o {outer}= and -o {key}= cannot both be given")
            slot[inner] = value  # header and policy values stay text
        else:
            options[key] = _option_value(value)
    return options
