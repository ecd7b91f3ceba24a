"""Helpers of test_secrets.py: the secrets of a run, what a run shows, and the scan.

:class:`Secrets` holds the distinctive secrets given to a backend (and the
ones derived from them: a Basic header, a signing key, signatures) in every
form they may take in text; :class:`Evidence` gathers everything a run
shows a user (log records, reprs, exceptions, the store's files, the CLI's
output), each piece named by where it came from, and :meth:`Evidence.leaks`
says which secret turned up where.  :func:`capture_logs` formats every log
record of every logger at DEBUG, urllib3's included.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import subprocess
import sys
import traceback
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Pattern, Sequence, Tuple, Type

REPO = Path(__file__).resolve().parent.parent

#: Loggers of the servers a test runs in this process: what a server logs is not the client's output.
SERVER_LOGGERS = ("upclient.testing",)


def forms(value: str) -> List[str]:
    """``value`` as text may carry it: itself, percent-encoded, base64 (standard and URL-safe)."""
    raw = value.encode("utf-8")
    out = [
        value,
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    ]
    return list(dict.fromkeys(f for f in out if f))


class Secrets:
    """Secrets by label; a label names what leaked in a failure message."""

    def __init__(self) -> None:
        self._exact: Dict[str, List[str]] = {}
        self._patterns: Dict[str, Pattern[str]] = {}

    def add(self, label: str, value: str, *, encoded: bool = True) -> str:
        """Look for ``value`` (and its encoded forms unless ``encoded=False``) under ``label``."""
        if len(value) < 8:
            raise ValueError(f"{label}: a secret this short would match by chance")
        found = self._exact.setdefault(label, [])
        for form in forms(value) if encoded else [value]:
            if form not in found:
                found.append(form)
        return value

    def add_pattern(self, label: str, regex: str) -> None:
        """Look for text matching ``regex`` (values computed where the test cannot see them)."""
        self._patterns[label] = re.compile(regex)

    @property
    def labels(self) -> List[str]:
        return sorted(set(self._exact) | set(self._patterns))

    def values(self, label: str) -> List[str]:
        return list(self._exact.get(label, ()))

    def find(self, text: str) -> List[Tuple[str, str]]:
        """``(label, the form found)`` for every secret in ``text``."""
        hits = []
        for label, values in self._exact.items():
            for value in values:
                if value in text:
                    hits.append((label, value))
                    break
        for label, pattern in self._patterns.items():
            m = pattern.search(text)
            if m:
                hits.append((label, m.group(0)))
        return hits


class Evidence:
    """Everything a run showed, by category (``logs``, ``objects``, ``exceptions``, ``store``, ``cli``)."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets
        self.pieces: Dict[str, List[Tuple[str, str]]] = {}
        #: The type of every exception a step raised, in order.
        self.raised: List[Type[BaseException]] = []

    def add(self, category: str, where: str, text: str) -> None:
        self.pieces.setdefault(category, []).append((where, text))

    def count(self, category: str) -> int:
        return len(self.pieces.get(category, ()))

    def leaks(self, category: str) -> List[str]:
        """One line per secret found in ``category``: which, where, and the text around it."""
        out = []
        for where, text in self.pieces.get(category, ()):
            for label, form in self.secrets.find(text):
                at = text.find(form)
                excerpt = text[max(0, at - 120) : at + len(form) + 60].replace("\n", "\\n")
                out.append(f"{label} in {where}: ...{excerpt}...")
        return sorted(set(out))

    # -- what a run shows -------------------------------------------------------------

    def objects(self, where: str, *objs: Any) -> None:
        """The repr and str of each object (a client, a result, a progress snapshot...)."""
        for obj in objs:
            self.add("objects", f"{where}: repr({type(obj).__name__})", repr(obj))
            self.add("objects", f"{where}: str({type(obj).__name__})", str(obj))

    def exception(self, where: str, exc: BaseException) -> None:
        """Message, args, attributes and the whole traceback (chained causes too) of ``exc``."""
        self.raised.append(type(exc))
        self.add("exceptions", f"{where}: traceback", "".join(traceback.format_exception(type(exc), exc,
                                                                                           exc.__traceback__)))
        seen = set()
        node: Optional[BaseException] = exc
        depth = 0
        while node is not None and id(node) not in seen:
            seen.add(id(node))
            name = f"{where}: {type(node).__name__}" + (f" (cause {depth})" if depth else "")
            self.add("exceptions", f"{name} str", str(node))
            self.add("exceptions", f"{name} repr", repr(node))
            self.add("exceptions", f"{name} args", repr(node.args))
            self.add("exceptions", f"{name} vars", repr(vars(node)))
            # the chain as a traceback shows it: a cause, else a context not suppressed by ``from None``
            node = node.__cause__ or (None if node.__suppress_context__ else node.__context__)
            depth += 1

    def attempt(self, where: str, call: Callable[[], Any], expect: Optional[Type[BaseException]] = None,
                may_fail: bool = False) -> Any:
        """Run ``call``: its value, or the exception it raises, is evidence.

        With ``expect`` it must raise that (the exception is returned);
        without, it must succeed, unless ``may_fail`` (then an exception is returned).
        """
        try:
            value = call()
        except Exception as exc:
            self.exception(where, exc)
            if expect is None and not may_fail:
                raise AssertionError(f"{where}: failed: {type(exc).__name__}: {exc}") from exc
            if expect is not None and not isinstance(exc, expect):
                raise AssertionError(f"{where}: expected {expect.__name__}, got {type(exc).__name__}: {exc}") from exc
            return exc
        if expect is not None:
            raise AssertionError(f"{where}: expected {expect.__name__}, nothing was raised")
        if value is not None:
            self.objects(where, value)
        return value

    def store(self, where: str, directory: Path) -> int:
        """Every file under ``directory`` (resume records, digests, locks), as text; returns how many."""
        n = 0
        for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
            with contextlib.suppress(FileNotFoundError):  # a lock file let go meanwhile
                self.add("store", f"{where}: {path.relative_to(directory)}",
                         path.read_bytes().decode("utf-8", "replace"))
                n += 1
        return n


# -- logs -----------------------------------------------------------------------------------


class _Recorder(logging.Handler):
    """Formats each record in full into the evidence: message, args, exception, stack."""

    def __init__(self, evidence: Evidence) -> None:
        super().__init__(logging.DEBUG)
        self.evidence = evidence
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(threadName)s: %(message)s"))
        self.records = 0
        self.names: Dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(SERVER_LOGGERS):
            return
        text = "\n".join([self.format(record), f"msg={record.msg!r}", f"args={record.args!r}"])
        self.evidence.add("logs", f"log record {record.name} {record.levelname}", text)
        self.records += 1
        self.names[record.name] = self.names.get(record.name, 0) + 1


@contextlib.contextmanager
def capture_logs(evidence: Evidence) -> Iterator[_Recorder]:
    """Every record of every logger, at DEBUG, into ``evidence`` (levels and handlers restored after)."""
    recorder = _Recorder(evidence)
    root = logging.getLogger()
    touched = [root, logging.getLogger("upclient"), logging.getLogger("urllib3"), logging.getLogger("requests")]
    touched += [logger for logger in root.manager.loggerDict.values()
                if isinstance(logger, logging.Logger) and logger.level not in (logging.NOTSET, logging.DEBUG)]
    saved = [(logger, logger.level, logger.propagate, logger.disabled) for logger in touched]
    for logger in touched:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        if logger is not root:
            logger.propagate = True  # the CLI run in-process by other tests turns it off for "upclient"
    root.addHandler(recorder)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        for logger, level, propagate, disabled in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


# -- the command line -----------------------------------------------------------------------


def cli_env(state: Path, **extra: str) -> Dict[str, str]:
    """The environment of a CLI process: this checkout, a private state directory, no URL or secrets."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("UPCLIENT_URL", "UPCLIENT_TOKEN", "UPCLIENT_API_KEY", "UPYUN_PASSWORD")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["XDG_STATE_HOME"] = str(state)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(evidence: Evidence, where: str, args: Sequence[str], env: Dict[str, str],
            expect: Optional[int] = 0, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    """``python -m upclient ARGS``; its stdout and stderr become evidence; ``expect`` is its exit status."""
    done = subprocess.run([sys.executable, "-m", "upclient", *args], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=timeout, stdin=subprocess.DEVNULL)
    evidence.add("cli", f"{where}: stdout", done.stdout)
    evidence.add("cli", f"{where}: stderr", done.stderr)
    if expect is not None:
        assert done.returncode == expect, (
            f"{where}: exit status {done.returncode}, expected {expect}\n{done.stdout}\n{done.stderr}"
        )
    return done


def leak_report(backend: str, category: str, evidence: Evidence, shown: str = "") -> str:
    """What ``backend`` leaked in ``category`` (named ``shown`` in the message), one line per finding."""
    found = evidence.leaks(category)
    return f"{backend} leaks {len(found)} secret(s) in {shown or category}:\n  " + "\n  ".join(found)
