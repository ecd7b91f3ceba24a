"""Send every file of a directory to the fleet's workers and follow them to the end.

Each file becomes one ``upload`` task of ``fleet_app`` (any worker may take
it); while they run, the progress the workers report through Celery's task
states is gathered into one line a second on stderr::

    fleet: 41% 1.2 GiB of 2.9 GiB, 3 of 12 files done, 4 uploading (w1@host-a: 2, w2@host-b: 2)

At the end each file's result is printed on stdout as one JSON object a
line (``path``, ``state``, ``id``, ``worker``, ``retries``, ``resumed``,
``sent_bytes``, or ``error``); the exit status is 0 when every file went,
1 otherwise.  Run it with the workers' ``FLEET_REDIS`` (see fleet_app.py)::

    FLEET_REDIS=redis://queue:6379/0 python examples/celery_fleet/fanout.py /mnt/shared/outbox --prefix outbox/

The paths sent are absolute: the workers must see the directory at the
same path (shared storage), or set ``--root`` to where they mount it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fleet_app import app, upload  # noqa: E402  (this directory, on sys.path above)

MiB = 1024 * 1024


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def files_of(directory: Path) -> List[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def gather(tasks: List[Tuple[Path, Any]], sizes: Dict[Path, int]) -> Tuple[str, bool]:
    """One progress line from the task states, and whether every task has ended."""
    total = sum(sizes.values())
    done_bytes = 0
    finished = 0
    busy: Dict[str, int] = collections.Counter()
    for path, result in tasks:
        state = result.state
        info = result.info if state in ("PROGRESS", "SUCCESS") else None
        if state in ("SUCCESS", "FAILURE"):
            finished += 1
            done_bytes += sizes[path] if state == "SUCCESS" else 0
        elif state == "PROGRESS" and isinstance(info, dict):
            done_bytes += int(info.get("bytes_done") or 0)
            busy[str(info.get("worker") or "?")] += 1
    share = f"{100 * done_bytes // total}%" if total else "100%"
    who = ", ".join(f"{w}: {n}" for w, n in sorted(busy.items()))
    line = (f"fleet: {share} {human(done_bytes)} of {human(total)}, {finished} of {len(tasks)} files done, "
            f"{sum(busy.values())} uploading" + (f" ({who})" if who else ""))
    return line, finished == len(tasks)


def outcome(path: Path, result: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"path": str(path), "state": result.state, "retries": result.retries}
    if result.state == "SUCCESS":
        value = result.result
        out.update({k: value.get(k) for k in ("id", "worker", "resumed", "sent_bytes", "done_before")})
    else:
        out["error"] = f"{type(result.result).__name__}: {result.result}"
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--prefix", default="", help="put before each file's relative path to make its key")
    parser.add_argument("--root", help="the directory's path on the workers (default: the same)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between progress lines")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    args = parser.parse_args(argv)

    directory = args.directory.resolve()
    root = Path(args.root) if args.root else directory
    files = files_of(directory)
    sizes = {p: p.stat().st_size for p in files}
    tasks = []
    for path in files:
        rel = path.relative_to(directory).as_posix()
        tasks.append((path, upload.delay(str(root / rel), key=args.prefix + rel)))
    print(f"fleet: {len(tasks)} files sent to the workers", file=sys.stderr, flush=True)

    started = time.monotonic()
    while True:
        line, over = gather(tasks, sizes)
        print(line, file=sys.stderr, flush=True)
        if over:
            break
        if args.timeout is not None and time.monotonic() - started > args.timeout:
            print("fleet: gave up waiting", file=sys.stderr)
            return 2
        time.sleep(args.every)

    ok = True
    for path, result in tasks:
        item = outcome(path, result)
        ok = ok and item["state"] == "SUCCESS"
        print(json.dumps(item), flush=True)
    app.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
