"""One run of the command: its arguments, its output, its client, and the exit status of a verb.

The exit statuses are :mod:`.exits`'s; their names are importable from here too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.parse
from typing import Any, Callable, Collection, Dict, Optional

from ..backends import backend_class
from ..client import Client
from ..errors import UpClientError
from ..retry import RetryPolicy
from .args import URL_ENV, UsageError
from .display import DisplayHandler, ProgressDisplay
from .exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exit_status
from .redact import RedactingFormatter, Redactor

__all__ = [
    "Command",
    "server_of_id",
    "INTERRUPTED_MESSAGE",
]

#: The flags that are backend options (credentials and the like).
BACKEND_FLAGS = ("token", "api_key", "user_id", "org_id", "password", "auth_server", "endpoint")

#: The verbs whose ID may be a tus upload URL that names its own server.
_URL_ID_VERBS = ("get", "info", "rm")

INTERRUPTED_MESSAGE = "interrupted; run the same command again to resume"

#: A verb: runs on a Command and returns the exit status.
Verb = Callable[["Command"], int]


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

    def setup_logging(self) -> Callable[[], None]:
        """Send the run's log records to the display; returns what puts the loggers back as they were
        (``main()`` may be called in-process, by an app or a test)."""
        saved = [(lg, lg.level, lg.propagate, list(lg.handlers))
                 for lg in (logging.getLogger("upclient"), logging.getLogger("urllib3"))]

        def restore() -> None:
            for lg, level, propagate, handlers in saved:
                lg.setLevel(level)
                lg.propagate = propagate
                lg.handlers[:] = handlers

        level = logging.WARNING
        if self.args.quiet:
            level = logging.ERROR
        if self.args.verbose == 1:
            level = logging.INFO
        elif self.args.verbose >= 2:
            level = logging.DEBUG
        handler = DisplayHandler(lambda: self.display)
        handler.setFormatter(RedactingFormatter(self.redact))
        root = logging.getLogger("upclient")
        for old in [h for h in root.handlers if isinstance(h, DisplayHandler)]:
            root.removeHandler(old)  # main() called again in the same process
        root.addHandler(handler)
        root.setLevel(level)
        root.propagate = False
        if self.args.verbose >= 3:  # the HTTP library too
            for name in ("urllib3",):
                other = logging.getLogger(name)
                other.addHandler(handler)
                other.setLevel(logging.DEBUG)
        return restore

    def url(self) -> str:
        url = getattr(self.args, "to", None) if self.args.verb == "put" else self.args.url
        url = url or os.environ.get(URL_ENV)
        if not url and self.args.verb in _URL_ID_VERBS:
            url = self._server_from_id()
        if not url:
            flag = "--to" if self.args.verb == "put" else "--from"
            raise UsageError(f"no server URL: pass {flag} URL or set {URL_ENV}")
        self.redact.add_url(url)
        return url

    def _server_from_id(self) -> Optional[str]:
        """The tus server an ID that is an upload URL names, when no server was given.

        Only without credentials: they go to a server the user named (``--from``,
        ``$UPCLIENT_URL``), never to one an id picked, which may have come from anywhere.
        """
        server = server_of_id(self.args.id)
        if server is None:
            return None
        a = self.args
        if a.header or any(getattr(a, name, None) for name in ("token", "api_key", "password")):
            raise UsageError(
                f"no server URL: pass --from URL or set {URL_ENV}. An ID that is a URL names its server "
                f"only when no credentials are given (they go only to a server you name): --from {server}"
            )
        return server

    def client(self, url: Optional[str] = None, *, only_its_own: bool = False, **extra: Any) -> Client:
        """A client of ``url`` (the command's server if None) with the command's settings.

        ``only_its_own``: of the credential flags, give only those the URL's
        backend takes (a command with two servers, such as ``sync``).
        """
        a = self.args
        url = url or self.url()
        kwargs: Dict[str, Any] = dict(extra)
        if a.header:
            kwargs["headers"] = dict(a.header)
        if a.timeout is not None:
            kwargs["connect_timeout"] = a.timeout
            kwargs["read_timeout"] = a.timeout
        if a.retries is not None:
            kwargs["retry"] = RetryPolicy(attempts=a.retries + 1)
        known: Collection[str] = BACKEND_FLAGS
        if only_its_own:
            known = getattr(backend_class(url), "client_options", frozenset())
        for name in BACKEND_FLAGS:
            if getattr(a, name, None) and name in known:
                kwargs[name] = getattr(a, name)
        if a.insecure:
            kwargs["verify"] = False  # the transport logs one warning per host for it
        self.redact.add_url(url)
        return Client(url, **kwargs)

    # verbs ----------------------------------------------------------------------

    def run(self, verb: Verb) -> int:
        """Run ``verb`` and turn what it raised into a message and an exit status."""
        restore_logging = self.setup_logging()
        try:
            status = verb(self)
            return EXIT_FAILED if status == EXIT_OK and self.stdout_broken else status
        except UsageError as exc:
            self.args.verb_parsers.get(self.args.verb, self.parser).error(str(exc))  # exits with 2
            return EXIT_USAGE  # pragma: no cover
        except (UpClientError, OSError) as exc:  # OSError: a local file that cannot be read or written
            self.report_failure(exc)
            return exit_status(exc)
        except KeyboardInterrupt:
            self.display.close()
            if self.args.json and self.args.verb != "get":  # get may be writing bytes to stdout
                self.emit_json({"ok": False, "error": {"type": "Interrupted", "message": "interrupted"}})
            self.err("interrupted")
            return EXIT_INTERRUPTED
        finally:
            self.display.close()
            restore_logging()

    def report_failure(self, exc: BaseException, file: Optional[str] = None) -> None:
        if self.args.json:
            obj: Dict[str, Any] = {}
            if file is not None:
                obj["file"] = file
            obj.update(ok=False, error=self.error_obj(exc))
            self.emit_json(obj)
        where = f"{file}: " if file is not None else ""
        self.err(f"error: {where}{exc} [{type(exc).__name__}]")


def server_of_id(id: str) -> Optional[str]:
    """``tus+<scheme>://<host>/<collection>/`` for an id that is an http(s) upload URL, else None.

    A tus id is the upload's URL: its origin is the server, and the path up to
    its last segment the collection uploads are created in.  An id with a user
    or password in it names no server: it is a usage error (masked).
    """
    if not id.lower().startswith(("http://", "https://")):
        return None
    try:
        parts = urllib.parse.urlsplit(id)
        host = parts.hostname
    except ValueError:
        return None
    if not host:
        return None
    if "@" in parts.netloc:
        raise UsageError("an ID with a user or password in it (masked here) names no server: pass --from URL")
    collection = parts.path.rstrip("/").rsplit("/", 1)[0] + "/"
    return "tus+" + urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc, collection, "", ""))
