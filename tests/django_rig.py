"""What the Django tests stand on: Django in this process, the example site under gunicorn, a browser.

* :func:`configure_django`: Django set up in the test process with the
  example site's app (its models), for storage tests that call it directly.
* :class:`SiteServer`: ``examples/django_site`` served by gunicorn's
  threaded worker (a real WSGI server that hands the app the body as it
  arrives) in a process of its own on 127.0.0.1, against one backend; its
  worker's peak RSS and the bytes it wrote to disk are read from ``/proc``.
* :func:`post_form`: a ``multipart/form-data`` POST sent over a raw socket
  as a browser sends it (no size per file), whose files are generated as
  they are sent and hashed; it can stop midway and drop the connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "examples" / "django_site"
MiB = 1024 * 1024


def configure_django(**overrides: Any) -> None:
    """Django in this process, with the example's ``uploads`` app and an in-memory database (once)."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    if str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))
    settings.configure(
        SECRET_KEY="tests-only",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.staticfiles", "uploads"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        STORAGES={"default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
                  "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"}},
        ALLOWED_HOSTS=["testserver", "127.0.0.1"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        **overrides,
    )
    django.setup()


urlpatterns: List[Any] = []  # ROOT_URLCONF of the in-process configuration


@contextlib.contextmanager
def storages_setting(storages_value: Mapping[str, Any], **more: Any) -> Iterator[None]:
    """``override_settings(STORAGES=storages_value, **more)``, read by ``storages`` as from a settings module.

    Django 4.2's ``override_settings(STORAGES=...)`` also overrides the
    deprecated ``DEFAULT_FILE_STORAGE`` and ``STATICFILES_STORAGE``, and its
    storage handler then takes those (a class, no ``OPTIONS``) over STORAGES;
    a settings module gives it STORAGES alone.  There the handler is handed
    the setting itself, as it reads it from a settings module (Django 5 needs
    nothing).
    """
    import django
    from django.conf import settings
    from django.core.files.storage import storages
    from django.test import override_settings

    with override_settings(STORAGES=storages_value, **more):
        if django.VERSION < (5, 0):
            storages._backends = dict(settings.STORAGES)  # what StorageHandler.backends reads first
        yield


# ------------------------------------------------------------------ the site under gunicorn


def gunicorn_missing() -> Optional[str]:
    """Why gunicorn cannot serve the site here, or None."""
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return "gunicorn is not installed: pip install gunicorn (the test extra names it)"
    return None


def _quiet_control() -> List[str]:
    """gunicorn 24+ opens a control socket in the home directory by default: not for a test's server."""
    from gunicorn import config

    known = {setting.name for setting in config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in known else []


class SiteServer:
    """``examples/django_site`` under ``gunicorn --worker-class gthread``, against one backend.

    ``storage`` is a running server of :mod:`upclient.testing` (its URL and
    settings become the site's ``UPCLIENT_URL`` and ``UPCLIENT_OPTIONS``),
    or a ``(url, options)`` pair.  A context manager: migrates the database,
    starts gunicorn, and stops it (SIGTERM, then SIGKILL) however the block ends.
    """

    def __init__(self, data_dir: Path, storage: Any, *, threads: int = 20, env: Optional[Mapping[str, str]] = None,
                 options: Optional[Mapping[str, Any]] = None) -> None:
        if isinstance(storage, tuple):
            url, settings = storage
        else:
            url, settings = storage.url, dict(storage.settings)
        settings = {**settings, **(options or {})}
        self.data_dir = data_dir
        self.threads = threads
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("UPCLIENT_", "UPYUN_"))},
            "PYTHONPATH": os.pathsep.join([str(REPO), str(SITE)]),
            "DJANGO_SETTINGS_MODULE": "site_config.settings",
            "SITE_DATA": str(data_dir),
            "UPCLIENT_URL": url,
            "UPCLIENT_OPTIONS": json.dumps(settings),
            **(env or {}),
        }
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.port = 0
        self.log_path = data_dir / "gunicorn.log"
        self._log: Any = None

    def manage(self, *args: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
        """``python manage.py ARGS`` with the site's environment; its output, checked."""
        done = subprocess.run([sys.executable, str(SITE / "manage.py"), *args], env=self.env, cwd=SITE,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def __enter__(self) -> "SiteServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")
        self._log = open(self.log_path, "wb")
        command = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", "1",
                   "--threads", str(self.threads), "--bind", "127.0.0.1:0", "--timeout", "300",
                   "--graceful-timeout", "5", "--worker-tmp-dir", "/dev/shm", "--error-logfile", "-",
                   "--log-level", "info", "--chdir", str(SITE), *_quiet_control(), "site_config.wsgi"]
        self.process = subprocess.Popen(command, env=self.env, cwd=SITE, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> None:
        assert self.process is not None
        end = time.monotonic() + 60
        while time.monotonic() < end:
            text = self.log_path.read_text(errors="replace")
            m = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if m and "Booting worker" in text and self.worker_pid() is not None:
                self.port = int(m.group(1))
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"gunicorn did not start:\n{self.log_path.read_text(errors='replace')}")

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- what the worker used ------------------------------------------------------------

    def worker_pid(self) -> Optional[int]:
        """The gunicorn worker (the master's child): the process that runs Django."""
        assert self.process is not None
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def _proc(self, what: str) -> Dict[str, int]:
        pid = self.worker_pid()
        assert pid is not None, "the worker is gone"
        out = {}
        for line in Path(f"/proc/{pid}/{what}").read_text().splitlines():
            key, _, value = line.partition(":")
            number = value.split()[0] if value.split() else ""
            if number.isdigit():
                out[key] = int(number)
        return out

    def peak_rss(self) -> int:
        """The worker's peak resident memory in bytes (VmHWM)."""
        return self._proc("status")["VmHWM"] * 1024

    def written_to_disk(self) -> int:
        """Bytes the worker caused to be written to storage (``/proc/PID/io`` write_bytes)."""
        return self._proc("io")["write_bytes"]


# ------------------------------------------------------------------ a browser's POST


@dataclasses.dataclass
class FormFile:
    """One file of a form: its field, its name, its size; its bytes are made as they are sent."""

    field: str
    filename: str
    size: int
    seed: int = 0
    content_type: str = "application/octet-stream"
    sha256: str = ""


@dataclasses.dataclass
class Answer:
    status: int
    headers: Dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


_BLOCK = os.urandom(MiB)


def file_bytes(f: FormFile) -> Iterator[bytes]:
    """The bytes of ``f``, a MiB at a time: a shared random block, stamped with the file's seed and place."""
    sent = 0
    index = 0
    while sent < f.size:
        block = struct.pack(">QQ", f.seed, index) + _BLOCK[16:]
        block = block[: f.size - sent]
        yield block
        sent += len(block)
        index += 1


def file_sha256(f: FormFile) -> str:
    h = hashlib.sha256()
    for block in file_bytes(f):
        h.update(block)
    return h.hexdigest()


def post_form(port: int, path: str, files: Sequence[FormFile], *, fields: Optional[Mapping[str, str]] = None,
              headers: Optional[Mapping[str, str]] = None, cut_after: Optional[int] = None,
              on_cut: Any = None, timeout: float = 300) -> Optional[Answer]:
    """POST a form as a browser does; the answer, or None when ``cut_after`` bytes of body were sent.

    With ``cut_after``, the body stops there, ``on_cut()`` (if given) is
    called while the connection is still open, and then it is closed.
    Each file's ``sha256`` is filled in as it is sent.
    """
    boundary = "----WebKitFormBoundary" + os.urandom(8).hex()
    heads: List[Tuple[bytes, Optional[FormFile]]] = []
    for name, value in (fields or {}).items():
        heads.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                      .encode(), None))
    for f in files:
        heads.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{f.field}"; '
                      f'filename="{f.filename}"\r\nContent-Type: {f.content_type}\r\n\r\n'.encode(), f))
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(h) + (f.size + 2 if f is not None else 0) for h, f in heads) + len(tail)
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: upclient-tests\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
               + "Connection: close\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent = 0
    reader = _ResponseReader(sock)
    try:
        sock.sendall(request)

        def send(data: bytes) -> bool:
            nonlocal sent
            if cut_after is not None and sent + len(data) > cut_after:
                data = data[: max(0, cut_after - sent)]
                sock.sendall(data)
                sent += len(data)
                return False
            sock.sendall(data)
            sent += len(data)
            return True

        try:
            for head, f in heads:
                if not send(head):
                    break
                if f is not None:
                    h = hashlib.sha256()
                    whole = True
                    for block in file_bytes(f):
                        h.update(block)
                        if not send(block):
                            whole = False
                            break
                    if not whole:
                        break
                    f.sha256 = h.hexdigest()
                    if not send(b"\r\n"):
                        break
            else:
                send(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413, 504) and stopped reading: its answer tells
        if cut_after is not None and sent >= cut_after:
            if on_cut is not None:
                on_cut()
            return None
        return reader.read()
    finally:
        sock.close()


class _ResponseReader:
    """Reads the answer of a ``Connection: close`` request to its end."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read(self) -> Answer:
        data = bytearray()
        while True:
            try:
                block = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not block:
                break
            data += block
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not lines or not lines[0].startswith("HTTP/"):
            raise AssertionError(f"no HTTP answer: {bytes(data[:200])!r}")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return Answer(status, headers, body)


def concurrently(calls: Sequence[Any]) -> List[Any]:
    """Run the zero-argument ``calls`` at once, a thread each; their results in order (errors raised)."""
    results: List[Any] = [None] * len(calls)
    errors: List[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
