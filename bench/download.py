"""Parallel ranged downloads: ``client.get(id, path)`` at concurrency 4 against one stream.

One file (1 GiB; 64 MiB with ``--quick``) is stored once, unmeasured, on
the UPYUN emulator and on the FastDFS emulator (``python -m upclient.testing
upyun`` / ``fdfs``, each its own process), then downloaded to a path:

1. UPYUN through ``ShapingProxy`` (20 ms each way, 20 MB/s per TCP
   connection, as scenarios c, g and j of ``bench/run.py``): concurrency 4
   (one GET of the whole file at first, split into 16 MiB ranges, up to four
   in flight, once more connections measurably pay) against concurrency 1
   (one GET of the whole file); target 3x;
2. UPYUN over loopback, the same two; target 1.0x;
3. FastDFS over loopback, the same two (scenario l's server; ``get`` there
   runs at upclient's default, concurrency 4); target 1.0x.

Both ways check what they wrote before putting it in place: the size, and
the whole file's MD5 (UPYUN, from its HEAD) or CRC32 (FastDFS, from its
stat), computed from the ``.part`` file behind the ranges written.  Every
client run is its own process (this script with ``--worker``, started
under GNU time: peak RSS and CPU of that process alone); its time runs from
the client's construction to its close, after the imports, and its
``get/GiB`` CPU over the same span.  After every run the destination's
SHA-256 must be the source's, else the run fails.  Files live in /dev/shm
when it has room.  Prints a table and the targets, writes
``bench/results/download.json``.  Each round runs c=4 and c=1 back to back
(in turns first); a target is judged on the median of those pairs' ratios,
which cancels the machine's load drifting between rounds (the ratio of the
two medians, printed beside it, does not), with the get's CPU ratio.

::

    .venv/bin/python bench/download.py              # about 4 minutes on 2 cores
    .venv/bin/python bench/download.py --quick      # 64 MiB, one round
    .venv/bin/python bench/download.py --only 1     # some cases only (1, 2, 3)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.measure import spawn  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
WAN_DELAY = 0.020
WAN_RATE = 20e6
SERVICE, OPERATOR, PASSWORD = "bench", "bench-op", "bench-pw"
RESULTS = HERE / "results" / "download.json"


# -- the worker: one measured get in a process of its own ----------------------------------


def worker(spec: Dict[str, Any]) -> int:
    import upclient  # before the clock: imports are not the download's

    cpu0 = _cpu()
    started = time.perf_counter()
    if spec["backend"] == "upyun":
        client = upclient.Client(f"upyun://{OPERATOR}@{SERVICE}", endpoint=spec["address"], password=PASSWORD,
                                 concurrency=spec["concurrency"], store=None)
    else:
        client = upclient.Client(f"fdfs://{spec['address']}", concurrency=spec["concurrency"], store=None)
    try:
        got = client.get(spec["id"], spec["dest"])
    finally:
        client.close()
    elapsed = time.perf_counter() - started
    print(json.dumps({"bytes": got, "elapsed": elapsed, "cpu_get": _cpu() - cpu0}))
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def emulator(name: str, args: List[str], log: Path) -> Iterator[int]:
    """``python -m upclient.testing NAME`` on a port of its own, its own process group; yields the port."""
    port = free_port()
    cmd = [sys.executable, "-m", "upclient.testing", name, "--host", "127.0.0.1", "--port", str(port), *args]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} emulator did not start: {log.read_text(errors='replace')[-400:]}")
            time.sleep(0.1)
        yield port
    finally:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, 9)
            proc.wait(5)


def scratch_dir(size: int) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 4 * size + GiB:
        return Path(tempfile.mkdtemp(prefix="upclient-bench-dl-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="upclient-bench-dl-"))


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def sha256_of(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 * MiB), b""):
            h.update(block)
    return h.hexdigest()


# -- runs ---------------------------------------------------------------------------------------


def run_once(spec: Dict[str, Any], tmp: Path, digest: str, size: int) -> Dict[str, Any]:
    """One worker process: its figures, checked by the destination's SHA-256."""
    dest = Path(spec["dest"])
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    out_path = tmp / "worker.out"
    with open(out_path, "wb") as out:
        proc = spawn([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                     timeout=600, stdout=out, env=dict(os.environ, PYTHONPATH=str(REPO)), scratch=tmp)
    row: Dict[str, Any] = {"ok": False, "rss_mib": proc.maxrss_kib / 1024, "cpu": proc.cpu}
    try:
        row.update(json.loads(out_path.read_text().strip().splitlines()[-1]))
    except (ValueError, IndexError):
        row["error"] = f"exit status {proc.returncode}"
        return row
    row["ok"] = proc.returncode == 0 and row.get("bytes") == size and sha256_of(dest) == digest
    if not row["ok"]:
        row["error"] = "the download is not the source"
    leftovers = [p.name for p in dest.parent.iterdir() if p.name.endswith(".part")]
    if leftovers:
        row["ok"], row["error"] = False, f"left behind: {leftovers}"
    dest.unlink(missing_ok=True)
    return row


def median_row(rows: List[Dict[str, Any]], size: int) -> Optional[Dict[str, Any]]:
    good = [r for r in rows if r["ok"]]
    if not good:
        return None
    elapsed = statistics.median(r["elapsed"] for r in good)
    return {
        "mbps": size / elapsed / 1e6,
        "elapsed": elapsed,
        "cpu_gib": statistics.median(r["cpu"] for r in good) / (size / GiB),
        "get_gib": statistics.median(r["cpu_get"] for r in good) / (size / GiB),
        "rss_mib": max(r["rss_mib"] for r in good),
        "runs": len(rows),
        "failed": len(rows) - len(good),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/download.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB, one round")
    parser.add_argument("--only", default="", help="cases to run: 1 (shaped), 2 (UPYUN loopback), 3 (FastDFS)")
    parser.add_argument("--rounds", type=int, help="rounds of the loopback cases (default 3; 1 shaped)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))

    import upclient
    from upclient.testing import ShapingProxy

    size = 64 * MiB if args.quick else GiB
    loop_rounds = args.rounds or (1 if args.quick else 3)
    cases = {c for c in args.only.replace(",", " ").split()} or {"1", "2", "3"}
    tmp = scratch_dir(size)
    results: Dict[str, Any] = {"size": size, "cases": []}
    try:
        source = tmp / "source.bin"
        digest = make_file(source, size)
        with emulator("upyun", ["--dir", str(tmp / "upyun"), "--service", SERVICE, "--operator", OPERATOR,
                                "--password", PASSWORD], tmp / "upyun.log") as up_port, \
                emulator("fdfs", ["--dir", str(tmp / "fdfs")], tmp / "fdfs.log") as fd_port:
            up_address = f"127.0.0.1:{up_port}"
            with upclient.Client(f"upyun://{OPERATOR}@{SERVICE}", endpoint=up_address, password=PASSWORD,
                                 store=None) as client:
                client.put(source, "/download.bin")
                stored_md5 = client.info("/download.bin").extra.get("md5")
            with upclient.Client(f"fdfs://127.0.0.1:{fd_port}", store=None) as client:
                fdfs_id = client.put(source).id
            if stored_md5 != sha256_of(source, "md5"):
                raise RuntimeError("the UPYUN emulator does not hold the source")
            plan: List[Tuple[str, str, str, int]] = []
            if "1" in cases:
                plan.append(("1", "UPYUN, 40 ms RTT + 20 MB/s per connection", "upyun-shaped", 1))
            if "2" in cases:
                plan.append(("2", "UPYUN, loopback", "upyun", loop_rounds))
            if "3" in cases:
                plan.append(("3", "FastDFS, loopback", "fdfs", loop_rounds))
            for key, title, server, rounds in plan:
                with contextlib.ExitStack() as stack:
                    if server == "upyun-shaped":
                        wan = stack.enter_context(ShapingProxy(("127.0.0.1", up_port), delay=WAN_DELAY,
                                                               rate=WAN_RATE))
                        address = f"127.0.0.1:{wan.port}"
                    else:
                        address = up_address if server == "upyun" else f"127.0.0.1:{fd_port}"
                    backend, file_id = ("fdfs", fdfs_id) if server == "fdfs" else ("upyun", "/download.bin")
                    runs: Dict[int, List[Dict[str, Any]]] = {4: [], 1: []}
                    run_once({"backend": backend, "address": address, "id": file_id, "concurrency": 4,
                              "dest": str(tmp / "dest.bin")}, tmp, digest, size)  # warm-up, not recorded
                    for rnd in range(rounds):
                        for concurrency in ((4, 1) if rnd % 2 == 0 else (1, 4)):
                            spec = {"backend": backend, "address": address, "id": file_id,
                                    "concurrency": concurrency, "dest": str(tmp / "dest.bin")}
                            row = run_once(spec, tmp, digest, size)
                            runs[concurrency].append(row)
                            shown = f"{size / row['elapsed'] / 1e6:7.1f} MB/s" if row["ok"] else row["error"]
                            print(f"  {key} c={concurrency} round {rnd + 1}: {shown}", flush=True)
                four, one = median_row(runs[4], size), median_row(runs[1], size)
                results["cases"].append({"key": key, "title": title, "c4": four, "c1": one,
                                         "runs": {str(c): r for c, r in runs.items()}})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"results: {RESULTS.relative_to(REPO)}")
    return 0


TARGETS = {"1": 3.0, "2": 1.0, "3": 1.0}


def report(results: Dict[str, Any]) -> None:
    size = results["size"]
    label = f"{size // GiB} GiB" if size >= GiB else f"{size // MiB} MiB"
    print(f"\nget(id, path) of {label}: concurrency 4 (16 MiB ranges where they pay) against 1 (one stream)")
    print(f"{'case':44} {'client':6} {'MB/s':>8} {'s':>7} {'cpu/GiB':>8} {'get/GiB':>8} {'RSS MiB':>8}")
    for case in results["cases"]:
        for name in ("c4", "c1"):
            row = case[name]
            if row is None:
                print(f"{case['key'] + '. ' + case['title']:44} {name:6} failed")
                continue
            print(f"{case['key'] + '. ' + case['title']:44} {name:6} {row['mbps']:8.1f} {row['elapsed']:7.2f} "
                  f"{row['cpu_gib']:8.2f} {row['get_gib']:8.2f} {row['rss_mib']:8.1f}")
    print("\ntargets:")
    for case in results["cases"]:
        four, one, want = case["c4"], case["c1"], TARGETS[case["key"]]
        if four is None or one is None:
            print(f"  [n/a ] {case['title']}: a client failed")
            continue
        ratio = four["mbps"] / one["mbps"]
        pairs = paired(case["runs"])
        case["ratio"] = ratio
        case["paired"] = pairs
        verdict = pairs["speed"] if pairs else ratio
        print(f"  [{'MET ' if verdict >= want else 'MISS'}] {case['title']}: c=4 / c=1 = {verdict:.2f}x "
              + (f"(median of {pairs['n']} back-to-back pairs; of the medians {ratio:.2f}x; "
                 f"get CPU per GiB {pairs['cpu']:.2f}x) " if pairs else "")
              + f"(target >= {want:g}x)")


def paired(runs: Dict[str, List[Dict[str, Any]]]) -> Optional[Dict[str, float]]:
    """The medians of c=4 / c=1 over the rounds, each round's two runs taken back to back.

    On a shared machine the load drifts from minute to minute: a ratio of
    two runs a few seconds apart cancels most of it, where the ratio of the
    two medians (over runs minutes apart) does not.  ``cpu``: the same for
    the get's CPU seconds, which the load moves much less than the time.
    """
    pairs = [(a, b) for a, b in zip(runs.get("4", []), runs.get("1", [])) if a["ok"] and b["ok"]]
    if not pairs:
        return None
    return {
        "n": len(pairs),
        "speed": statistics.median(b["elapsed"] / a["elapsed"] for a, b in pairs),
        "cpu": statistics.median(a["cpu_get"] / b["cpu_get"] for a, b in pairs),
    }


if __name__ == "__main__":
    sys.exit(main())
