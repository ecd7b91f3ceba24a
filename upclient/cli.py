"""The ``upclient`` command: put, get, info, rm, ls, mkdir, mv, cp and purge from a shell.

::

    upclient put backup.tar.gz --to tus+https://host/files/
    upclient put a.bin b.bin --to "$URL" --json
    tar c dir | upclient put - --key dir.tar --to "$URL"
    upclient get ID out.bin --from "$URL"
    upclient info ID --from "$URL"
    upclient put photo.png --key a/b/photo.png --to upyun://operator@service   # password: $UPYUN_PASSWORD
    upclient mv a/b/photo.png a/c.png --from upyun://operator@service
    upclient put photo.jpg --to fdfs://10.0.0.1:22122,10.0.0.2:22122 -o group=group2
    upclient ls --from fdfs://10.0.0.1:22122          # FastDFS groups

``UPCLIENT_URL`` is the default for ``--to`` and ``--from``.  A killed or
interrupted ``put`` resumes when the same command is run again (resume points
live in the user state directory, or in ``--store DIR``).

Exit status: 0 when everything worked, 1 when anything failed, 2 for a usage
error (bad arguments, a missing file), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import concurrent.futures as cf
import datetime
import json
import logging
import os
import re
import stat
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from . import __version__
from .client import Client
from .errors import BadInput, Cancelled, UpClientError, Unsupported
from .progress import Progress
from .retry import RetryPolicy
from .store import FileStore

__all__ = ["main", "parse_size"]

log = logging.getLogger("upclient.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

URL_ENV = "UPCLIENT_URL"
INTERRUPTED_MESSAGE = "interrupted; run the same command again to resume"

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_AUTH_SCHEMES = {"bearer", "basic", "digest", "token", "negotiate", "hmac"}
_SENSITIVE_HEADER_RE = re.compile(r"auth|token|key|secret|cookie|pass|session|signature", re.IGNORECASE)


# -- small helpers ------------------------------------------------------------------


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


def format_bytes(n: Optional[float]) -> str:
    """1536 -> '1.5 KiB'."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def _format_seconds(s: Optional[float]) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60:d}:{s % 60:02d}"


def _option_value(text: str) -> Any:
    """A backend option from the command line: true/false and integers as such, else the text."""
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    return int(text) if re.fullmatch(r"-?[0-9]+", text) else text


class Redactor:
    """Replaces secrets (header values, URL passwords) in text the CLI prints."""

    def __init__(self) -> None:
        self._secrets: List[str] = []

    def add(self, secret: Optional[str], *, always: bool = False) -> None:
        if not secret:
            return
        candidates = [secret] + [w for w in secret.split() if w.lower() not in _AUTH_SCHEMES]
        for c in candidates:
            # Short values of harmless headers would garble messages; sensitive ones go anyway.
            if (always and len(c) >= 3) or len(c) >= 8:
                if c not in self._secrets:
                    self._secrets.append(c)
        self._secrets.sort(key=len, reverse=True)

    def add_header(self, name: str, value: str) -> None:
        self.add(value, always=bool(_SENSITIVE_HEADER_RE.search(name)))

    def add_url(self, url: Optional[str]) -> None:
        if not url:
            return
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url.split("+", 1)[-1] if "+" in url.split("://", 1)[0] else url)
            password = parts.password
        except ValueError:
            return
        self.add(password, always=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("upclient: %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class _DisplayHandler(logging.Handler):
    """Log records go through the progress display, so they do not tear the bar."""

    def __init__(self, display_ref: Callable[[], "ProgressDisplay"]) -> None:
        super().__init__()
        self.display_ref = display_ref

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.display_ref().write(self.format(record), sys.stderr)
        except Exception:  # pragma: no cover - logging must never break the command
            self.handleError(record)


# -- progress display ---------------------------------------------------------------


class ProgressDisplay:
    """One progress line on stderr for all files of a command.

    A tqdm bar when tqdm is installed (the ``cli`` extra), else a plain
    line rewritten in place.  Thread-safe: uploads report from worker threads.
    Disabled, it only forwards :meth:`write`.
    """

    INTERVAL = 0.2

    def __init__(self, enabled: bool, label: str, total: Optional[int], files: int = 1) -> None:
        self.enabled = enabled
        self.label = label
        self.total = total
        self.files = files
        self.files_done = 0
        self._lock = threading.RLock()
        self._done: Dict[Any, int] = {}
        self._rates: Dict[Any, float] = {}
        self._bar: Any = None
        self._plain_width = 0
        self._last_plain = 0.0
        if enabled:
            try:
                from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
            except ImportError:  # no `cli` extra: the plain line below
                pass
            else:
                self._bar = tqdm(
                    total=total,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}"
                    if total is not None
                    else "{desc}: {elapsed}{postfix}",
                    desc=self._desc(),
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    file=sys.stderr,
                    dynamic_ncols=True,
                    mininterval=0.1,
                    leave=True,
                )

    def _desc(self) -> str:
        if self.files > 1:
            return f"{self.files_done}/{self.files} files"
        return self.label

    def update(self, key: Any, progress: Progress) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._rates[key] = progress.rate
            self._set_done(key, progress.bytes_done)
            if self._bar is None:
                self._plain(force=False)

    def file_finished(self, key: Any, size: Optional[int]) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.files_done += 1
            self._rates.pop(key, None)
            if size is not None:
                self._set_done(key, size)
            if self._bar is not None:
                self._bar.set_description_str(self._desc(), refresh=True)

    def _set_done(self, key: Any, n: int) -> None:
        before = self._done.get(key, 0)
        self._done[key] = n
        if self._bar is None:
            return
        # The library's rate (a 3 s window) rather than tqdm's: a resumed
        # upload starts with a jump that is not this run's speed.
        self._bar.set_postfix_str(self._stats(), refresh=False)
        if n != before:
            self._bar.update(n - before)  # may go back: a failed try takes its bytes back

    def _stats(self) -> str:
        """'12.0 MiB/64.0 MiB, 50.2 MiB/s, eta 0:01' from the library's own rates."""
        done = sum(self._done.values())
        rate = sum(self._rates.values())
        parts = [format_bytes(done) + (f"/{format_bytes(self.total)}" if self.total is not None else "")]
        if self._rates:  # nothing in flight: no rate to speak of
            parts.append(f"{format_bytes(rate)}/s")
            if self.total is not None and rate > 0:
                parts.append(f"eta {_format_seconds(max(0, self.total - done) / rate)}")
        return ", ".join(parts)

    def _plain(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_plain < self.INTERVAL:
            return
        self._last_plain = now
        line = f"{self._desc()}: {self._stats()}"
        if self.total:
            line = f"{self._desc()}: {100 * sum(self._done.values()) / self.total:3.0f}% {self._stats()}"
        pad = max(0, self._plain_width - len(line))
        sys.stderr.write("\r" + line + " " * pad)
        sys.stderr.flush()
        self._plain_width = len(line)

    def write(self, message: str, file: TextIO) -> None:
        """Print a line without tearing the progress line."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(message, file=file)
                return
            if self.enabled and self._plain_width:
                sys.stderr.write("\r" + " " * self._plain_width + "\r")
                self._plain_width = 0
            file.write(message + "\n")
            file.flush()

    def close(self) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._plain_width:
                sys.stderr.write("\n")
                sys.stderr.flush()


# -- argument parsing ---------------------------------------------------------------


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
        epilog=f"The server URL defaults to ${URL_ENV}. Exit status: 0 ok, 1 failure, "
        "2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"upclient {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
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
    p.add_argument("-o", "--option", action="append", type=_metadata_arg, default=[], metavar="KEY=VALUE",
                   help="an option of the backend's put (repeatable), e.g. -o concat=false; a dotted "
                   "KEY fills a mapping: -o form=true -o policy.notify-url=URL -o headers.x-gmkerl-rotate=90")

    p = sub.add_parser("get", parents=[common], help="download a file",
                       description="Download a stored file (to stdout if DEST is - or missing).")
    p.add_argument("id", metavar="ID", help="what put printed (the upload URL for tus)")
    p.add_argument("dest", nargs="?", metavar="DEST", help="file to write; - or missing for stdout")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")
    p.add_argument("--offset", type=_size_arg, default=0, metavar="BYTES", help="start at this byte")
    p.add_argument("--length", type=_size_arg, metavar="BYTES", help="at most this many bytes")

    p = sub.add_parser("info", parents=[common], help="show what the server knows about a file")
    p.add_argument("id", metavar="ID")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")

    p = sub.add_parser("rm", parents=[common], help="delete a file or an unfinished upload")
    p.add_argument("id", metavar="ID|FILE",
                   help="an id to delete, or a local FILE whose interrupted upload to give up")
    p.add_argument("--from", dest="url", metavar="URL", help=f"server URL (default ${URL_ENV})")
    p.add_argument("--store", metavar="DIR", help="directory of resume points, for a FILE (default: user state dir)")

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
    return parser


# -- the command --------------------------------------------------------------------


class _UsageError(Exception):
    """A problem with the command line found after parsing: exit status 2."""


class Command:
    """One run of the CLI: parsed arguments, output streams, the redactor."""

    def __init__(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        self.args = args
        self.parser = parser
        self.redact = Redactor()
        for name, value in args.header:
            self.redact.add_header(name, value)
        for secret in (getattr(args, "token", None), getattr(args, "api_key", None),
                       getattr(args, "password", None), os.environ.get("UPYUN_PASSWORD")):
            self.redact.add(secret, always=True)
        self.display = ProgressDisplay(False, "", None)
        self.stdout_broken = False

    # output ---------------------------------------------------------------------

    def out(self, text: str) -> None:
        self._stdout(self.redact(text))

    def err(self, text: str) -> None:
        self.display.write(self.redact(f"upclient: {text}"), sys.stderr)

    def emit_json(self, obj: Dict[str, Any]) -> None:
        self._stdout(self.redact(json.dumps(obj)))

    def _stdout(self, line: str) -> None:
        if self.stdout_broken:
            return
        try:
            self.display.write(line, sys.stdout)
        except BrokenPipeError:
            # The reader went away (`| head`): stop writing, fail at the end, no traceback.
            self.stdout_broken = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    def error_obj(self, exc: BaseException) -> Dict[str, Any]:
        obj: Dict[str, Any] = {"type": type(exc).__name__, "message": self.redact(str(exc))}
        status = getattr(exc, "status", None)
        if status is not None:
            obj["status"] = status
        return obj

    # setup ----------------------------------------------------------------------

    def setup_logging(self) -> None:
        level = logging.WARNING
        if self.args.quiet:
            level = logging.ERROR
        if self.args.verbose == 1:
            level = logging.INFO
        elif self.args.verbose >= 2:
            level = logging.DEBUG
        handler = _DisplayHandler(lambda: self.display)
        handler.setFormatter(_RedactingFormatter(self.redact))
        root = logging.getLogger("upclient")
        for old in [h for h in root.handlers if isinstance(h, _DisplayHandler)]:
            root.removeHandler(old)  # main() called again in the same process
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
        if self.args.verbose >= 3:  # the HTTP library too
            for name in ("urllib3",):
                other = logging.getLogger(name)
                other.addHandler(handler)
                other.setLevel(logging.DEBUG)

    def url(self) -> str:
        url = getattr(self.args, "to", None) if self.args.verb == "put" else self.args.url
        url = url or os.environ.get(URL_ENV)
        if not url:
            flag = "--to" if self.args.verb == "put" else "--from"
            raise _UsageError(f"no server URL: pass {flag} URL or set {URL_ENV}")
        self.redact.add_url(url)
        return url

    def client(self, **extra: Any) -> Client:
        a = self.args
        kwargs: Dict[str, Any] = dict(extra)
        if a.header:
            kwargs["headers"] = dict(a.header)
        if a.timeout is not None:
            kwargs["connect_timeout"] = a.timeout
            kwargs["read_timeout"] = a.timeout
        if a.retries is not None:
            kwargs["retry"] = RetryPolicy(attempts=a.retries + 1)
        for name in ("token", "api_key", "user_id", "org_id", "password", "auth_server", "endpoint"):
            if getattr(a, name, None):
                kwargs[name] = getattr(a, name)
        if a.insecure:
            kwargs["verify"] = False
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            if not a.quiet:
                self.err("warning: TLS certificates are not verified (--insecure)")
        return Client(self.url(), **kwargs)

    # verbs ----------------------------------------------------------------------

    def run(self) -> int:
        self.setup_logging()
        verb = getattr(self, "do_" + self.args.verb)
        try:
            status = verb()
            return EXIT_FAILED if status == EXIT_OK and self.stdout_broken else status
        except _UsageError as exc:
            self.args.verb_parsers.get(self.args.verb, self.parser).error(str(exc))  # exits with 2
            return EXIT_USAGE  # pragma: no cover
        except BadInput as exc:
            self.report_failure(exc)
            return EXIT_USAGE
        except UpClientError as exc:
            self.report_failure(exc)
            return EXIT_FAILED
        except OSError as exc:  # local files: a destination that cannot be written, a closed pipe
            self.report_failure(exc)
            return EXIT_FAILED
        except KeyboardInterrupt:
            self.display.close()
            if self.args.json and self.args.verb != "get":  # get may be writing bytes to stdout
                self.emit_json({"ok": False, "error": {"type": "Interrupted", "message": "interrupted"}})
            self.err("interrupted")
            return EXIT_INTERRUPTED
        finally:
            self.display.close()

    def report_failure(self, exc: BaseException, file: Optional[str] = None) -> None:
        if self.args.json:
            obj: Dict[str, Any] = {}
            if file is not None:
                obj["file"] = file
            obj.update(ok=False, error=self.error_obj(exc))
            self.emit_json(obj)
        where = f"{file}: " if file is not None else ""
        self.err(f"error: {where}{exc} [{type(exc).__name__}]")

    # put ----------------------------------------------------------------------------

    def _check_files(self, files: Sequence[str]) -> List[Optional[int]]:
        """Sizes of the files (None for stdin and pipes); BadInput before anything is sent."""
        if files.count("-") > 1:
            raise _UsageError("standard input (-) can be read only once")
        if self.args.key is not None and len(files) > 1:
            raise _UsageError("--key names one upload: give a single FILE")
        sizes: List[Optional[int]] = []
        for f in files:
            if f == "-":
                sizes.append(None)
                continue
            try:
                st = os.stat(f)
            except FileNotFoundError:
                raise BadInput(f"no such file: {f}") from None
            except OSError as exc:
                raise BadInput(f"cannot read {f}: {exc.strerror}") from None
            if stat.S_ISDIR(st.st_mode):
                raise BadInput(f"{f} is a directory (upload the files in it, or an archive of it)")
            if not os.access(f, os.R_OK):
                raise BadInput(f"cannot read {f}: permission denied")
            sizes.append(st.st_size if stat.S_ISREG(st.st_mode) else None)
        return sizes

    def do_put(self) -> int:
        a = self.args
        files: List[str] = list(a.files)
        sizes = self._check_files(files)
        metadata = dict(a.metadata)

        extra: Dict[str, Any] = {}
        for opt in ("part_size", "concurrency", "max_files"):
            if getattr(a, opt) is not None:
                extra[opt] = getattr(a, opt)
        if a.no_resume:
            extra["store"] = None
        elif a.store:
            extra["store"] = FileStore(a.store)
        show_bar = not (a.quiet or a.json or a.no_progress) and sys.stderr.isatty()
        total = None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)
        label = a.key or ("stdin" if files[0] == "-" else os.path.basename(files[0]))
        if "-" in files and sys.stdin.isatty() and not a.quiet:
            self.err("reading standard input from the terminal; end it with Ctrl-D")
        cancel = threading.Event()
        put_options = _put_options(a.option)
        if a.category:
            put_options["category"] = a.category
        outcomes: Dict[int, Optional[BaseException]] = {}
        lock = threading.Lock()

        def one(i: int) -> None:
            f = files[i]
            source: Any = sys.stdin.buffer if f == "-" else f
            try:
                if cancel.is_set():
                    raise Cancelled("upload cancelled")
                result = client.put(
                    source,
                    key=a.key,
                    metadata=metadata,
                    on_progress=lambda p: self.display.update(i, p),
                    cancel=cancel,
                    **put_options,
                )
            except Exception as exc:  # UpClientError; anything else is a bug, reported all the same
                with lock:
                    outcomes[i] = exc
                if not (isinstance(exc, Cancelled) and cancel.is_set()):
                    self.report_failure(exc, f)
                    if not isinstance(exc, UpClientError):
                        log.debug("unexpected error uploading %s", f, exc_info=True)
                return
            with lock:
                outcomes[i] = None
            self.display.file_finished(i, result.size)
            self.report_put(f, result)

        with self.client(**extra) as client:
            self.display = ProgressDisplay(show_bar, label, total, files=len(files))
            pool = cf.ThreadPoolExecutor(min(client.settings.max_files, len(files)),
                                         thread_name_prefix="upclient-cli")
            futures: "List[cf.Future[None]]" = []
            try:
                futures = [pool.submit(one, i) for i in range(len(files))]
                pending = set(futures)
                while pending:  # short waits: Ctrl-C reaches this thread at once
                    _, pending = cf.wait(pending, timeout=0.2)
            except KeyboardInterrupt:
                cancel.set()
                self._wait_stopped(futures)
                self.display.close()
                if a.json:
                    for i, f in enumerate(files):
                        if i not in outcomes or isinstance(outcomes[i], Cancelled):
                            self.emit_json({"file": f, "ok": False,
                                            "error": {"type": "Interrupted", "message": "interrupted"}})
                hint = INTERRUPTED_MESSAGE
                if "-" in files:
                    hint += " (standard input cannot be resumed: it is sent again from its start)"
                self.err(hint)
                return EXIT_INTERRUPTED
            finally:
                cancel.set()
                pool.shutdown(wait=False, cancel_futures=True)
        errors = [e for e in outcomes.values() if e is not None]
        if any(isinstance(e, BadInput) for e in errors):
            return EXIT_USAGE
        return EXIT_FAILED if errors else EXIT_OK

    def _wait_stopped(self, futures: "Sequence[cf.Future[None]]") -> None:
        """After Ctrl-C: let the uploads stop and save their resume points.

        Parts in flight stop within one block; a request waiting for its
        answer may take longer, and a second Ctrl-C quits at once (resume
        points are written atomically, so what is on disk stays usable).
        """
        try:
            _, pending = cf.wait(futures, timeout=3)
            if pending:
                self.err("waiting for the requests in flight to stop (Ctrl-C again to quit now)")
                cf.wait(futures)
        except KeyboardInterrupt:
            self.display.close()
            self.err(INTERRUPTED_MESSAGE)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)

    def report_put(self, file: str, r: Any) -> None:
        if self.args.json:
            self.emit_json(
                {
                    "file": file,
                    "ok": True,
                    "id": r.id,
                    "url": r.url,
                    "size": r.size,
                    "resumed": r.resumed,
                    "deduplicated": r.deduplicated,
                    "sent_bytes": r.sent_bytes,
                    "elapsed": round(r.elapsed, 3),
                    "expires": r.expires,
                }
            )
            return
        if self.args.quiet:
            self.out(r.id)
            return
        rate = r.sent_bytes / r.elapsed if r.elapsed > 0 else 0.0
        how = f"{format_bytes(r.size)} in {r.elapsed:.1f} s, {format_bytes(rate)}/s"
        if r.deduplicated:
            how = f"{format_bytes(r.size)}, deduplicated: the server had it, nothing sent"
        elif r.resumed:
            how = f"resumed: re-sent {format_bytes(r.sent_bytes)} of {format_bytes(r.size)} in {r.elapsed:.1f} s"
        name = "stdin" if file == "-" else file
        self.out(f"{name} -> {r.id}  ({how})")

    # get, info, rm, ls ----------------------------------------------------------

    def do_get(self) -> int:
        a = self.args
        client = self.client()
        show_bar = not (a.quiet or a.json or getattr(a, "no_progress", False)) and sys.stderr.isatty()
        total = a.length
        if show_bar and total is None:  # for a bar with a percentage; without a size it just counts
            with contextlib.suppress(UpClientError):
                size = client.info(a.id).size
                total = None if size is None else max(0, size - (a.offset or 0))
        self.display = ProgressDisplay(show_bar, os.path.basename(a.id.rstrip("/")) or a.id, total)
        progress = (lambda p: self.display.update(0, p)) if show_bar else None
        with client:
            if a.dest in (None, "-"):
                out = sys.stdout.buffer
                try:
                    client.get(a.id, out, offset=a.offset, length=a.length, on_progress=progress)
                    out.flush()
                except BrokenPipeError:
                    # The reader went away (e.g. `| head`): not worth a message.
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
                    os.close(devnull)
                    return EXIT_FAILED
            else:
                # With a destination, get returns the byte count (typed Union[bytes, int]).
                n = int(client.get(a.id, a.dest, offset=a.offset, length=a.length, on_progress=progress))
        self.display.close()
        if a.dest in (None, "-"):
            return EXIT_OK  # stdout holds the bytes: nothing else goes there
        if a.json:
            self.emit_json({"id": a.id, "ok": True, "dest": a.dest, "bytes": n})
        elif not a.quiet:
            self.err(f"wrote {format_bytes(n)} ({n} bytes) to {a.dest}")
        return EXIT_OK

    def do_info(self) -> int:
        with self.client() as client:
            info = client.info(self.args.id)
        if self.args.json:
            self.emit_json(
                {
                    "id": info.id,
                    "ok": True,
                    "size": info.size,
                    "complete": info.complete,
                    "offset": info.offset,
                    "content_type": info.content_type,
                    "modified": info.modified,
                    "expires": info.expires,
                    "metadata": dict(info.metadata),
                    "extra": {k: v for k, v in info.extra.items() if isinstance(v, (str, int, float, bool))},
                }
            )
            return EXIT_OK
        rows = [
            ("id", info.id),
            ("size", "unknown (deferred)" if info.size is None else f"{info.size} ({format_bytes(info.size)})"),
            ("complete", "yes" if info.complete else f"no, {info.offset} bytes received"),
            ("content type", info.content_type or "-"),
        ]
        if info.modified is not None:
            rows.append(("modified", _iso(info.modified)))
        if info.expires is not None:
            rows.append(("expires", _iso(info.expires)))
        for k, v in sorted(info.metadata.items()):
            rows.append((f"metadata {k}", v))
        for k, v in info.extra.items():  # what only this backend tells (FastDFS: crc32, source ip...)
            if isinstance(v, (str, int, float, bool)):
                rows.append((k.replace("_", " "), f"{v:#010x}" if k == "crc32" else str(v)))
        width = max(len(k) for k, _ in rows)
        for k, v in rows:
            self.out(f"{k:<{width}}  {v}")
        return EXIT_OK

    def do_rm(self) -> int:
        a = self.args
        extra: Dict[str, Any] = {"store": FileStore(a.store)} if a.store else {}
        with self.client(**extra) as client:
            if os.path.isfile(a.id):  # a local file: give up its interrupted upload
                n = client.abort(a.id)
                if a.json:
                    self.emit_json({"file": a.id, "ok": True, "aborted": n})
                elif not a.quiet:
                    self.err(f"gave up {n} interrupted upload{'s' if n != 1 else ''} of {a.id}")
                return EXIT_OK
            client.delete(a.id)
        if self.args.json:
            self.emit_json({"id": self.args.id, "ok": True, "deleted": True})
        elif not self.args.quiet:
            self.err(f"deleted {self.args.id}")
        return EXIT_OK

    def do_ls(self) -> int:
        with self.client() as client:
            if "groups" in client.backend.extra_verbs:  # FastDFS: no file listing, but groups and storages
                return self._ls_groups(client)
            try:
                for info in client.iter(self.args.prefix):
                    if self.args.json:
                        self.emit_json({"id": info.id, "size": info.size, "modified": info.modified})
                    else:
                        size = "-" if info.size is None else str(info.size)
                        self.out(f"{size:>12}  {info.id}")
            except Unsupported as exc:
                name = exc.backend or client.backend.name
                self.report_failure(
                    Unsupported(
                        f"the {name} backend cannot list files: the protocol has no listing "
                        "(keep the ids put prints)",
                        backend=exc.backend, operation=exc.operation,
                    )
                )
                return EXIT_FAILED
        return EXIT_OK


    def _ls_groups(self, client: Client) -> int:
        """The groups a FastDFS tracker knows or, given a group name, that group's storage servers."""
        if not self.args.prefix:
            for g in client.groups():
                if self.args.json:
                    self.emit_json({"group": g.name, "storages": g.storage_count, "free_mb": g.free_mb,
                                    "total_mb": g.total_mb, "writable": g.writable_count})
                else:
                    self.out(f"{g.name:<16}  {g.storage_count} storage(s), {g.writable_count} writable, "
                             f"{g.free_mb} MB free of {g.total_mb} MB")
            return EXIT_OK
        for st in client.storages(self.args.prefix):
            if self.args.json:
                self.emit_json({"group": self.args.prefix, "id": st.id, "ip": st.ip, "port": st.storage_port,
                                "status": st.status_name, "version": st.version, "free_mb": st.free_mb,
                                "total_mb": st.total_mb})
            else:
                self.out(f"{st.ip}:{st.storage_port:<6} {st.status_name:<8} {st.version:<8} "
                         f"{st.free_mb} MB free of {st.total_mb} MB  (id {st.id or '-'})")
        return EXIT_OK

    def _storage_verb(self, method: str, run: Callable[[Client], Any], done: str) -> int:
        """A verb only storage backends have: Unsupported says so plainly."""
        with self.client() as client:
            if method not in client.backend.extra_verbs:
                name = client.backend.name
                self.report_failure(Unsupported(f"the {name} backend has no {self.args.verb}",
                                                backend=name, operation=self.args.verb))
                return EXIT_FAILED
            outcome = run(client)
        if self.args.json:
            self.emit_json({"ok": True, "verb": self.args.verb, "result": outcome})
        elif not self.args.quiet:
            self.err(done)
        return EXIT_OK

    def do_mkdir(self) -> int:
        a = self.args
        return self._storage_verb("mkdir", lambda c: c.mkdir(a.path), f"created {a.path}")

    def do_mv(self) -> int:
        a = self.args
        return self._storage_verb("move", lambda c: c.move(a.src, a.dst), f"moved {a.src} to {a.dst}")

    def do_cp(self) -> int:
        a = self.args
        return self._storage_verb("copy", lambda c: c.copy(a.src, a.dst), f"copied {a.src} to {a.dst}")

    def do_purge(self) -> int:
        a = self.args
        refused: List[str] = []

        def purge(c: Client) -> List[str]:
            refused.extend(c.purge(a.targets, domain=a.domain))
            return refused

        status = self._storage_verb("purge", purge, f"asked the CDN to refresh {len(a.targets)} URL(s)")
        for url in refused:
            self.err(f"not purged (not a domain of this service): {url}")
        return EXIT_FAILED if refused else status


def _put_options(pairs: Sequence[Tuple[str, str]]) -> Dict[str, Any]:
    """``-o KEY=VALUE`` pairs as put options; ``a.b=v`` sets key ``b`` of mapping option ``a``."""
    options: Dict[str, Any] = {}
    for key, value in pairs:
        outer, dot, inner = key.partition(".")
        if dot and inner:
            slot = options.setdefault(outer, {})
            if not isinstance(slot, dict):
                raise _UsageError(f"-o {outer}= and -o {key}= cannot both be given")
            slot[inner] = value  # header and policy values stay text
        else:
            options[key] = _option_value(value)
    return options


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat(timespec="seconds")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``upclient`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) or a usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return Command(args, parser).run()
    except SystemExit as exc:  # parser.error() after parsing
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:  # between the verbs' own handlers
        sys.stderr.write("upclient: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
