"""``upclient sync``: first runs, no-change re-runs, and a copy from FastDFS to UPYUN.

Against the emulators, each in its own process (``python -m upclient.testing
upyun`` and ``fdfs``), over loopback; every measured run is a process of its
own (this script with ``--worker``), whose peak RSS is its own
(``ru_maxrss``) and whose file opens under the tree are counted.

1. 10,000 files of 16 KiB (100 folders of 100) to UPYUN: ``sync``'s first
   run against ``put_many`` of the same files (files/s), then the re-run with
   nothing changed: its time in the command (``main()``: walk, journal, one
   listing of the destination) and as a process (with the interpreter's
   start), and how many files of the tree it opened (it must be none).
2. A tree holding one 1 GiB file: ``sync``'s first run and its re-run.
3. One 1 GiB file from the FastDFS emulator to the UPYUN emulator: a plain
   ``get`` (to /dev/null) and a plain ``put`` (from a file) of it, then
   ``sync --from-list``; the copy's rate against the slower of the two, and
   its peak RSS.

::

    .venv/bin/python bench/sync.py              # all, about 3 minutes on 2 cores
    .venv/bin/python bench/sync.py --quick      # 1,000 files and 64 MiB
    .venv/bin/python bench/sync.py --only 1,3   # some parts only
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20


# -- the worker: one measured run in a process of its own ------------------------------------


def _count_opens(root: str) -> List[str]:
    """Record every file opened under ``root`` from now on (os.open and open)."""
    opened: List[str] = []
    real_os_open, real_open = os.open, builtins.open

    def os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if os.fsdecode(path).startswith(root):
            opened.append(os.fsdecode(path))
        return real_os_open(path, *args, **kwargs)

    def py_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, bytes, os.PathLike)) and os.fsdecode(file).startswith(root):
            opened.append(os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    os.open = os_open  # type: ignore[assignment]
    builtins.open = py_open
    return opened


def worker(job: Dict[str, Any]) -> Dict[str, Any]:
    import upclient
    from upclient.cli import main  # imported before the clock starts, as everything else

    kind = job["kind"]
    opened = _count_opens(job["root"]) if job.get("root") else []
    settings = dict(job.get("settings", {}))
    if "store" in settings:
        settings["store"] = upclient.FileStore(settings["store"]) if settings["store"] else None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    result: Dict[str, Any] = {}
    if kind == "sync":
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            result["status"] = main(job["args"])
    elif kind == "put_many":
        with upclient.Client(job["url"], **settings) as client:
            outcomes = client.put_many(job["paths"], keys=job["keys"])
        result["failed"] = sum(1 for o in outcomes if not o.ok)
    elif kind == "put":
        with upclient.Client(job["url"], **settings) as client:
            result["id"] = client.put(job["path"], key=job.get("key")).id
    elif kind == "get":
        with upclient.Client(job["url"], store=None) as client, open(os.devnull, "wb") as sink:
            result["bytes"] = client.get(job["id"], sink)
    result["elapsed"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = usage.ru_utime + usage.ru_stime - cpu_before
    result["opens"] = len(opened)
    result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_worker(job: Dict[str, Any]) -> Dict[str, Any]:
    """``job`` in a child process: its result, with the process's whole wall time."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--worker"], input=json.dumps(job).encode(),
                          capture_output=True, env=env, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"worker {job['kind']} failed: {done.stderr.decode()[-2000:]}")
    result = json.loads(done.stdout.decode().splitlines()[-1])
    result["wall"] = wall
    return result


# -- the servers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def emulator(kind: str, directory: Path) -> Iterator[Tuple[str, List[str]]]:
    """``python -m upclient.testing KIND --dir DIR`` as a child: (its URL, the CLI flags it prints)."""
    proc = subprocess.Popen([sys.executable, "-m", "upclient.testing", kind, "--dir", str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert proc.stdout is not None
        lines = []
        while not lines or lines[-1] != "serving until Ctrl-C":
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the {kind} emulator did not start: {lines}")
            lines.append(line.strip())
        flags = next((line.split(": ", 1)[1].split() for line in lines if line.startswith("flags: ")), [])
        yield lines[0], flags
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def settings_of(flags: List[str]) -> Dict[str, Any]:
    """``--endpoint X --password Y`` -> Client settings."""
    return {flags[i][2:]: flags[i + 1] for i in range(0, len(flags), 2)}


# -- the parts -------------------------------------------------------------------------------------


def make_tree(root: Path, files: int, size: int) -> None:
    per_folder = 100
    for i in range(files):
        folder = root / f"d{i // per_folder:03d}"
        if i % per_folder == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.bin").write_bytes(os.urandom(size))


def many_files(tmp: Path, upyun: Tuple[str, List[str]], files: int, rounds: int) -> List[str]:
    url, flags = upyun
    root = tmp / "many"
    make_tree(root, files, 16 * 1024)
    paths = sorted(str(p) for p in root.rglob("*.bin"))
    firsts, agains, manys = [], [], []
    for n in range(rounds):  # interleaved, the best of each: the machine is shared
        args = ["sync", str(root), url, *flags, "--store", str(tmp / f"state-many-{n}"), "--prefix", f"sync-{n}",
                "-q", "--no-progress"]
        first_job = {"kind": "sync", "args": args, "root": str(root)}
        # put_many with a store of its own, as sync has (resume points, digests)
        many_job = {"kind": "put_many", "url": url, "settings": {**settings_of(flags), "store": str(tmp / f"s-pm-{n}")},
                    "paths": paths, "keys": [f"put_many-{n}/" + os.path.relpath(p, root) for p in paths]}
        # which goes first alternates, so neither always meets the emulator holding fewer files
        for job in ([first_job, many_job] if n % 2 == 0 else [many_job, first_job]):
            (firsts if job is first_job else manys).append(run_worker(job))
        agains.append(run_worker({"kind": "sync", "args": args, "root": str(root)}))
    assert all(r["status"] == 0 for r in firsts + agains) and all(r["failed"] == 0 for r in manys)
    first = min(firsts, key=lambda r: r["elapsed"])
    many = min(manys, key=lambda r: r["elapsed"])
    again = min(agains, key=lambda r: r["elapsed"])
    rate, rate_many = files / first["elapsed"], files / many["elapsed"]
    return [
        f"1. {files:,} files of 16 KiB to the UPYUN emulator (best of {rounds})",
        f"   sync, first run           {first['elapsed']:7.2f} s  {rate:7.0f} files/s   CPU {first['cpu']:.2f} s",
        f"   put_many, the same files  {many['elapsed']:7.2f} s  {rate_many:7.0f} files/s   CPU {many['cpu']:.2f} s"
        f"   (sync / put_many: {rate / rate_many:.2f})",
        f"   sync, re-run, no change   {again['elapsed']:7.2f} s in the command, {min(r['wall'] for r in agains):.2f} s"
        f" as a process; {max(r['opens'] for r in agains)} file reads",
    ]


def one_big_file(tmp: Path, upyun: Tuple[str, List[str]], size: int) -> List[str]:
    url, flags = upyun
    root = tmp / "big"
    root.mkdir()
    write_random(root / "big.bin", size)
    args = ["sync", str(root), url, *flags, "--store", str(tmp / "state-big"), "--prefix", "big", "-q",
            "--no-progress"]
    first = run_worker({"kind": "sync", "args": args, "root": str(root)})
    again = run_worker({"kind": "sync", "args": args, "root": str(root)})
    put = run_worker({"kind": "put", "url": url, "path": str(root / "big.bin"), "key": "put/big.bin",
                      "settings": {**settings_of(flags), "store": str(tmp / "state-big-put")}})
    assert first["status"] == 0 and again["status"] == 0, (first, again)
    return [
        f"2. a tree of one {size // MiB} MiB file to the UPYUN emulator",
        f"   sync, first run           {first['elapsed']:7.2f} s  {size / MiB / first['elapsed']:7.0f} MiB/s"
        f"   peak RSS {first['maxrss_mib']:.0f} MiB",
        f"   put of the file, for scale {put['elapsed']:6.2f} s  {size / MiB / put['elapsed']:7.0f} MiB/s"
        f"   peak RSS {put['maxrss_mib']:.0f} MiB",
        f"   sync, re-run, no change   {again['elapsed']:7.2f} s in the command, {again['wall']:.2f} s as a process;"
        f" {again['opens']} file reads",
    ]


def write_random(path: Path, size: int) -> None:
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for i in range(size // MiB):
            f.write(block[i % 7:] + block[: i % 7])  # each MiB differs; no need for a GiB of urandom
        f.write(os.urandom(size % MiB))


def copy_between(tmp: Path, upyun: Tuple[str, List[str]], fdfs_url: str, size: int, rounds: int) -> List[str]:
    url, flags = upyun
    source = tmp / "copy.bin"
    write_random(source, size)
    stored = run_worker({"kind": "put", "url": fdfs_url, "settings": {"store": None}, "path": str(source)})
    listing = tmp / "ids.txt"
    listing.write_text(stored["id"] + "\n")
    best: Dict[str, Dict[str, Any]] = {}
    for n in range(rounds):  # interleaved, the best of each: the machine is shared
        runs = {
            "get": {"kind": "get", "url": fdfs_url, "id": stored["id"]},
            "put": {"kind": "put", "url": url, "settings": {**settings_of(flags), "store": None},
                    "path": str(source), "key": f"plain/copy-{n}.bin"},
            "copy": {"kind": "sync", "args": ["sync", "--from-list", str(listing), fdfs_url, url, *flags, "--store",
                                              str(tmp / f"state-copy-{n}"), "--prefix", f"copied-{n}", "-q",
                                              "--no-progress"]},
        }
        for name, job in runs.items():
            result = run_worker(job)
            assert result.get("status", 0) == 0, result
            if name not in best or result["elapsed"] < best[name]["elapsed"]:
                best[name] = result
    get, put, copy = best["get"], best["put"], best["copy"]
    rates = {name: size / MiB / r["elapsed"] for name, r in best.items()}
    slower = min(rates["get"], rates["put"])
    return [
        f"3. one {size // MiB} MiB file, FastDFS emulator -> UPYUN emulator (best of {rounds})",
        f"   get (to /dev/null)        {get['elapsed']:7.2f} s  {rates['get']:7.0f} MiB/s"
        f"   peak RSS {get['maxrss_mib']:.0f} MiB",
        f"   put (from a file)         {put['elapsed']:7.2f} s  {rates['put']:7.0f} MiB/s"
        f"   peak RSS {put['maxrss_mib']:.0f} MiB",
        f"   sync --from-list (copy)   {copy['elapsed']:7.2f} s  {rates['copy']:7.0f} MiB/s"
        f"   peak RSS {max(r['maxrss_mib'] for r in [copy]):.0f} MiB;  copy / slower of get and put: "
        f"{rates['copy'] / slower:.2f}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the job on stdin
    parser.add_argument("--quick", action="store_true", help="1,000 files and 64 MiB instead of 10,000 and 1 GiB")
    parser.add_argument("--only", default="1,2,3", help="which parts, e.g. 1,3")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of parts 1 and 3 (the best of each is shown)")
    a = parser.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(sys.stdin.read()))))
        return 0
    files, size = (1000, 64 * MiB) if a.quick else (10_000, 1024 * MiB)
    parts = {p.strip() for p in a.only.split(",")}
    tmp = Path(tempfile.mkdtemp(prefix="upclient-bench-sync-"))
    rows: List[str] = []
    try:
        with emulator("upyun", tmp / "upyun") as upyun, emulator("fdfs", tmp / "fdfs") as (fdfs_url, _):
            if "1" in parts:
                rows += many_files(tmp, upyun, files, a.rounds)
                print("\n".join(rows[-4:]), flush=True)
            if "2" in parts:
                rows += one_big_file(tmp, upyun, size)
                print("\n".join(rows[-4:]), flush=True)
            if "3" in parts:
                rows += copy_between(tmp, upyun, fdfs_url, size, a.rounds)
                print("\n".join(rows[-4:]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
