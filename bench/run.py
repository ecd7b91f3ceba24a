"""``make bench``: upclient against its peers, same files, same servers, one run.

Scenarios (``--only`` takes their letters):

a. one 1 GiB file over loopback to the discarding sink (``bench/sink.py``,
   which offers concatenation, so parallel clients can use it);
b. the same file to the reference server, @tus/server (``TusNodeServer``);
c. a 256 MiB file through ``ShapingProxy`` (40 ms round trip, 20 MB/s per
   TCP connection) to the ``resumable-upload`` server, which offers
   concatenation: serial clients are capped by one connection, parallel ones
   are not;
d. 1,000 files of 16 KiB to the sink: ``put_many`` against a loop of the peers;
e. upclient's peak RSS for 512 MiB, 1 GiB and 2 GiB (part_size 8 MiB and the
   16 MiB default, concurrency 4, to the sink): it must not grow with the file;
f. a 1 GiB file to the community emulator (``python -m upclient.testing
   community``, its own process) over loopback: upclient's community backend
   (concurrency 4; 8 MiB parts, and its 16 MiB default for information) against
   the official async SDK, community-uploader 1.0.1 (its defaults: concurrency
   3; 8 MiB parts, asked for explicitly, which is also the emulator's default);
g. a 256 MiB file to the same emulator through ``ShapingProxy`` (as in c; the
   emulator's ``--public-url`` is the proxy, so the part PUTs go through it
   too): upclient at concurrency 1, 4 and 8 (8 MiB parts) against the SDK;
h. MD5 of the 1 GiB file, in this process, page cache warm: plain hashlib
   (1 MiB blocks) against ``upclient.digest.file_digest``; and the resume
   start-up cost, ``client.md5(path)`` with a fresh ``FileStore`` (reads the
   file) against the same call from a new client on that store (cache hit);
i. a 1 GiB file to the UPYUN emulator (``python -m upclient.testing upyun``,
   its own process) over loopback: upclient's UPYUN backend with its
   defaults (16 MiB parts, concurrency 4, checksum on: a Content-MD5 on every
   part and the whole file's MD5 at complete; a ``checksum=False`` row for
   information) against the official SDK, upyun 2.5.5, two ways: its
   resumable upload with its defaults (``up.put(key, f, need_resume=True)``:
   1 MiB parts, one after the other, no checksum), and its multi uploader
   driven the way its README suggests for parallel parts
   (``init_multi_uploader(key, part_size=16 MiB, file_size=size)``, every
   part read with ``os.pread`` in a task of a ``ThreadPoolExecutor(4)`` and
   sent with ``m.upload(i, data)``, then ``m.complete()``; no checksum);
j. a 256 MiB file to the same emulator through ``ShapingProxy`` (as in c:
   every client is given the proxy's ``127.0.0.1:port`` as its endpoint):
   upclient at concurrency 1, 4 and 8 (its defaults otherwise) against the
   SDK's resumable upload and its multi uploader (4 threads).  256 MiB, not
   1 GiB: the SDK's serial 1 MiB parts pay a round trip each, about 11 MB/s
   through this link, so 1 GiB would take it over a minute and a half a run;
k. a 1 GiB file uploaded to the FastDFS emulator (``python -m upclient.testing
   fdfs --ip-size 45``, its own process) over loopback: upclient's FastDFS
   backend, ``upclient.Client("fdfs://127.0.0.1:PORT", store=None)``, with
   its default ``client.put(path)`` (resumable above ``part_size``: an
   appender file, appends of 16 MiB, then regenerated into a normal file),
   with ``resumable=False`` (the whole file in one upload request, streamed)
   and with ``resumable=True`` (the appender file kept), against the PyPI
   ``fastdfs-client`` 1.3.0, ``FastdfsClient(trackers).upload_by_filename(path)``
   (one upload request, the file sent in 1 KiB reads);
l. the same file downloaded from that emulator: ``client.get(id, path)``
   against ``download_to_file(path, id)``, both of the same stored copy (which
   the harness uploads once with upclient, unmeasured, and checks);
m. 1,000 files of 10 KiB to that emulator: one upclient client calling
   ``client.put`` in a loop, and ``client.put_many`` (its default
   ``max_files``, 4), against one ``FastdfsClient`` calling
   ``upload_by_filename`` in a loop (it opens a new storage connection per
   file; upclient pools them).

In i, every client's time includes the emulator's ``complete``, which joins
the part files into the stored file and hashes it (about 3 to 6 s for 1 GiB
on 2 cores, the same work whoever uploaded): the ratios in i are therefore
closer to 1 than the clients' own speeds are.

The community emulator deduplicates by MD5, so before every community run the
harness overwrites the first 64 KiB of the file with new random bytes (a new
MD5, so every run sends every byte; a run answered as deduplicated counts as
failed), and after it deletes the stored objects.

UPYUN runs (i, j) upload under a fresh key each time and are checked on the
server: a signed HEAD of ``/<service>/<key>`` (``x-upyun-file-size`` must
equal the size, and its ``Content-MD5`` the file's MD5) and the stored file
under the emulator's ``--dir``; anything short of the whole file fails the
run.  After each run every stored file is deleted (signed DELETE) and the
parts of any unfinished upload are removed.  The SDK's resumable upload
uses ``collections.Callable``, gone since Python 3.10: the worker restores
that alias before using it (see ``bench/worker.py``).

The clients: upclient (its defaults: ``part_size`` 16 MiB, ``concurrency`` 4;
no store, no checksums; a row with 8 MiB parts for information); tuspy 1.1.0
(``TusClient(url).uploader(path, chunk_size=8 MiB, metadata={"filename": ...}).upload()``);
the resumable-upload 0.3.0 client
(``TusClient(url, chunk_size=8 MiB, checksum=False).upload_file(path)``, and
with ``parallel_uploads=4``); curl (a creating POST, then one streamed
``PATCH -T file`` of the whole file: ``--data-binary @file`` would load the
file into memory, and curl refuses that for 1 GiB).

How it measures: every client run is its own process (``bench/worker.py``;
curl directly) started under GNU time, so its peak RSS is that process's own
(``/usr/bin/time``, Debian package ``time``).  The time is the upload's
alone: a Python client is timed inside its process from the client's
construction to its close, after all imports; curl by its own
``%{time_total}`` of both requests.  Community uploads are checked with HEAD
on the file's URL (Content-Length must equal the size).  Each scenario starts with one
unrecorded warm-up upload, then runs the clients in rounds, in a rotating
order, and reports the median, because other work on the machine moves
single figures (the 1-minute load average is recorded per run).  Test files
and server stores live in /dev/shm when it has room, so the disk is not
measured; every upload is checked afterwards with HEAD (Upload-Offset must
equal the size).

Prints a table (MB/s = 10^6 bytes per second), checks the targets, writes
``bench/results/latest.json`` and ``bench/bench.png``.  ``--quick`` uses
small sizes and one round, a smoke run of a minute or two (i, k, l: 64 MiB,
j: 48 MiB, so upclient still sends several parts; d, m: 100 files); a full
run takes about 15 minutes on 2 cores (i and j about 4 of them, k to m 2 to
4, more when the SDK's download times out).  ``--profile`` runs every
Python client under cProfile (all its threads; slower, so only for finding
where the time goes) and keeps the stats in ``bench/results/profiles/``.
Every server, proxy, client process and temporary file is removed on the
way out, also after a failure, Ctrl-C or SIGTERM.

FastDFS (k, l, m): the emulator runs with 45-byte IP fields (a 6.15+ tracker
with ``response_ip_addr_size = IPv6``) for every client, upclient included,
as fastdfs-client 1.3.0 hard-codes them and fails on every upload against the
default 15.  After each upload run every returned id must name a file under
the emulator's ``--dir`` (mapped the emulator's own way, by an ``FdfsServer``
on that directory that is never started) whose SHA-256 is the source's, and
the emulator must hold no other file; after each download run every
destination must have the source's SHA-256.  Then the stored files (k, m) or
the downloaded copies (l) are deleted.  A run that fails (the SDK's download
sometimes waits out its 30 s socket timeout: its receive loop counts every
short ``recv`` as a full 1 KiB) is reported as failed and left out of the
medians.

Run: ``python bench/run.py`` or ``python -m bench`` from the repository root.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime
import http.client
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple, Union

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.sink import SinkProcess  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
PART = 8 * MiB
WORKER = HERE / "worker.py"
RESULTS = HERE / "results" / "latest.json"
PLOT = HERE / "bench.png"
#: No single client run may take longer than this (seconds).
RUN_TIMEOUT = 300.0
#: The whole benchmark stops starting new runs after this (seconds).
TOTAL_BUDGET = 22 * 60.0
#: ShapingProxy settings for scenarios c, g and j: 20 ms each way, 20 MB/s per connection.
WAN_DELAY = 0.020
WAN_RATE = 20e6
#: The community emulator's bearer token.
COMMUNITY_TOKEN = "bench-t0k3n"
#: Bytes overwritten with fresh random data before every community run (a new MD5: no dedup).
FRESHEN = 64 * 1024
#: The UPYUN emulator's service, operator and password (i, j).
UPYUN_SERVICE = "bench"
UPYUN_OPERATOR = "bench-op"
UPYUN_PASSWORD = "bench-pw"
PROFILES = HERE / "results" / "profiles"


# -- clients ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClientSpec:
    """One client configuration: ``kind`` picks the runner, ``params`` go to it."""

    id: str
    kind: str  # upclient, tuspy, resumable-upload, curl, upclient-community, ..., upyun-multi (worker.CLIENTS)
    params: Tuple[Tuple[str, Any], ...] = ()

    @property
    def options(self) -> Dict[str, Any]:
        return dict(self.params)


def client(id: str, kind: str, **params: Any) -> ClientSpec:
    return ClientSpec(id, kind, tuple(sorted(params.items())))


# upclient with its defaults (part_size 16 MiB), and some variations for information
UPCLIENT = client("upclient", "upclient", concurrency=4)
UPCLIENT_SERIAL = client("upclient concat=False", "upclient", concurrency=4, concat=False)
UPCLIENT_8 = client("upclient part=8MiB", "upclient", part_size=PART, concurrency=4)
UPCLIENT_C1 = client("upclient c=1", "upclient", concurrency=1)
UPCLIENT_C4 = client("upclient c=4", "upclient", concurrency=4)
UPCLIENT_MANY = client("upclient put_many", "upclient", concurrency=4, max_files=8)
TUSPY = client("tuspy", "tuspy", chunk_size=PART)
TUSPY_LOOP = client("tuspy loop", "tuspy", chunk_size=PART)
RU = client("resumable-upload", "resumable-upload", chunk_size=PART, parallel=1)
RU_P4 = client("resumable-upload p=4", "resumable-upload", chunk_size=PART, parallel=4)
RU_LOOP = client("resumable-upload loop", "resumable-upload", chunk_size=PART, parallel=1)
CURL = client("curl", "curl")
# the community backend (f, g): both clients ask for 8 MiB parts; upclient's default is 16 MiB
COMM_UP = client("upclient", "upclient-community", concurrency=4)  # its defaults: 16 MiB parts
COMM_UP_8 = client("upclient part=8MiB", "upclient-community", part_size=PART, concurrency=4)
COMM_UP_C1 = client("upclient c=1", "upclient-community", part_size=PART, concurrency=1)
COMM_UP_C4 = client("upclient c=4", "upclient-community", part_size=PART, concurrency=4)
COMM_UP_C8 = client("upclient c=8", "upclient-community", part_size=PART, concurrency=8)
COMM_SDK = client("community-uploader", "community-sdk", part_size=PART)
# the UPYUN backend (i, j): upclient with its defaults (16 MiB parts, concurrency 4, Content-MD5 per part)
UPYUN_UP = client("upclient", "upclient-upyun")
UPYUN_UP_NOSUM = client("upclient checksum=False", "upclient-upyun", checksum=False)
UPYUN_UP_C1 = client("upclient c=1", "upclient-upyun", concurrency=1)
UPYUN_UP_C4 = client("upclient c=4", "upclient-upyun", concurrency=4)
UPYUN_UP_C8 = client("upclient c=8", "upclient-upyun", concurrency=8)
UPYUN_RESUME = client("upyun resume", "upyun-resume")  # the SDK's defaults: 1 MiB parts, serial
UPYUN_MULTI = client("upyun multi x4", "upyun-multi", part_size=16 * MiB, threads=4)
# the FastDFS backend (k, l, m) against the PyPI fastdfs-client 1.3.0
FDFS_PUT = client("upclient put", "upclient-fdfs", mode="put")  # its default above part_size: appender + regenerate
FDFS_PUT_ONE = client("upclient one request", "upclient-fdfs", mode="put", resumable=False)  # one streamed request
FDFS_PUT_RESUME = client("upclient resumable", "upclient-fdfs", mode="put", resumable=True)  # appender, kept
FDFS_SDK_PUT = client("fastdfs-client", "fdfs-sdk", mode="put")  # upload_by_filename
FDFS_GET = client("upclient get", "upclient-fdfs", mode="get")
FDFS_SDK_GET = client("fastdfs-client", "fdfs-sdk", mode="get")  # download_to_file
FDFS_PUT_LOOP = client("upclient put loop", "upclient-fdfs", mode="put")
FDFS_PUT_MANY = client("upclient put_many", "upclient-fdfs", mode="put", many=True)  # max_files: its default, 4
FDFS_SDK_LOOP = client("fastdfs-client loop", "fdfs-sdk", mode="put")
# h: measured in the harness itself (ids of its rows)
MD5_HASHLIB = client("hashlib md5 1MiB blocks", "md5")
MD5_UPCLIENT = client("upclient file_digest", "md5")
MD5_FIRST = client("client.md5 first (store)", "md5")
MD5_CACHED = client("client.md5 again (hit)", "md5")


# -- scenarios -------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    key: str
    title: str
    server: str  # sink, tus-node, resumable-upload, community, upyun, none (h)
    shaped: bool
    sizes: List[int]  # one file of each size, or
    count: int  # ... this many files of sizes[0] (count > 1)
    clients: List[ClientSpec]
    rounds: int
    reference: ClientSpec  # the upclient configuration that ratios use
    note: str = ""
    download: bool = False  # l: the clients download a file the harness stored first


def scenarios(quick: bool) -> List[Scenario]:
    big = 64 * MiB if quick else GiB
    wan = 16 * MiB if quick else 256 * MiB
    # j: more than one 16 MiB part even with --quick, so upclient's multipart path runs
    wan_upyun = 48 * MiB if quick else 256 * MiB
    rounds = 1 if quick else 5  # loopback figures move with other work on the machine
    small = 100 if quick else 1000  # d and m
    return [
        Scenario(
            "a", f"{_size(big)} file, loopback, discarding sink", "sink", False, [big], 1,
            [UPCLIENT, UPCLIENT_SERIAL, UPCLIENT_8, TUSPY, RU, RU_P4, CURL], rounds, UPCLIENT,
            note="sink offers concatenation: upclient (concurrency 4) and resumable-upload p=4 "
            "send parallel partial uploads; 'part=8MiB' is for information (more requests)",
        ),
        Scenario(
            "b", f"{_size(big)} file, loopback, @tus/server 2.4.5", "tus-node", False, [big], 1,
            [UPCLIENT, TUSPY, RU, CURL], rounds, UPCLIENT,
            note="no concatenation on @tus/server: every client sends PATCH requests in order "
            "(upclient: the whole file in one streamed PATCH, like curl)",
        ),
        Scenario(
            "c", f"{_size(wan)} file, 40 ms RTT + 20 MB/s per connection, resumable-upload server",
            "resumable-upload", True, [wan], 1,
            [UPCLIENT_C1, UPCLIENT_C4, TUSPY, RU, RU_P4, CURL], 1, UPCLIENT_C4,
            note=f"{_size(wan)}, not 1 GiB: a serial client needs ~{wan / WAN_RATE:.0f} s per run",
        ),
        Scenario(
            "d", f"{small} files of 16 KiB, loopback, discarding sink", "sink", False,
            [16 * 1024], small,
            [UPCLIENT_MANY, TUSPY_LOOP, RU_LOOP], 1 if quick else 3, UPCLIENT_MANY,
            note="put_many with max_files=8 against one client object uploading in a loop",
        ),
        Scenario(
            "e", "upclient peak RSS by file size, loopback, discarding sink", "sink", False,
            [big // 2, big, 2 * big], 1, [UPCLIENT_8, UPCLIENT], 1, UPCLIENT_8,
            note="part_size 8 MiB (and the 16 MiB default), concurrency 4; memory must not grow with the file",
        ),
        Scenario(
            "f", f"{_size(big)} file, loopback, community emulator", "community", False, [big], 1,
            [COMM_UP, COMM_UP_8, COMM_SDK], 1 if quick else 3, COMM_UP,
            note="upclient with its defaults (16 MiB parts, concurrency 4), the SDK with its own (the "
            "emulator's 8 MiB parts, concurrency 3); 'upclient part=8MiB' is the same part size as the SDK",
        ),
        Scenario(
            "g", f"{_size(wan)} file, 40 ms RTT + 20 MB/s per connection, community emulator", "community",
            True, [wan], 1, [COMM_UP_C1, COMM_UP_C4, COMM_UP_C8, COMM_SDK], 1, COMM_UP_C4,
            note=f"{_size(wan)}, not 1 GiB; part PUTs go through the proxy too (--public-url); "
            "8 MiB parts; the SDK at its default concurrency 3",
        ),
        Scenario(
            "h", f"MD5 of a {_size(big)} file (page cache warm) and client.md5 resume start-up", "none",
            False, [big], 1, [MD5_HASHLIB, MD5_UPCLIENT, MD5_FIRST, MD5_CACHED], 1 if quick else 3,
            MD5_UPCLIENT,
            note="in this process; 'again (hit)' is a new client on the FileStore the first call filled",
        ),
        Scenario(
            "i", f"{_size(big)} file, loopback, UPYUN emulator", "upyun", False, [big], 1,
            [UPYUN_UP, UPYUN_UP_NOSUM, UPYUN_RESUME, UPYUN_MULTI], rounds, UPYUN_UP,
            note="upclient with its defaults (16 MiB parts, concurrency 4, Content-MD5 per part) and without "
            "checksums, as the SDK sends them; "
            "the SDK's resume upload with its own (1 MiB parts, serial, no checksum) and its multi uploader "
            "(16 MiB parts from a ThreadPoolExecutor(4), no checksum)",
        ),
        Scenario(
            "j", f"{_size(wan_upyun)} file, 40 ms RTT + 20 MB/s per connection, UPYUN emulator", "upyun",
            True, [wan_upyun], 1,
            [UPYUN_UP_C1, UPYUN_UP_C4, UPYUN_UP_C8, UPYUN_RESUME, UPYUN_MULTI], 1, UPYUN_UP_C4,
            note=f"{_size(wan_upyun)}, not 1 GiB: the SDK's serial 1 MiB parts pay a round trip each "
            f"(~{wan_upyun / 11e6:.0f} s a run at ~11 MB/s); upclient 16 MiB parts, checksum on",
        ),
        Scenario(
            "k", f"{_size(big)} file upload, loopback, FastDFS emulator (45-byte IPs)", "fdfs", False, [big], 1,
            [FDFS_PUT, FDFS_PUT_ONE, FDFS_PUT_RESUME, FDFS_SDK_PUT], rounds, FDFS_PUT,
            note="upclient's default put (resumable: an appender file grown by 16 MiB appends, then "
            "regenerated into a normal file), resumable=False (one upload request, streamed) and "
            "resumable=True (the appender file kept) vs fastdfs-client 1.3.0 upload_by_filename; every "
            "stored file is checked by SHA-256",
        ),
        Scenario(
            "l", f"{_size(big)} file download, loopback, FastDFS emulator (45-byte IPs)", "fdfs", False, [big], 1,
            [FDFS_GET, FDFS_SDK_GET], rounds, FDFS_GET,
            note="client.get(id, path) vs fastdfs-client download_to_file(path, id), the same stored file "
            "(uploaded once by the harness); every downloaded file is checked by SHA-256",
            download=True,
        ),
        Scenario(
            "m", f"{small} files of 10 KiB, loopback, FastDFS emulator (45-byte IPs)", "fdfs", False,
            [10 * 1024], small, [FDFS_PUT_LOOP, FDFS_PUT_MANY, FDFS_SDK_LOOP], 1 if quick else 3, FDFS_PUT_LOOP,
            note="one client object each: client.put in a loop, client.put_many (max_files 4, its default), "
            "fastdfs-client upload_by_filename in a loop",
        ),
    ]


# -- measuring one process -------------------------------------------------------


@dataclasses.dataclass
class Proc:
    returncode: int
    elapsed: float
    maxrss_kib: int
    cpu: float  # user + system seconds


def _gnu_time() -> Optional[str]:
    """``/usr/bin/time`` if it is GNU time (it reports the child's own peak RSS)."""
    path = shutil.which("time", path="/usr/bin:/bin:/usr/local/bin")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in (out.stdout + out.stderr) else None


GNU_TIME = _gnu_time()


def spawn(cmd: Sequence[str], *, timeout: float, stdout: Any = subprocess.DEVNULL,
          stderr: Any = None, env: Optional[Dict[str, str]] = None, scratch: Path) -> Proc:
    """Run ``cmd`` to its end: wall time, peak RSS and CPU time of that process alone.

    The peak RSS comes from GNU time (``%M``, the child's ``ru_maxrss``).  Not
    from our own ``wait4``: a child's ``ru_maxrss`` starts from the RSS of the
    process that forked it, and this harness is bigger than curl.  Without
    GNU time, ``wait4`` is used and the figures are floored at our own RSS
    (said in the report).  The child runs in its own process group, killed
    whole on timeout or Ctrl-C.
    """
    stats = scratch / "time.txt"
    argv = list(cmd)
    if GNU_TIME:
        with contextlib.suppress(FileNotFoundError):
            stats.unlink()
        argv = [GNU_TIME, "-q", "-f", "%M %U %S", "-o", str(stats), *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    timer = threading.Timer(timeout, _kill_group, (proc,))
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C: the child must not outlive us
        _kill_group(proc)
        with contextlib.suppress(Exception):
            proc.wait(5)
        raise
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    if GNU_TIME:
        try:
            fields = stats.read_text().split()[-3:]
            maxrss, cpu = int(fields[0]), float(fields[1]) + float(fields[2])
        except (OSError, ValueError, IndexError):
            maxrss, cpu = 0, cpu
    return Proc(proc.returncode, elapsed, maxrss, cpu)


def _kill_group(proc: "subprocess.Popen[Any]") -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


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
    cpu_seconds: Optional[float] = None
    label: str = ""
    ok: bool = False
    verified: Optional[bool] = None
    error: str = ""
    load_average: Optional[float] = None  # 1-minute load average when the run started
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
        self.load: Dict[str, Tuple[float, float]] = {}
        #: The running UPYUN emulator: its own host:port (not the proxy's) and its --dir.
        self.upyun_server: Optional[Tuple[str, Path]] = None
        self._md5s: Dict[str, str] = {}
        #: The running FastDFS emulator's --dir, and the id of the copy of each test file stored
        #: there for downloads (l): source path -> file id.
        self.fdfs_store: Optional[Path] = None
        self.fdfs_seeds: Dict[str, str] = {}
        self._sha256s: Dict[str, str] = {}

    # -- files -------------------------------------------------------------------

    def dataset(self, size: int, count: int) -> List[str]:
        """``count`` files of ``size`` bytes of random-looking data (made once, kept in cache)."""
        key = (size, count)
        if key not in self.files:
            folder = self.tmp / f"data-{size}x{count}"
            folder.mkdir()
            if count == 1:
                paths = [str(folder / f"file-{_size(size).replace(' ', '')}.bin")]
                _write_file(paths[0], size)
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
                sink = stack.enter_context(SinkProcess(concat=True, python=self.python))
                url, store = sink.url, None
            elif scenario.server == "tus-node":
                from upclient.testing import TusNodeServer

                store = self.tmp / "tus-node"
                node = stack.enter_context(TusNodeServer(store))
                url = node.url
            elif scenario.server == "community":
                store = self.tmp / "community"
                public = f"http://127.0.0.1:{_free_port()}" if scenario.shaped else None
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
                    port = urllib.parse.urlsplit(public).port if scenario.server == "community" and public else 0
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
        return self.emulator("community", cmd, lambda line: line.startswith("http://"))

    def upyun(self, store: Path) -> ContextManager[str]:
        """``python -m upclient.testing upyun`` in its own process; yields its ``127.0.0.1:PORT``."""
        cmd = ["--dir", str(store), "--service", UPYUN_SERVICE, "--operator", UPYUN_OPERATOR,
               "--password", UPYUN_PASSWORD]
        return self.emulator("upyun", cmd, lambda line: bool(re.fullmatch(r"127\.0\.0\.1:\d+", line)))

    def fdfs(self, store: Path) -> ContextManager[str]:
        """``python -m upclient.testing fdfs --ip-size 45`` in its own process; yields its tracker's
        ``127.0.0.1:PORT``.  45-byte IP fields (a 6.15+ tracker with ``response_ip_addr_size =
        IPv6``): fastdfs-client 1.3.0 works with nothing else, and every client gets the same server."""
        cmd = ["--dir", str(store), "--ip-size", "45"]
        return self.emulator("fdfs", cmd, lambda line: bool(re.fullmatch(r"127\.0\.0\.1:\d+", line)))

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
    def emulator(self, name: str, args: List[str], started: Callable[[str], bool]) -> Iterator[str]:
        """``python -m upclient.testing NAME`` on a free loopback port, its own process group,
        stopped (SIGTERM, then SIGKILL) on the way out; yields the first line it prints."""
        cmd = [self.python, "-m", "upclient.testing", name, "--host", "127.0.0.1", "--port", "0", *args]
        log_path = self.tmp / f"{name}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
                                start_new_session=True)
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline().decode().strip() if ready else ""
            if not started(line):
                log.flush()
                tail = log_path.read_text(errors="replace")[-600:]
                raise RuntimeError(f"{name} emulator did not start (exit {proc.poll()}): {line!r} {tail}")
            yield line
        finally:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
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
        if self.args.profile and rnd >= 0:
            PROFILES.mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"[^A-Za-z0-9=]+", "-", spec.id).strip("-")
            extra["profile"] = str(PROFILES / f"{scenario.key}-{slug}-r{rnd + 1}.prof")
        try:
            if community:
                for path in paths:
                    _freshen(path)
            if fdfs_get:  # fresh destinations under one folder, removed after the run (cleanup)
                folder = self.tmp / "fdfs-get"
                folder.mkdir(exist_ok=True)
                extra["ids"] = [self.fdfs_seed(url, path) for path in paths]
                extra["dests"] = [str(folder / f"copy-{i}.bin") for i in range(len(paths))]
            if spec.kind == "curl":
                self._run_curl(run, url, paths)
            else:
                self._run_python(run, spec, url, paths, extra)
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
                run.verified, problem = verify(run.urls, size, len(paths), tus=not community)
            if not run.verified:
                run.error = problem
        return run

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
                    extra: Optional[Dict[str, Any]] = None) -> None:
        result_path = self.tmp / "result.json"
        log_path = self.tmp / "worker.log"
        with contextlib.suppress(FileNotFoundError):
            result_path.unlink()
        job = dict(spec.options, client=spec.kind, url=url, files=paths, result=str(result_path),
                   token=COMMUNITY_TOKEN, **(extra or {}))
        with open(log_path, "wb") as log:
            proc = spawn([self.python, str(WORKER), json.dumps(job)], timeout=RUN_TIMEOUT,
                         stderr=log, env=self.env, scratch=self.tmp)
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
        run.bytes = out["bytes"]
        run.urls = out["urls"]

    def _run_curl(self, run: Run, url: str, paths: List[str]) -> None:
        if len(paths) != 1:
            raise ValueError("curl runs take one file")
        path = paths[0]
        size = os.path.getsize(path)
        head_path = self.tmp / "curl-headers.txt"
        status_path = self.tmp / "curl-status.txt"
        tus = ["-H", "Tus-Resumable: 1.0.0"]
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
        run.label = _curl_version()
        run.peak_rss_mib = max(create.maxrss_kib, patch.maxrss_kib) / 1024
        run.cpu_seconds = create.cpu + patch.cpu
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
                        print("   " + _describe(run), flush=True)
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
                print("   " + _describe(run), flush=True)

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


# -- verification ----------------------------------------------------------------


def verify(urls: List[str], size: int, count: int, tus: bool = True) -> Tuple[bool, str]:
    """HEAD every upload: the server must hold all ``size`` bytes of each.

    tus: Upload-Offset; community (``tus=False``): the file URL's Content-Length.
    """
    if len(urls) != count:
        return False, f"{len(urls)} upload URLs for {count} files"
    conns: Dict[str, http.client.HTTPConnection] = {}
    try:
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            conn = conns.get(parts.netloc)
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                conns[parts.netloc] = conn
            conn.request("HEAD", parts.path, headers={"Tus-Resumable": "1.0.0"} if tus else {})
            resp = conn.getresponse()
            resp.read()
            offset = resp.headers.get("Upload-Offset" if tus else "Content-Length")
            if resp.status != 200 or offset is None or int(offset) != size:
                return False, (f"HEAD {parts.path}: HTTP {resp.status}, "
                               f"{'Upload-Offset' if tus else 'Content-Length'} {offset}, expected {size}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"verification failed: {exc}"
    finally:
        for conn in conns.values():
            conn.close()
    return True, ""


def _upyun_call(conn: http.client.HTTPConnection, method: str, key: str) -> http.client.HTTPResponse:
    """One signed request to ``/<service>/<key>`` of the UPYUN emulator; the answer, read."""
    from upclient.backends.upyun import signing

    uri = signing.quote_path(f"/{UPYUN_SERVICE}/{key}")
    date = signing.http_date()
    auth = signing.authorization(UPYUN_OPERATOR, signing.password_md5(UPYUN_PASSWORD), method, uri, date)
    conn.request(method, uri, headers={"Date": date, "Authorization": auth})
    resp = conn.getresponse()
    resp.read()
    return resp


def verify_upyun(endpoint: str, store: Path, keys: List[str], expected_keys: List[str], size: int,
                 md5: Optional[str]) -> Tuple[bool, str]:
    """Each key the run was given must be stored whole: a signed HEAD on the emulator itself
    (``x-upyun-file-size`` = ``size``, ``Content-MD5`` = ``md5`` when both are known) and the file
    under its ``--dir``."""
    if sorted(keys) != sorted(expected_keys):
        return False, f"the client reports keys {keys}, expected {expected_keys}"
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for key in keys:
            resp = _upyun_call(conn, "HEAD", key)
            stored = resp.headers.get("x-upyun-file-size")
            if resp.status != 200 or stored is None or int(stored) != size:
                return False, f"HEAD {key}: HTTP {resp.status}, x-upyun-file-size {stored}, expected {size}"
            digest = resp.headers.get("Content-MD5")
            if md5 and digest and digest.lower() != md5:
                return False, f"HEAD {key}: Content-MD5 {digest}, the file's is {md5}"
            on_disk = store / "files" / UPYUN_SERVICE / key
            if not on_disk.is_file() or on_disk.stat().st_size != size:
                return False, f"{on_disk}: {on_disk.stat().st_size if on_disk.exists() else 'missing'}, expected {size}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"verification failed: {exc}"
    finally:
        conn.close()
    return True, ""


def upyun_cleanup(endpoint: str, store: Path) -> None:
    """Delete every stored file (signed DELETE, so the emulator forgets it too) and the parts
    of unfinished uploads (a failed run's), so no run sees another's and the store stays small."""
    root = store / "files" / UPYUN_SERVICE
    keys = sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, _, names in os.walk(root) for name in names)
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for key in keys:
            try:
                _upyun_call(conn, "DELETE", key)
            except (OSError, http.client.HTTPException):
                conn.close()  # reconnects on the next request
            with contextlib.suppress(OSError):  # whatever the emulator did not remove
                os.unlink(root / key)
    finally:
        conn.close()
    multipart = store / "multipart"
    if multipart.is_dir():
        for entry in multipart.iterdir():
            shutil.rmtree(entry, ignore_errors=True)


def sha256_of(path: Union[str, Path]) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        for block in iter(lambda: handle.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def _fdfs_view(store: Path) -> Any:
    """An FdfsServer on ``store`` that is never started: the emulator's own mapping of file ids to
    files under its ``--dir`` (the running emulator is another process on the same directory)."""
    from upclient.testing import FdfsServer

    return FdfsServer(store, ip_size=45)


def verify_fdfs(store: Path, ids: List[str], paths: List[str], digest: Callable[[str], str],
                exact: bool = True) -> Tuple[bool, str]:
    """Every upload must be on the emulator byte for byte: the file of each id (one per source, in
    order) has the source's SHA-256; with ``exact`` the emulator holds no other file."""
    if len(ids) != len(paths):
        return False, f"{len(ids)} file ids for {len(paths)} files"
    view = _fdfs_view(store)
    try:
        for file_id, path in zip(ids, paths):
            stored = view.path(file_id)
            if not stored.is_file():
                return False, f"{file_id}: not on the server"
            if stored.stat().st_size != os.path.getsize(path):
                return False, f"{file_id}: {stored.stat().st_size} bytes stored, the file has {os.path.getsize(path)}"
            if sha256_of(stored) != digest(path):
                return False, f"{file_id}: the stored bytes differ from {os.path.basename(path)}'s (SHA-256)"
        if exact:
            held = sorted(view.files())
            if held != sorted(ids):
                extra = sorted(set(held) - set(ids))
                return False, f"the server holds {len(held)} files for {len(ids)} uploads: {extra[:3]}"
    except (OSError, ValueError) as exc:
        return False, f"verification failed: {exc}"
    return True, ""


def verify_copies(reported: List[str], dests: List[str], paths: List[str],
                  digest: Callable[[str], str]) -> Tuple[bool, str]:
    """Every download must be whole: each destination has the SHA-256 of the file it is a copy of."""
    if reported != dests:
        return False, f"the client reports {reported}, expected {dests}"
    for dest, path in zip(dests, paths):
        if not os.path.isfile(dest):
            return False, f"{dest}: missing"
        if os.path.getsize(dest) != os.path.getsize(path):
            return False, f"{os.path.basename(dest)}: {os.path.getsize(dest)} bytes, expected {os.path.getsize(path)}"
        if sha256_of(dest) != digest(path):
            return False, f"{os.path.basename(dest)}: the bytes differ from the stored file's (SHA-256)"
    return True, ""


def fdfs_cleanup(store: Path) -> None:
    """Remove every stored file (and metadata, and half-received bodies) under the emulator's
    --dir, keeping its directories: its only state is those files, so it forgets them too."""
    for sub in ("data", "tmp"):
        for group in store.iterdir() if store.is_dir() else ():
            for folder, _, names in os.walk(group / sub):
                for name in names:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))


# -- reporting -------------------------------------------------------------------


def _size(n: int) -> str:
    if n >= GiB and n % GiB == 0:
        return f"{n // GiB} GiB"
    if n >= MiB:
        return f"{n / MiB:g} MiB"
    return f"{n / 1024:g} KiB"


def _describe(run: Run) -> str:
    what = f"{run.scenario}/{run.client:<24} r{run.round + 1} {_size(run.size):>8}"
    if run.files > 1:
        what += f" x{run.files}"
    if not run.ok:
        return f"{what}  FAILED: {run.error[:300]}"
    ver = "" if run.verified else f"  UNVERIFIED: {run.error}"
    if run.peak_rss_mib is None:  # h: measured in this process
        return f"{what}  {run.mbps:8.1f} MB/s  {run.elapsed:7.3f} s{ver}"
    return (f"{what}  {run.mbps:8.1f} MB/s  {run.elapsed:7.2f} s  peak RSS {run.peak_rss_mib:6.1f} MiB"
            f"  cpu {run.cpu_seconds:5.2f} s{ver}")


_curl_label: List[str] = []


def _curl_version() -> str:
    if not _curl_label:
        try:
            out = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=10).stdout
            _curl_label.append(" ".join(out.split()[:2]))
        except (OSError, subprocess.SubprocessError):
            _curl_label.append("curl")
    return _curl_label[0]


@dataclasses.dataclass
class Row:
    scenario: str
    client: str
    size: int
    files: int
    runs: int
    failed: int
    mbps: Optional[float]  # median over rounds
    mbps_min: Optional[float]
    mbps_max: Optional[float]
    files_per_s: Optional[float]
    ratio: Optional[float]  # reference upclient / this client (median MB/s)
    peak_rss_mib: Optional[float]  # max over rounds
    cpu_seconds: Optional[float]  # median
    label: str
    seconds: Optional[float] = None  # median elapsed (printed for h)


def summarize(runs: List[Run], scens: List[Scenario]) -> List[Row]:
    rows: List[Row] = []
    for sc in scens:
        for size in sc.sizes:
            ref_mbps = None
            groups: List[Tuple[ClientSpec, List[Run]]] = []
            for spec in sc.clients:
                group = [r for r in runs if r.scenario == sc.key and r.client == spec.id and r.size == size]
                if group:
                    groups.append((spec, group))
            for spec, group in groups:
                if spec == sc.reference:
                    ok = [r.mbps for r in group if r.ok and r.verified]
                    ref_mbps = statistics.median(ok) if ok else None
            for spec, group in groups:
                good = [r for r in group if r.ok and r.verified]
                speeds = [r.mbps for r in good if r.mbps is not None]
                med = statistics.median(speeds) if speeds else None
                rss = [r.peak_rss_mib for r in group if r.peak_rss_mib]
                cpu = [r.cpu_seconds for r in good if r.cpu_seconds is not None]
                fps = [r.files_per_s for r in good if r.files_per_s is not None]
                rows.append(Row(
                    scenario=sc.key, client=spec.id, size=size, files=sc.count, runs=len(group),
                    failed=len(group) - len(good), mbps=med,
                    mbps_min=min(speeds) if speeds else None, mbps_max=max(speeds) if speeds else None,
                    files_per_s=statistics.median(fps) if fps else None,
                    ratio=(ref_mbps / med) if (ref_mbps and med and spec != sc.reference) else None,
                    peak_rss_mib=max(rss) if rss else None,
                    cpu_seconds=statistics.median(cpu) if cpu else None,
                    label=next((r.label for r in group if r.label), spec.kind),
                    seconds=statistics.median([r.elapsed for r in good if r.elapsed]) if good else None,
                ))
    return rows


def print_table(rows: List[Row]) -> None:
    head = (f"{'':2}{'client':<24}{'data':>14}{'MB/s':>9}{'(min-max)':>18}{'files/s':>9}"
            f"{'upclient/x':>11}{'peak RSS MiB':>13}{'cpu s':>7}")
    print("\n" + head)
    print("-" * len(head))
    last = None
    for row in rows:
        if row.scenario != last:
            print(f"{row.scenario}.")
            last = row.scenario
        data = _size(row.size) + (f" x{row.files}" if row.files > 1 else "")
        mbps = f"{row.mbps:9.1f}" if row.mbps is not None else f"{'failed':>9}"
        span = (f"{row.mbps_min:8.1f}-{row.mbps_max:<8.1f}" if row.mbps_min is not None and row.runs > 1
                else f"{'':18}") if row.mbps is not None else f"{'':18}"
        fps = f"{row.files_per_s:9.0f}" if (row.files > 1 and row.files_per_s) else f"{'':9}"
        ratio = f"{row.ratio:10.2f}x" if row.ratio else f"{'':11}"
        rss = f"{row.peak_rss_mib:13.1f}" if row.peak_rss_mib else f"{'':13}"
        cpu = f"{row.cpu_seconds:7.2f}" if row.cpu_seconds is not None else f"{'':7}"
        if row.mbps is not None and row.mbps >= 1e5:  # h's cache hit: no bytes read, the time says it
            mbps, span = f"{'>100000':>9}", f"{'':18}"
        fail = f"  ({row.failed}/{row.runs} failed)" if row.failed else ""
        if row.scenario == "h" and row.seconds is not None:
            fail = f"  {row.seconds * 1000:.1f} ms" + fail
        print(f"  {row.client:<24}{data:>14}{mbps}{span:>18}{fps}{ratio}{rss}{cpu}{fail}")


@dataclasses.dataclass
class Target:
    name: str
    met: Optional[bool]  # None: not measured
    detail: str


def check_targets(rows: List[Row], quick: bool) -> List[Target]:
    def get(scenario: str, client_id: str, size: Optional[int] = None) -> Optional[Row]:
        for row in rows:
            if row.scenario == scenario and row.client == client_id and (size is None or row.size == size):
                return row
        return None

    def speed(row: Optional[Row]) -> Optional[float]:
        return row.mbps if row is not None else None

    def at_least(name: str, missing: str, ours: Optional[float], theirs: Optional[float], factor: float,
                 unit: str = "MB/s", digits: int = 0) -> Target:
        """Target ``ours >= factor * theirs``, or 'not measured'."""
        if not ours or not theirs:
            return Target(missing, None, "not measured")
        return Target(name, ours >= factor * theirs,
                      f"{ours:.{digits}f} vs {theirs:.{digits}f} {unit} ({ours / theirs:.2f}x)")

    out: List[Target] = []
    up, curl, tuspy = speed(get("a", UPCLIENT.id)), speed(get("a", CURL.id)), speed(get("a", TUSPY.id))
    if up and curl and tuspy:
        out.append(at_least("sink loopback: upclient >= curl", "", up, curl, 1))
        out.append(at_least("sink loopback: upclient >= 2x tuspy", "", up, tuspy, 2))
    else:
        out.append(Target("sink loopback (a)", None, "not measured"))
    out.append(at_least("@tus/server loopback: upclient within 5% of curl", "@tus/server loopback (b)",
                        speed(get("b", UPCLIENT.id)), speed(get("b", CURL.id)), 0.95))
    out.append(at_least("shaped link: upclient c=4 >= 3.5x tuspy", "shaped link (c)",
                        speed(get("c", UPCLIENT_C4.id)), speed(get("c", TUSPY.id)), 3.5, digits=1))
    many, loop = get("d", UPCLIENT_MANY.id), get("d", TUSPY_LOOP.id)
    out.append(at_least("small files: upclient put_many >= 5x tuspy loop", "small files (d)",
                        many.files_per_s if many else None, loop.files_per_s if loop else None, 5,
                        unit="files/s"))
    rss = [(row.size, row.peak_rss_mib) for row in rows
           if row.scenario == "e" and row.client == UPCLIENT_8.id and row.peak_rss_mib]
    if rss:
        rss.sort()
        biggest_size, biggest = rss[-1]
        spread = max(r for _, r in rss) - min(r for _, r in rss)
        flat = spread <= PART / MiB
        label = "2 GiB" if not quick else _size(biggest_size)
        out.append(Target(f"peak RSS for {label} < 100 MiB and flat (spread <= 8 MiB)",
                          biggest < 100 and flat,
                          ", ".join(f"{_size(s)}: {r:.1f} MiB" for s, r in rss)
                          + f"; spread {spread:.1f} MiB"))
    else:
        out.append(Target("peak RSS (e)", None, "not measured"))
    up_row, sdk_row = get("f", COMM_UP.id), get("f", COMM_SDK.id)
    out.append(at_least("community loopback: upclient >= SDK", "community loopback throughput (f)",
                        speed(up_row), speed(sdk_row), 1))
    if up_row and sdk_row and up_row.peak_rss_mib and sdk_row.peak_rss_mib:
        a, b = up_row.peak_rss_mib, sdk_row.peak_rss_mib
        out.append(Target("community loopback: upclient peak RSS <= 1/2 SDK's", a <= b / 2,
                          f"{a:.0f} vs {b:.0f} MiB ({a / b:.2f}x)"))
    else:
        out.append(Target("community peak RSS (f)", None, "not measured"))
    # like with like: the SDK sends no checksums in either mode, so neither does upclient here
    # (upclient's default per-part Content-MD5 is reported in the table, with its cost)
    up_i = speed(get("i", UPYUN_UP_NOSUM.id))
    out.append(at_least("UPYUN loopback, no checksums: upclient >= SDK resume upload",
                        "UPYUN loopback vs resume (i)", up_i, speed(get("i", UPYUN_RESUME.id)), 1))
    out.append(at_least("UPYUN loopback, no checksums: upclient >= SDK multi uploader x4",
                        "UPYUN loopback vs multi (i)", up_i, speed(get("i", UPYUN_MULTI.id)), 1))
    out.append(at_least("UPYUN loopback: upclient with its checksums >= SDK resume upload without",
                        "UPYUN loopback defaults vs resume (i)", speed(get("i", UPYUN_UP.id)),
                        speed(get("i", UPYUN_RESUME.id)), 1))
    out.append(at_least("UPYUN shaped link: upclient c=4 >= 3x SDK resume upload", "UPYUN shaped link (j)",
                        speed(get("j", UPYUN_UP_C4.id)), speed(get("j", UPYUN_RESUME.id)), 3, digits=1))
    # FastDFS, all against fastdfs-client 1.3.0 on the same emulator (45-byte IPs)
    big = "64 MiB" if quick else "1 GiB"
    sdk_put = speed(get("k", FDFS_SDK_PUT.id))
    out.append(at_least(f"FastDFS {big} upload: upclient put >= 1x SDK", "FastDFS upload (k)",
                        speed(get("k", FDFS_PUT.id)), sdk_put, 1))
    out.append(at_least(f"FastDFS {big} upload: upclient resumable=False >= 1x SDK (one request each)",
                        "FastDFS one-request upload (k)", speed(get("k", FDFS_PUT_ONE.id)), sdk_put, 1))
    out.append(at_least(f"FastDFS {big} upload: upclient resumable=True >= 1x SDK (one request)",
                        "FastDFS resumable upload (k)", speed(get("k", FDFS_PUT_RESUME.id)), sdk_put, 1))
    out.append(at_least(f"FastDFS {big} download: upclient get >= 1x SDK", "FastDFS download (l)",
                        speed(get("l", FDFS_GET.id)), speed(get("l", FDFS_SDK_GET.id)), 1))

    def fps(client_id: str) -> Optional[float]:
        row = get("m", client_id)
        return row.files_per_s if row is not None else None

    out.append(at_least("FastDFS small files: upclient put loop >= 1x SDK loop", "FastDFS small files (m)",
                        fps(FDFS_PUT_LOOP.id), fps(FDFS_SDK_LOOP.id), 1, unit="files/s"))
    out.append(at_least("FastDFS small files: upclient put_many >= 1x SDK loop", "FastDFS small files, put_many (m)",
                        fps(FDFS_PUT_MANY.id), fps(FDFS_SDK_LOOP.id), 1, unit="files/s"))
    return out


def machine_line() -> str:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    node = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        node = ", node " + out.stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{now}; {platform.system()} {platform.release()}; {cpu}, {os.cpu_count()} cores{mem}; "
            f"Python {platform.python_version()}; {_curl_version()}{node}")


def plot(rows: List[Row], scens: List[Scenario], targets: List[Target], path: Path, title: str) -> None:
    """One panel per scenario (upclient in blue, peers in grey, peak RSS over each bar) and the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [sc for sc in scens if any(r.scenario == sc.key for r in rows)]
    if not panels:
        return
    count = len(panels) + 1
    cols = min(3, count)
    nrows = -(-count // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 4.4 * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax, sc in zip(flat, panels):
        mine = [r for r in rows if r.scenario == sc.key]
        if sc.key == "e":
            values = [r.peak_rss_mib or 0 for r in mine]
            ax.bar([_size(r.size) for r in mine], values, color="#1f77b4")
            ax.axhline(100, color="#d62728", linestyle="--", linewidth=1)
            ax.text(0.02, 100, " target < 100 MiB", color="#d62728", va="bottom", fontsize=7,
                    transform=ax.get_yaxis_transform())
            ax.set_ylabel("peak RSS (MiB)")
            ax.set_xlabel("file size")
            ax.set_ylim(0, 115)
        else:
            labels = [r.client.replace("resumable-upload", "r-u") for r in mine]
            if sc.count > 1:  # d, m: many small files
                values = [r.files_per_s or 0 for r in mine]
                ax.set_ylabel("files/s (median)")
            else:
                values = [r.mbps or 0 for r in mine]
                ax.set_ylabel("MB/s (median)")
            colors = ["#1f77b4" if r.client.startswith("upclient") else "#9a9a9a" for r in mine]
            xs = range(len(values))
            ax.bar(xs, values, color=colors)
            for i, r in enumerate(mine):
                if r.mbps_min is not None and r.runs > 1 and sc.count == 1:
                    ax.plot([i, i], [r.mbps_min, r.mbps_max], color="black", linewidth=1)
                if r.peak_rss_mib:
                    ax.annotate(f"{r.peak_rss_mib:.0f} MiB", (i, values[i]), ha="center", va="bottom",
                                fontsize=7, xytext=(0, 2), textcoords="offset points")
            if sc.key == "h":
                ax.set_yscale("log")  # the cache hit is orders of magnitude above the rest
                ax.set_ylabel("MB/s (median, log)")
            ax.set_xticks(list(xs))
            ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
            ax.margins(y=0.12)
        ax.set_title(textwrap.fill(f"{sc.key}. {sc.title}", 60), fontsize=9)
    ax = flat[len(panels)]
    measured = [t for t in targets if t.met is not None]
    if measured:
        names = [t.name for t in measured]
        ax.barh(range(len(measured)), [1] * len(measured),
                color=["#2ca02c" if t.met else "#d62728" for t in measured])
        ax.set_yticks(range(len(measured)))
        ax.set_yticklabels([""] * len(measured))
        for i, (name, t) in enumerate(zip(names, measured)):
            ax.text(0.02, i, f"{'MET' if t.met else 'MISS'}: {name}\n{t.detail}", va="center", fontsize=6.5,
                    color="white")
        ax.invert_yaxis()
        ax.set_xticks([])
    ax.set_title("targets", fontsize=9)
    for extra in flat[len(panels) + 1:]:
        extra.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def default_tmpdir() -> Optional[str]:
    """/dev/shm when it has room: files and server stores in RAM keep the disk out of the figures."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return "/dev/shm" if st.f_bavail * st.f_frsize >= 8 * GiB else None


def _write_file(path: str, size: int) -> None:
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


def _freshen(path: str) -> None:
    """New random bytes at the start of ``path``: a new MD5, so the community emulator cannot dedup it."""
    with open(path, "r+b") as handle:
        handle.write(os.urandom(min(FRESHEN, os.path.getsize(path))))


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _float(text: str) -> Optional[float]:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _without_urls(run: Dict[str, Any]) -> Dict[str, Any]:
    run.pop("urls", None)
    return run


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# -- main ------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py",
                                     description="upclient vs tuspy, resumable-upload, curl, community-uploader, "
                                     "the upyun SDK and fastdfs-client")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one round: a smoke run of a minute or two")
    parser.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                        help="run only these scenarios (a-m; repeat or comma-separate)")
    parser.add_argument("--rounds", type=int,
                        help="rounds for every scenario (default: a, b, i, k, l 5; d, f, h, m 3; c, e, g, j 1; "
                        "all 1 with --quick)")
    parser.add_argument("--python",
                        help="interpreter for the Python clients and the sink (default: this one)")
    parser.add_argument("--tmpdir", help="where test files and server stores go (default: /dev/shm if it "
                        "has 8 GiB free, else the system temp dir)")
    parser.add_argument("--no-plot", action="store_true", help="do not write bench/bench.png")
    parser.add_argument("--profile", action="store_true",
                        help="run every Python client under cProfile (all threads; slower): stats in "
                        "bench/results/profiles/<scenario>-<client>-r<round>.prof")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    scens = scenarios(args.quick)
    wanted = {s.strip().lower() for item in args.only for s in item.split(",") if s.strip()}
    unknown = wanted - {s.key for s in scens}
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from a-m", file=sys.stderr)
        return 2
    if wanted:
        scens = [s for s in scens if s.key in wanted]
    if args.rounds:
        for sc in scens:
            sc.rounds = args.rounds
    if shutil.which("curl") is None:
        print("curl not found: its runs will fail", file=sys.stderr)
    if GNU_TIME is None:
        print("GNU time (/usr/bin/time) not found: peak RSS figures include this harness's own RSS "
              "(apt-get install time)", file=sys.stderr)
    machine = machine_line()
    print(f"upclient benchmark{' (--quick)' if args.quick else ''}: {machine}", flush=True)
    # Ctrl-C and SIGTERM (from make or CI) unwind the same way, so every server
    # stops; SIGINT is set explicitly as a shell starting us in the background ignores it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    bench = Bench(args)
    interrupted = False
    try:
        for sc in scens:
            try:
                bench.run_scenario(sc)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a server that would not start: report, go on
                bench._note(f"scenario {sc.key} failed: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: reporting what was measured", file=sys.stderr)
    finally:
        bench.close()
    rows = summarize(bench.runs, scens)
    print_table(rows)
    targets = check_targets(rows, args.quick)
    print("\ntargets" + (" (--quick sizes: indicative only)" if args.quick else "") + ":")
    for t in targets:
        mark = "n/a " if t.met is None else ("MET " if t.met else "MISS")
        print(f"  [{mark}] {t.name}: {t.detail}")
    loads = ", ".join(f"{k}: {a:.1f}->{b:.1f}" for k, (a, b) in bench.load.items())
    total = time.monotonic() - bench.started
    print(f"\nmachine: {machine}")
    print(f"load average (1 min) before->after each scenario: {loads}; total {total:.0f} s")
    for note in bench.notes:
        print(f"note: {note}")
    report = {
        "machine": machine,
        "quick": args.quick,
        "total_seconds": total,
        "interrupted": interrupted,
        "load_average": bench.load,
        "notes": bench.notes,
        "scenarios": [
            {"key": s.key, "title": s.title, "server": s.server, "shaped": s.shaped, "sizes": s.sizes,
             "files": s.count, "rounds": s.rounds, "reference": s.reference.id, "note": s.note,
             "clients": [{"id": c.id, "kind": c.kind, **c.options} for c in s.clients]}
            for s in scens
        ],
        "summary": [dataclasses.asdict(r) for r in rows],
        "targets": [dataclasses.asdict(t) for t in targets],
        "runs": [dict(_without_urls(dataclasses.asdict(r)), mbps=r.mbps) for r in bench.runs],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"results: {RESULTS.relative_to(REPO)}")
    if not args.no_plot and rows:
        try:
            title = f"upclient benchmark{' (quick)' if args.quick else ''}: {machine}"
            plot(rows, scens, targets, PLOT, title)
            print(f"plot: {PLOT.relative_to(REPO)}")
        except ImportError:
            print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
