"""The harness: runs every scenario's clients against its server, each client in its own process."""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Tuple

from bench.certs import Certificates, make_certificates
from bench.checks import (
    fdfs_cleanup, sha256_of, upyun_cleanup, verify, verify_copies, verify_fdfs, verify_upyun,
)
from bench.measure import curl_version, kill_group, spawn
from bench.scenarios import (
    COMMUNITY_TOKEN, GiB, MD5_CACHED, MD5_FIRST, MD5_HASHLIB, MD5_UPCLIENT, MiB, UPYUN_OPERATOR, UPYUN_PASSWORD,
    UPYUN_SERVICE, WAN_DELAY, WAN_RATE, ClientSpec, Scenario, size_label,
)
from bench.sink import SinkProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER = HERE / "worker.py"
PROFILES = HERE / "results" / "profiles"
#: No single client run may take longer than this (seconds).
RUN_TIMEOUT = 300.0
#: The whole benchmark stops starting new runs after this (seconds).
TOTAL_BUDGET = 25 * 60.0
#: Bytes overwritten with fresh random data before every community run (a new MD5: no dedup).
FRESHEN = 64 * 1024

# -- results ---------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    scenario: str
    client: str
    kind: str
    round: int
    size: int  # bytes of one file
    files: int
    bytes: int = 0
    elapsed: Optional[float] = None  # seconds of upload, as the client measured it
    peak_rss_mib: Optional[float] = None
    rss_after_import_mib: Optional[float] = None
    cpu_seconds: Optional[float] = None  # user + system of the client's process(es), start-up included
    upload_cpu_seconds: Optional[float] = None  # the same over the upload alone (Python: measured in the worker)
    label: str = ""
    ok: bool = False
    verified: Optional[bool] = None
    error: str = ""
    load_average: Optional[float] = None  # 1-minute load average when the run started
    server_cpu_seconds: Optional[float] = None  # the server process's CPU over the run (sink, emulators)
    urls: List[str] = dataclasses.field(default_factory=list, repr=False)

    @property
    def mbps(self) -> Optional[float]:
        if not self.ok or not self.elapsed:
            return None
        return self.bytes / self.elapsed / 1e6

    @property
    def files_per_s(self) -> Optional[float]:
        if not self.ok or not self.elapsed:
            return None
        return self.files / self.elapsed


class Bench:
    """Runs the scenarios; owns the temporary directory, servers and results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.runs: List[Run] = []
        self.notes: List[str] = []
        self.started = time.monotonic()
        self.tmp = Path(tempfile.mkdtemp(prefix="upclient-bench-", dir=args.tmpdir or default_tmpdir()))
        self.files: Dict[Tuple[int, int], List[str]] = {}
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + ([self.env["PYTHONPATH"]] if self.env.get("PYTHONPATH") else [])
        )
        self.python = args.python or sys.executable
        # Python clients start as an installed package does, from bytecode compiled once
        # (pip compiles at install): with PYTHONDONTWRITEBYTECODE set, as on some build
        # machines, every run compiled upclient's sources again, about 60 ms of CPU a run.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([self.python, "-m", "compileall", "-q", str(REPO / "upclient"), str(REPO / "bench")],
                       env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        self.load: Dict[str, Tuple[float, float]] = {}
        #: The running UPYUN emulator: its own host:port (not the proxy's) and its --dir.
        self.upyun_server: Optional[Tuple[str, Path]] = None
        #: The process of the running sink or emulator, whose CPU each run reports (not the client's).
        self.server_pid: Optional[int] = None
        self._md5s: Dict[str, str] = {}
        #: The running FastDFS emulator's --dir, and the id of the copy of each test file stored
        #: there for downloads (l): source path -> file id.
        self.fdfs_store: Optional[Path] = None
        self.fdfs_seeds: Dict[str, str] = {}
        self._sha256s: Dict[str, str] = {}
        self._certs: Optional[Certificates] = None

    @property
    def certs(self) -> Certificates:
        """The CA and server certificate of the HTTPS scenario (made on first use, under the temp dir)."""
        if self._certs is None:
            self._certs = make_certificates(self.tmp / "tls")
        return self._certs

    # -- files -------------------------------------------------------------------

    def dataset(self, size: int, count: int) -> List[str]:
        """``count`` files of ``size`` bytes of random-looking data (made once, kept in cache)."""
        key = (size, count)
        if key not in self.files:
            folder = self.tmp / f"data-{size}x{count}"
            folder.mkdir()
            if count == 1:
                paths = [str(folder / f"file-{size_label(size).replace(' ', '')}.bin")]
                write_file(paths[0], size)
            else:
                paths = []
                for i in range(count):
                    path = folder / f"small-{i:05d}.bin"
                    path.write_bytes(os.urandom(size))
                    paths.append(str(path))
            self.files[key] = paths
        return self.files[key]

    def drop_dataset(self, size: int, count: int) -> None:
        paths = self.files.pop((size, count), None)
        if paths:
            for path in paths:
                self._md5s.pop(path, None)
                self._sha256s.pop(path, None)
            shutil.rmtree(Path(paths[0]).parent, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def out_of_time(self) -> bool:
        return time.monotonic() - self.started > TOTAL_BUDGET

    # -- servers -----------------------------------------------------------------

    @contextlib.contextmanager
    def server(self, scenario: Scenario) -> Iterator[Tuple[str, Callable[[], None]]]:
        """Start the scenario's server (and proxy); yields (creation URL, cleanup between runs)."""
        with contextlib.ExitStack() as stack:
            if scenario.server == "sink":
                cert = str(self.certs.server) if scenario.tls else None
                sink = stack.enter_context(SinkProcess(concat=True, python=self.python, certfile=cert))
                self.server_pid = sink.pid
                stack.callback(setattr, self, "server_pid", None)
                url, store = sink.url, None
            elif scenario.server == "tus-node":
                from upclient.testing import TusNodeServer

                store = self.tmp / "tus-node"
                node = stack.enter_context(TusNodeServer(store))
                url = node.url
            elif scenario.server == "community":
                store = self.tmp / "community"
                public = f"http://127.0.0.1:{free_port()}" if scenario.shaped else None
                url = stack.enter_context(self.community(store, public))
            elif scenario.server == "resumable-upload":
                from upclient.testing import ResumableUploadServer

                store = self.tmp / "resumable-upload"
                server = stack.enter_context(ResumableUploadServer(store, log_level="WARNING"))
                url = server.url
            elif scenario.server == "upyun":
                store = self.tmp / "upyun"
                url = stack.enter_context(self.upyun(store))  # host:port, what both clients take
                self.upyun_server = (url, store)
                stack.callback(setattr, self, "upyun_server", None)
            elif scenario.server == "fdfs":
                store = self.tmp / "fdfs"
                stack.callback(shutil.rmtree, store, True)  # after the emulator stops (callbacks run LIFO)
                url = "fdfs://" + stack.enter_context(self.fdfs(store))
                self.fdfs_store = store
                stack.callback(self._forget_fdfs)
            else:
                raise ValueError(scenario.server)
            if scenario.shaped:
                from upclient.testing import ShapingProxy

                if scenario.server == "upyun":
                    host, _, port_text = url.rpartition(":")
                    proxy = stack.enter_context(
                        ShapingProxy((host, int(port_text)), delay=WAN_DELAY, rate=WAN_RATE)
                    )
                    url = f"{proxy.host}:{proxy.port}"
                else:
                    upstream = urllib.parse.urlsplit(url)
                    port = (urllib.parse.urlsplit(public).port or 0) if scenario.server == "community" and public else 0
                    proxy = stack.enter_context(
                        ShapingProxy((upstream.hostname, upstream.port), delay=WAN_DELAY, rate=WAN_RATE, port=port)
                    )
                    url = proxy.url_for(url)

            def cleanup() -> None:
                if store is None:
                    return
                if scenario.server == "upyun":
                    assert self.upyun_server is not None
                    upyun_cleanup(*self.upyun_server)
                    return
                if scenario.server == "fdfs":
                    # a download run leaves the stored file for the next one; its copies go
                    shutil.rmtree(self.tmp / "fdfs-get", ignore_errors=True)
                    if not scenario.download:
                        fdfs_cleanup(Path(store))
                    return
                if scenario.server == "community":  # the stored files, not the emulator's state
                    for folder, _, names in os.walk(Path(store) / "objects"):
                        for name in names:
                            with contextlib.suppress(OSError):
                                os.unlink(os.path.join(folder, name))
                    return
                for entry in Path(store).iterdir():
                    if entry.is_file() and ".sqlite3" not in entry.name:
                        with contextlib.suppress(OSError):
                            entry.unlink()

            yield url, cleanup

    def community(self, store: Path, public_url: Optional[str]) -> ContextManager[str]:
        """``python -m upclient.testing community`` in its own process; yields its base URL."""
        cmd = ["--dir", str(store), "--token", COMMUNITY_TOKEN]
        if public_url:
            cmd += ["--public-url", public_url]
        return self.emulator("community", cmd, lambda lines: _address(next(lines), "community+", "http://"))

    def upyun(self, store: Path) -> ContextManager[str]:
        """``python -m upclient.testing upyun`` in its own process; yields its ``127.0.0.1:PORT``."""
        cmd = ["--dir", str(store), "--service", UPYUN_SERVICE, "--operator", UPYUN_OPERATOR,
               "--password", UPYUN_PASSWORD]
        return self.emulator("upyun", cmd, _upyun_endpoint)

    def fdfs(self, store: Path) -> ContextManager[str]:
        """``python -m upclient.testing fdfs --ip-size 45`` in its own process; yields its tracker's
        ``127.0.0.1:PORT``.  45-byte IP fields (a 6.15+ tracker with ``response_ip_addr_size =
        IPv6``): fastdfs-client 1.3.0 works with nothing else, and every client gets the same server."""
        cmd = ["--dir", str(store), "--ip-size", "45"]
        return self.emulator("fdfs", cmd, lambda lines: _address(next(lines), "fdfs://", ""))

    def _forget_fdfs(self) -> None:
        self.fdfs_store = None
        self.fdfs_seeds.clear()

    def fdfs_seed(self, url: str, path: str) -> str:
        """The id of a copy of ``path`` on the FastDFS emulator, for the download runs (l): uploaded
        once per emulator, by upclient in this process (not measured), checked by SHA-256."""
        if path not in self.fdfs_seeds:
            import upclient

            assert self.fdfs_store is not None
            cl = upclient.Client(url, store=None)
            try:
                file_id = cl.put(path).id
            finally:
                cl.close()
            ok, problem = verify_fdfs(self.fdfs_store, [file_id], [path], self.file_sha256, exact=False)
            if not ok:
                raise RuntimeError(f"the file for the downloads was not stored whole: {problem}")
            self.fdfs_seeds[path] = file_id
        return self.fdfs_seeds[path]

    @contextlib.contextmanager
    def emulator(self, name: str, args: List[str], address: Callable[[Iterator[str]], Optional[str]]
                 ) -> Iterator[str]:
        """``python -m upclient.testing NAME`` on a free loopback port, its own process group,
        stopped (SIGTERM, then SIGKILL) on the way out; yields what ``address`` finds in the
        lines it prints first (the base URL, or ``127.0.0.1:PORT``)."""
        cmd = [self.python, "-m", "upclient.testing", name, "--host", "127.0.0.1", "--port", "0", *args]
        log_path = self.tmp / f"{name}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
                                start_new_session=True)
        try:
            out = proc.stdout
            assert out is not None
            seen: List[str] = []

            def lines() -> Iterator[str]:
                # the first line within 30 s; the rest follow at once (they may be buffered already,
                # where select would not see them); a dead emulator gives "" (end of file)
                ready, _, _ = select.select([out], [], [], 30)
                while ready:
                    line = out.readline().decode().strip()
                    seen.append(line)
                    yield line
                yield ""

            found = address(lines())
            if not found:
                log.flush()
                tail = log_path.read_text(errors="replace")[-600:]
                raise RuntimeError(f"{name} emulator did not start (exit {proc.poll()}): {seen!r} {tail}")
            line = found
            self.server_pid = proc.pid
            try:
                yield line
            finally:
                self.server_pid = None
        finally:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()
            log.close()

    # -- one run -----------------------------------------------------------------

    def run_client(self, scenario: Scenario, spec: ClientSpec, url: str, paths: List[str], rnd: int) -> Run:
        size = os.path.getsize(paths[0])
        run = Run(scenario.key, spec.id, spec.kind, rnd, size, len(paths), load_average=os.getloadavg()[0])
        community = scenario.server == "community"
        upyun = scenario.server == "upyun"
        extra: Dict[str, Any] = {}
        if upyun:  # a fresh key for every file of every run: no run sees another's upload
            slug = re.sub(r"[^A-Za-z0-9]+", "-", spec.id).strip("-")
            tag = f"{scenario.key}-{slug}-r{rnd + 1}-{os.urandom(4).hex()}"
            extra = dict(service=UPYUN_SERVICE, operator=UPYUN_OPERATOR, password=UPYUN_PASSWORD,
                         keys=[f"bench-{tag}-{i}.bin" for i in range(len(paths))])
        fdfs_get = scenario.server == "fdfs" and scenario.download
        ca = str(self.certs.ca) if scenario.tls else None
        if ca:
            extra["verify"] = ca  # upclient's verify=; the other Python clients read REQUESTS_CA_BUNDLE
        if self.args.profile and rnd >= 0:
            PROFILES.mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"[^A-Za-z0-9=]+", "-", spec.id).strip("-")
            extra["profile"] = str(PROFILES / f"{scenario.key}-{slug}-r{rnd + 1}.prof")
        try:
            if community:
                for path in paths:
                    freshen(path)
            if fdfs_get:  # fresh destinations under one folder, removed after the run (cleanup)
                folder = self.tmp / "fdfs-get"
                folder.mkdir(exist_ok=True)
                extra["ids"] = [self.fdfs_seed(url, path) for path in paths]
                extra["dests"] = [str(folder / f"copy-{i}.bin") for i in range(len(paths))]
            server_cpu = self._server_cpu()
            if spec.kind == "curl":
                self._run_curl(run, url, paths, ca)
            else:
                self._run_python(run, spec, url, paths, extra, ca)
            if server_cpu is not None:
                after = self._server_cpu()
                run.server_cpu_seconds = after - server_cpu if after is not None else None
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one failed run must not stop the benchmark
            run.ok = False
            run.error = f"{type(exc).__name__}: {exc}"
        if run.ok:
            if upyun:
                assert self.upyun_server is not None
                md5 = self.file_md5(paths[0]) if len(paths) == 1 else None
                run.verified, problem = verify_upyun(*self.upyun_server, run.urls, extra["keys"], size, md5)
            elif scenario.server == "fdfs":
                assert self.fdfs_store is not None
                if fdfs_get:
                    run.verified, problem = verify_copies(run.urls, extra["dests"], paths, self.file_sha256)
                else:
                    run.verified, problem = verify_fdfs(self.fdfs_store, run.urls, paths, self.file_sha256)
            else:
                run.verified, problem = verify(run.urls, size, len(paths), tus=not community, ca=ca)
            if not run.verified:
                run.error = problem
        return run

    def _server_cpu(self) -> Optional[float]:
        """User + system CPU seconds of the server process so far (None: no such process, or no psutil)."""
        if self.server_pid is None:
            return None
        try:
            import psutil

            times = psutil.Process(self.server_pid).cpu_times()
        except Exception:  # psutil missing, or the process gone: the figure is only informative
            return None
        return float(times.user + times.system)

    def file_md5(self, path: str) -> str:
        """The MD5 of a test file (its bytes do not change between UPYUN runs), computed once."""
        if path not in self._md5s:
            import hashlib

            h = hashlib.md5()
            with open(path, "rb", buffering=0) as handle:
                for block in iter(lambda: handle.read(MiB), b""):
                    h.update(block)
            self._md5s[path] = h.hexdigest()
        return self._md5s[path]

    def file_sha256(self, path: str) -> str:
        """The SHA-256 of a test file (FastDFS runs: compared with what the server stored), computed once."""
        if path not in self._sha256s:
            self._sha256s[path] = sha256_of(path)
        return self._sha256s[path]

    def _run_python(self, run: Run, spec: ClientSpec, url: str, paths: List[str],
                    extra: Optional[Dict[str, Any]] = None, ca: Optional[str] = None) -> None:
        result_path = self.tmp / "result.json"
        log_path = self.tmp / "worker.log"
        with contextlib.suppress(FileNotFoundError):
            result_path.unlink()
        job = dict(spec.options, client=spec.kind, url=url, files=paths, result=str(result_path),
                   token=COMMUNITY_TOKEN, **(extra or {}))
        env = dict(self.env, REQUESTS_CA_BUNDLE=ca) if ca else self.env
        with open(log_path, "wb") as log:
            proc = spawn([self.python, str(WORKER), json.dumps(job)], timeout=RUN_TIMEOUT,
                         stderr=log, env=env, scratch=self.tmp)
        out: Dict[str, Any] = {}
        if result_path.exists():
            out = json.loads(result_path.read_text())
        run.peak_rss_mib = proc.maxrss_kib / 1024
        run.cpu_seconds = proc.cpu
        run.label = out.get("label", spec.kind)
        if out.get("rss_after_import_kib"):
            run.rss_after_import_mib = out["rss_after_import_kib"] / 1024
        if proc.returncode != 0 or not out.get("ok"):
            tail = log_path.read_text(errors="replace")[-600:] if log_path.exists() else ""
            run.error = out.get("error") or f"exit status {proc.returncode} {tail}".strip()
            return
        run.ok = True
        run.elapsed = out["elapsed"]
        run.upload_cpu_seconds = out.get("cpu_upload")
        run.bytes = out["bytes"]
        run.urls = out["urls"]

    def _run_curl(self, run: Run, url: str, paths: List[str], ca: Optional[str] = None) -> None:
        if len(paths) != 1:
            raise ValueError("curl runs take one file")
        path = paths[0]
        size = os.path.getsize(path)
        head_path = self.tmp / "curl-headers.txt"
        status_path = self.tmp / "curl-status.txt"
        tus = ["-H", "Tus-Resumable: 1.0.0"] + (["--cacert", ca] if ca else [])
        name = base64.b64encode(os.path.basename(path).encode()).decode()
        # The time is curl's own (%{time_total} of both requests): the Python
        # clients' timing leaves out their interpreter's start-up too.
        with open(status_path, "wb") as out:
            create = spawn(
                ["curl", "-sS", "-X", "POST", *tus, "-H", f"Upload-Length: {size}",
                 "-H", f"Upload-Metadata: filename {name}", "-D", str(head_path), "-o", "/dev/null",
                 "-w", "%{time_total}", url],
                timeout=RUN_TIMEOUT, stdout=out, scratch=self.tmp,
            )
        create_time = _float(status_path.read_text())
        location = None
        if head_path.exists():
            for line in head_path.read_text("latin-1").splitlines():
                if line.lower().startswith("location:"):
                    location = urllib.parse.urljoin(url, line.split(":", 1)[1].strip())
        if create.returncode != 0 or location is None:
            run.error = f"curl POST failed (exit {create.returncode})"
            return
        # -T streams the file (--data-binary @file would read it into memory
        # first); "Expect:" drops the 100-continue round trip.
        with open(status_path, "wb") as out:
            patch = spawn(
                ["curl", "-sS", "-X", "PATCH", *tus, "-H", "Upload-Offset: 0", "-H", "Expect:",
                 "-H", "Content-Type: application/offset+octet-stream", "-T", path,
                 "-o", "/dev/null", "-w", "%{http_code} %{time_total}", location],
                timeout=RUN_TIMEOUT, stdout=out, scratch=self.tmp,
            )
        code, _, patch_time = status_path.read_text().strip().partition(" ")
        elapsed = (create_time or create.elapsed) + (_float(patch_time) or patch.elapsed)
        run.label = curl_version()
        run.peak_rss_mib = max(create.maxrss_kib, patch.maxrss_kib) / 1024
        run.cpu_seconds = create.cpu + patch.cpu
        run.upload_cpu_seconds = run.cpu_seconds  # curl starts in milliseconds: its processes are its upload
        if patch.returncode != 0 or code not in ("200", "204"):
            run.error = f"curl PATCH failed (exit {patch.returncode}, HTTP {code})"
            return
        run.ok = True
        run.elapsed = elapsed
        run.bytes = size
        run.urls = [location]

    # -- scenarios ---------------------------------------------------------------

    def run_scenario(self, scenario: Scenario) -> None:
        if self.out_of_time():
            self._note(f"time budget of {TOTAL_BUDGET:.0f} s used up: {scenario.key} skipped")
            return
        print(f"\n== {scenario.key}. {scenario.title}", flush=True)
        if scenario.note:
            print(f"   ({scenario.note})", flush=True)
        load_before = os.getloadavg()[0]
        if scenario.server == "none":
            self.run_md5(scenario)
            self.load[scenario.key] = (load_before, os.getloadavg()[0])
            return
        with self.server(scenario) as (url, cleanup):
            self.warm_up(scenario, url, cleanup)
            for size in scenario.sizes:
                paths = self.dataset(size, scenario.count)
                for rnd in range(scenario.rounds):
                    # Rotate the order each round so no client always goes first.
                    shift = rnd % len(scenario.clients)
                    for spec in scenario.clients[shift:] + scenario.clients[:shift]:
                        if self.out_of_time():
                            self._note(f"time budget of {TOTAL_BUDGET:.0f} s used up: "
                                       f"{scenario.key} stopped in round {rnd + 1}")
                            return
                        run = self.run_client(scenario, spec, url, paths, rnd)
                        cleanup()
                        self.runs.append(run)
                        print("   " + describe(run), flush=True)
                if scenario.key in ("c", "g", "j") or size >= 2 * GiB:
                    self.drop_dataset(size, scenario.count)  # not reused by a later scenario
        self.load[scenario.key] = (load_before, os.getloadavg()[0])

    def run_md5(self, scenario: Scenario) -> None:
        """Scenario h, in this process: hashlib vs file_digest, and client.md5 without / with its cache."""
        import hashlib

        import upclient
        from upclient.digest import file_digest
        from upclient.source import open_source

        size = scenario.sizes[0]
        path = self.dataset(size, 1)[0]
        with open(path, "rb") as handle:  # page cache warm for every reader
            while handle.read(8 * MiB):
                pass
        for rnd in range(scenario.rounds):
            if self.out_of_time():
                self._note(f"time budget of {TOTAL_BUDGET:.0f} s used up: h stopped in round {rnd + 1}")
                return
            timings: List[Tuple[ClientSpec, str, float, str]] = []
            started = time.perf_counter()
            h = hashlib.md5()
            with open(path, "rb", buffering=0) as handle:
                for block in iter(lambda: handle.read(MiB), b""):
                    h.update(block)
            timings.append((MD5_HASHLIB, h.hexdigest(), time.perf_counter() - started, "hashlib"))
            started = time.perf_counter()
            with open_source(path) as src:
                digest = file_digest(src, "md5")
            timings.append((MD5_UPCLIENT, digest, time.perf_counter() - started, f"upclient {upclient.__version__}"))
            store_dir = self.tmp / f"md5-store-{rnd}"
            # no request is made: md5() works on the file and the store only
            base = "community+http://127.0.0.1:9"
            for spec in (MD5_FIRST, MD5_CACHED):
                cl = upclient.Client(base, token=COMMUNITY_TOKEN, store=upclient.FileStore(store_dir))
                try:
                    started = time.perf_counter()
                    digest = cl.md5(path)
                    timings.append((spec, digest, time.perf_counter() - started, f"upclient {upclient.__version__}"))
                finally:
                    cl.close()
            shutil.rmtree(store_dir, ignore_errors=True)
            expected = timings[0][1]
            for spec, digest, elapsed, label in timings:
                run = Run("h", spec.id, spec.kind, rnd, size, 1, bytes=size, elapsed=elapsed, label=label, ok=True,
                          verified=digest == expected, load_average=os.getloadavg()[0])
                if not run.verified:
                    run.error = f"digest {digest} != hashlib's {expected}"
                self.runs.append(run)
                print("   " + describe(run), flush=True)

    def warm_up(self, scenario: Scenario, url: str, cleanup: Callable[[], None]) -> None:
        """One unrecorded upload first, so no measured client pays a cold server (Node's JIT)."""
        if scenario.count > 1:
            paths = self.dataset(scenario.sizes[0], scenario.count)[:50]
        else:
            paths = self.dataset(min(scenario.sizes[0], (4 if scenario.shaped else 64) * MiB), 1)
        run = self.run_client(scenario, scenario.reference, url, paths, -1)
        cleanup()
        if not run.ok or not run.verified:
            self._note(f"warm-up upload for {scenario.key} failed: {run.error[:300]}")

    def _note(self, text: str) -> None:
        print("   ! " + text, flush=True)
        self.notes.append(text)


def describe(run: Run) -> str:
    what = f"{run.scenario}/{run.client:<24} r{run.round + 1} {size_label(run.size):>8}"
    if run.files > 1:
        what += f" x{run.files}"
    if not run.ok:
        return f"{what}  FAILED: {run.error[:300]}"
    ver = "" if run.verified else f"  UNVERIFIED: {run.error}"
    server = f"  server cpu {run.server_cpu_seconds:5.2f} s" if run.server_cpu_seconds is not None else ""
    if run.peak_rss_mib is None:  # h: measured in this process
        return f"{what}  {run.mbps:8.1f} MB/s  {run.elapsed:7.3f} s{ver}"
    return (f"{what}  {run.mbps:8.1f} MB/s  {run.elapsed:7.2f} s  peak RSS {run.peak_rss_mib:6.1f} MiB"
            f"  cpu {run.cpu_seconds:5.2f} s{server}{ver}")



def default_tmpdir() -> Optional[str]:
    """/dev/shm when it has room: files and server stores in RAM keep the disk out of the figures."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if st.f_bavail * st.f_frsize >= 8 * GiB else None


def write_file(path: str, size: int) -> None:
    """Random-looking bytes, fast: one 16 MiB random block, rotated differently each time."""
    block = memoryview(os.urandom(16 * MiB))
    with open(path, "wb") as handle:
        written, n = 0, 0
        while written < size:
            shift = (n * 7919 * 4099) % len(block)
            for piece in (block[shift:], block[:shift]):
                piece = piece[: size - written]
                handle.write(piece)
                written += len(piece)
            n += 1


def freshen(path: str) -> None:
    """New random bytes at the start of ``path``: a new MD5, so the community emulator cannot dedup it."""
    with open(path, "r+b") as handle:
        handle.write(os.urandom(min(FRESHEN, os.path.getsize(path))))


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _float(text: str) -> Optional[float]:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _address(line: str, prefix: str, keep: str) -> Optional[str]:
    """``community+http://127.0.0.1:PORT`` -> ``http://127.0.0.1:PORT`` (the emulators' first line;
    ``prefix`` cut, ``keep`` must start what is left); the bare form of older emulators passes too."""
    rest = line[len(prefix):] if line.startswith(prefix) else line
    if keep:
        return rest if rest.startswith(keep) else None
    return rest if re.fullmatch(r"127\.0\.0\.1:\d+", rest) else None


def _upyun_endpoint(lines: Iterator[str]) -> Optional[str]:
    """The UPYUN emulator's ``127.0.0.1:PORT``: its own line (older emulators), or the
    ``--endpoint`` of the ``flags:`` line after ``upyun://OP@SVC``."""
    for line in itertools.islice(lines, 3):
        if re.fullmatch(r"127\.0\.0\.1:\d+", line):
            return line
        found = re.search(r"--endpoint (127\.0\.0\.1:\d+)", line)
        if found:
            return found.group(1)
        if not line:
            return None
    return None
