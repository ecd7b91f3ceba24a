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
   file; upclient pools them);
n. the 1 GiB file of a over HTTPS: the sink terminates TLS itself (its
   listening socket wrapped by Python's ``ssl``, a certificate for 127.0.0.1
   from a throwaway ``trustme`` CA, ``bench/certs.py``; TLS 1.3 with the
   OpenSSL 3 defaults of both sides, AES-256-GCM here), in its own process,
   so its decryption is not in any client's CPU figure.  Every client
   verifies the certificate against that CA and nothing else: upclient with
   ``verify="ca.pem"`` (its defaults otherwise, and ``concat=False`` for one
   streamed PATCH on one connection, as curl), tuspy (which has no CA
   option, only ``verify_tls_cert``) through ``REQUESTS_CA_BUNDLE``, curl
   with ``--cacert``.  Every upload is checked with a verified HEAD.

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
single figures (the 1-minute load average is recorded per run).  CPU
seconds are user + system of the client's process (GNU time's ``%U`` and
``%S``; curl: its two processes added), start-up and imports included, and
per GiB moved; beside them the upload's own CPU (the worker's
``getrusage`` over the same span as its clock, all threads), which leaves
out the interpreter's start-up and imports (about 0.2 s for upclient, 0.3 s
for tuspy) and is the figure that grows with the file; for curl, whose
processes start in milliseconds, both are the same.  The server's CPU over
each run (the sink's or the emulator's process, from ``psutil``) is printed
with the run and kept in the JSON.  Test files
and server stores live in /dev/shm when it has room, so the disk is not
measured; every upload is checked afterwards with HEAD (Upload-Offset must
equal the size).

Prints a table (MB/s = 10^6 bytes per second), checks the targets, writes
``bench/results/latest.json`` and ``bench/bench.png``.  ``--quick`` uses
small sizes and one round, a smoke run of a minute or two (i, k, l, n: 64 MiB,
j: 48 MiB, so upclient still sends several parts; d, m: 100 files);
``--size 256MiB`` sets the single loopback file (a, b, e, f, h, i, k, l, n)
and ``--rounds`` the rounds of every scenario.  A full run takes about 17
minutes on 2 cores (i and j about 4 of them, k to m 2 to 4, more when the
SDK's download times out; n about 1).  ``--profile`` runs every
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
import dataclasses
import json
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import Bench  # noqa: E402
from bench.measure import GNU_TIME  # noqa: E402
from bench.report import check_targets, machine_line, plot, print_table, summarize  # noqa: E402
from bench.scenarios import scenarios  # noqa: E402

RESULTS = HERE / "results" / "latest.json"
PLOT = HERE / "bench.png"


def _without_urls(run: Dict[str, Any]) -> Dict[str, Any]:
    run.pop("urls", None)
    return run


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# -- main ------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """``256MiB``, ``256M``, ``1GiB``, ``1G``, ``512KiB`` or a number of bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256MiB, 1GiB)")
    return int(match.group(1)) * 1024 ** " KMG".index(match.group(2).upper() or " ")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py",
                                     description="upclient vs tuspy, resumable-upload, curl, community-uploader, "
                                     "the upyun SDK and fastdfs-client")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one round: a smoke run of a minute or two")
    parser.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                        help="run only these scenarios (a-n; repeat or comma-separate)")
    parser.add_argument("--rounds", type=int,
                        help="rounds for every scenario (default: a, b, i, k, l, n 5; d, f, h, m 3; c, e, g, j 1; "
                        "all 1 with --quick)")
    parser.add_argument("--size", type=parse_size, metavar="SIZE",
                        help="the single file of the loopback scenarios (a, b, f, h, i, k, l, n; e: half, "
                        "once and twice it), e.g. 256MiB or 1GiB (default 1 GiB, 64 MiB with --quick)")
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
    scens = scenarios(args.quick, args.size)
    wanted = {s.strip().lower() for item in args.only for s in item.split(",") if s.strip()}
    unknown = wanted - {s.key for s in scens}
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}; choose from a-n", file=sys.stderr)
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
