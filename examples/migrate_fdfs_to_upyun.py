"""Move files off a FastDFS cluster to UPYUN, safe to stop and run again.

The files to move are named by their FastDFS ids, one a line (as your
application's database holds them; ``ID<TAB>KEY`` gives one a key of its
own).  Each file streams from FastDFS to UPYUN through memory, its size and
MD5 are checked, and what is done is kept in a journal: a run that is
stopped (Ctrl-C, a reboot, SIGKILL) is run again and copies only what is
left.  The same from a shell::

    upclient sync --from-list ids.txt fdfs://tracker:22122 upyun://operator@service --prefix fdfs/

Runs as it is against local emulators of both, started and stopped here::

    python examples/migrate_fdfs_to_upyun.py

Against real ones (or emulators kept running: ``python -m upclient.testing
fdfs`` and ``python -m upclient.testing upyun`` print their URL and
endpoint)::

    FDFS_URL=fdfs://tracker:22122 UPYUN_SERVICE=svc UPYUN_OPERATOR=op UPYUN_PASSWORD=... \\
        [UPYUN_ENDPOINT=127.0.0.1:PORT] python examples/migrate_fdfs_to_upyun.py ids.txt

It prints a line for each file copied or failed, then a summary; the exit
status is 0 when every file is on UPYUN, 1 otherwise.
"""

import contextlib
import os
import sys
import tempfile

import upclient
from upclient.journal import Journal
from upclient.sync import SyncRun, listed_files, read_id_list

MiB = 1024 * 1024


def migrate(fdfs_url: str, upyun_url: str, ids_file: str, state=None, **upyun_options) -> bool:
    """Copy every file ``ids_file`` names; True when all of them are on UPYUN.

    ``state``: the folder of resume points and journals (default: the user state directory).
    """
    with open(ids_file, encoding="utf-8") as f:
        ids = read_id_list(f)
    store = upclient.FileStore(state)
    with upclient.Client(fdfs_url, store=None) as source, \
            upclient.Client(upyun_url, part_size=8 * MiB, store=store, **upyun_options) as destination:
        # One journal per migration: the same ids file to the same place is the same job.
        journal = Journal.for_job(["migrate", os.path.abspath(ids_file), fdfs_url,
                                   destination.backend.destination(None, {}), "fdfs/"], store.directory)

        def report(event):
            if event.action == "uploaded":
                print(f"copied  {event.source} -> {event.key} ({event.bytes} bytes)")
            elif event.action == "failed":
                print(f"failed  {event.source}: {event.error}")

        run = SyncRun(destination, journal, prefix="fdfs/", source=source, on_event=report)
        summary = run.run(listed_files(source, ids))
    print(f"{summary.uploaded} copied, {summary.skipped} already there, {summary.failed} failed")
    return summary.failed == 0 and not summary.interrupted


@contextlib.contextmanager
def local_clusters():
    """A FastDFS emulator holding a few files and an UPYUN emulator: (fdfs URL, upyun URL, options, ids file)."""
    from upclient.testing import FdfsServer, UpyunServer

    with tempfile.TemporaryDirectory() as tmp, FdfsServer() as fdfs, \
            UpyunServer(service="demo", operator="op", password="s3cret") as upyun:
        ids_file = os.path.join(tmp, "ids.txt")
        with upclient.Client(fdfs.url, store=None) as client, open(ids_file, "w") as f:
            for size in (1000, 300_000, 20 * MiB):
                f.write(client.put(os.urandom(size), key="photo.jpg").id + "\n")
        options = {"password": "s3cret", "endpoint": upyun.endpoint, "state": os.path.join(tmp, "state")}
        yield fdfs.url, "upyun://op@demo", options, ids_file


def main() -> int:
    if os.environ.get("FDFS_URL"):
        missing = [n for n in ("UPYUN_SERVICE", "UPYUN_OPERATOR", "UPYUN_PASSWORD") if not os.environ.get(n)]
        if missing or len(sys.argv) != 2:
            print(__doc__, file=sys.stderr)
            print(f"set {', '.join(missing)} and give the ids file" if missing else "give the ids file",
                  file=sys.stderr)
            return 2
        options = {"password": os.environ["UPYUN_PASSWORD"]}
        if os.environ.get("UPYUN_ENDPOINT"):
            options["endpoint"] = os.environ["UPYUN_ENDPOINT"]
        url = f"upyun://{os.environ['UPYUN_OPERATOR']}@{os.environ['UPYUN_SERVICE']}"
        return 0 if migrate(os.environ["FDFS_URL"], url, sys.argv[1], **options) else 1
    with local_clusters() as (fdfs_url, upyun_url, options, ids_file):
        ok = migrate(fdfs_url, upyun_url, ids_file, **options)
        print("run again:")
        ok = migrate(fdfs_url, upyun_url, ids_file, **options) and ok  # copies nothing
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
