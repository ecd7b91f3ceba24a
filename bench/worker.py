"""One benchmark run of one Python client, in its own process.

``python bench/worker.py '<json spec>'`` uploads the spec's files with the
named client and writes one JSON line (to ``result``, else stdout): the wall
time of the uploads (client construction to close; every module a client
needs is imported before the clock starts, for every client), the CPU
seconds (user + system, all threads) the process spent in that same span,
the bytes, the upload URLs, and the peak RSS the process had reached after
its imports (so the harness can tell the interpreter's own share from the
upload's).  The harness (``bench/run.py``) measures the process's real peak
RSS and its whole CPU time, start-up and imports included.

Spec keys: ``client`` (``upclient``, ``tuspy``, ``resumable-upload``;
``upclient-community``, ``community-sdk`` for the community emulator),
``url`` (the tus creation URL, ``http://...``; the community base URL),
``token`` (community bearer token), ``files`` (paths),
``result`` (where to write the JSON result; stdout if absent), and per
client: ``part_size``, ``concurrency``, ``max_files``, ``concat``
(upclient); ``chunk_size`` (tuspy, resumable-upload); ``parallel``
(resumable-upload's ``parallel_uploads``); ``verify`` (upclient: a CA bundle
to trust, for an ``https://`` URL; tuspy and resumable-upload take theirs
from ``REQUESTS_CA_BUNDLE``, which the harness sets); ``part_size``, ``concurrency``
(upclient-community, community-sdk: ``None`` or absent is the client's own
default). A community upload answered as deduplicated is an error: the
harness makes every file fresh so each run moves the bytes.

UPYUN (``upclient-upyun``, ``upyun-resume``, ``upyun-multi``): ``url`` is
the endpoint, ``host:port`` (the emulator, or the shaping proxy in front of
it); ``service``, ``operator``, ``password``; ``keys`` (one storage key per
file, fresh for every run; they come back as the result's ``urls``, which the
harness checks on the server).  ``upclient-upyun`` is
``upclient.Client("upyun://OP@SVC", password=PW, endpoint=HOSTPORT,
store=None)`` then ``client.put(path, key=key)``, with its defaults (16 MiB
parts, concurrency 4, checksum on: a Content-MD5 per part and the whole
file's MD5 at complete) unless ``part_size``, ``concurrency`` or
``checksum`` say otherwise.  ``upyun-resume`` is the official SDK's
resumable upload with its defaults (1 MiB parts, one after the other, no
checksum): ``up = upyun.UpYun(SVC, username=OP, password=PW,
endpoint=HOSTPORT)``, ``up.put(key, f, need_resume=True)``.
``upyun-multi`` is the SDK's multi uploader used for parallel parts, as its
README suggests: ``m = up.init_multi_uploader(key, part_size=part_size,
file_size=size)`` (the SDK asks for ``X-Upyun-Multi-Disorder``), then every
part read with ``os.pread`` inside a task of a
``concurrent.futures.ThreadPoolExecutor(threads)`` and sent with
``m.upload(i, data)`` (so at most ``threads`` parts are in memory), then
``m.complete()`` (no whole-file MD5: the SDK sends none by default).
``part_size`` (default 16 MiB) and ``threads`` (default 4).

FastDFS (``upclient-fdfs``, ``fdfs-sdk``): ``url`` is the emulator's
``fdfs://127.0.0.1:PORT`` (its tracker); ``mode`` is ``put`` (upload
``files``, one after the other; the result's ``urls`` are the file ids) or
``get`` (download every id of ``ids`` to the path at the same place in
``dests``; ``files`` are the sources those ids were uploaded from, which
give the byte count; the result's ``urls`` are the ``dests``).
``upclient-fdfs`` is ``upclient.Client(url, store=None)``, then
``client.put(path)`` per file (its default: above ``part_size`` an
appender file grown by appends of ``part_size``, then regenerated into a
normal file), with ``resumable`` given, ``put(path, resumable=...)``: False
is the whole file in one upload request, streamed, True keeps the appender
file; with ``many`` one
``client.put_many(files)`` (``max_files``: the client's default unless
given); ``client.get(id, dest)`` per file to download.  ``fdfs-sdk`` is the
PyPI ``fastdfs-client`` 1.3.0: ``FastdfsClient({"host_tuple":
("127.0.0.1",), "port": PORT, "timeout": 30, "name": "Tracker Pool"})``,
then ``upload_by_filename(path)`` per file or ``download_to_file(dest, id)``
per id; its tracker pool is destroyed at the end (it has no ``close``).

``profile``: a path; the upload runs under :mod:`cProfile` and its stats
are written there (for finding where a client's time goes; off by default,
as profiling slows the client down).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Tuple


def _upclient(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    import upclient
    import upclient.backends.tus  # noqa: F401  (Client() would import it inside the timing)
    import upclient.client  # noqa: F401  (upclient.Client is loaded on first use)
    import upclient.connections  # noqa: F401  (the first request would import urllib3 inside the timing)

    def run() -> List[str]:
        options: Dict[str, Any] = {}
        if spec.get("concat") is not None:
            options["concat"] = bool(spec["concat"])
        if spec.get("part_size") is not None:  # else the client's default
            options["part_size"] = int(spec["part_size"])
        if spec.get("verify"):  # a CA bundle (HTTPS to a server with a certificate of our own)
            options["verify"] = str(spec["verify"])
        client = upclient.Client(
            "tus+" + spec["url"],
            concurrency=int(spec.get("concurrency", 4)),
            max_files=int(spec.get("max_files", 8)),
            store=None,
            checksum=False,
            **options,
        )
        try:
            files = spec["files"]
            if len(files) == 1:
                return [client.put(files[0]).url]
            outcomes = client.put_many(files)
            failed = [o for o in outcomes if not o.ok]
            if failed:
                first = failed[0].error
                raise RuntimeError(f"{len(failed)} of {len(files)} uploads failed; first: {first!r}")
            return [o.result.url for o in outcomes]
        finally:
            client.close()

    return run, f"upclient {upclient.__version__}"


def _tuspy(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    from importlib.metadata import version

    from tusclient.client import TusClient

    def run() -> List[str]:
        client = TusClient(spec["url"])
        urls = []
        for path in spec["files"]:
            # A filename, as a real caller gives: without metadata tuspy sends an
            # empty Upload-Metadata header, which @tus/server refuses (400).
            uploader = client.uploader(
                path,
                chunk_size=int(spec.get("chunk_size", 8 << 20)),
                metadata={"filename": os.path.basename(path)},
            )
            uploader.upload()
            urls.append(uploader.url)
        return urls

    return run, f"tuspy {version('tuspy')}"


def _resumable_upload(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    from importlib.metadata import version

    from resumable_upload.client import TusClient

    def run() -> List[str]:
        # checksum=False: upclient runs without checksums too (its default
        # would add a SHA-1 of every chunk).
        client = TusClient(spec["url"], chunk_size=int(spec.get("chunk_size", 8 << 20)), checksum=False)
        parallel = int(spec.get("parallel", 1))
        return [client.upload_file(path, parallel_uploads=parallel) for path in spec["files"]]

    return run, f"resumable-upload {version('resumable-upload')}"


def _upclient_community(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    import upclient
    import upclient.backends.community  # noqa: F401  (imported before the clock, like the tus backend)
    import upclient.client  # noqa: F401
    import upclient.connections  # noqa: F401

    def run() -> List[str]:
        options: Dict[str, Any] = {}
        if spec.get("part_size") is not None:
            options["part_size"] = int(spec["part_size"])
        client = upclient.Client(
            "community+" + spec["url"],
            token=spec["token"],
            store=None,
            concurrency=int(spec.get("concurrency") or 4),
            **options,
        )
        try:
            urls = []
            for path in spec["files"]:
                result = client.put(path, category="general")
                if result.deduplicated:
                    raise RuntimeError(f"{path}: deduplicated by the server, no bytes sent")
                urls.append(result.url)
            return urls
        finally:
            client.close()

    return run, f"upclient {upclient.__version__}"


def _community_sdk(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    import asyncio
    from importlib.metadata import version

    import aiofiles  # noqa: F401  (the SDK's imports, before the clock)
    import aiohttp  # noqa: F401
    from community_uploader import CommunityUploader, UploadOptions

    token = spec["token"]

    async def upload_all() -> List[str]:
        kwargs: Dict[str, Any] = {}
        if spec.get("concurrency") is not None:
            kwargs["concurrency"] = int(spec["concurrency"])
        part_size = int(spec["part_size"]) if spec.get("part_size") is not None else None
        urls = []
        async with CommunityUploader(spec["url"], get_token=lambda: token, **kwargs) as uploader:
            for path in spec["files"]:
                result = await uploader.upload(path, options=UploadOptions(category="general", part_size=part_size))
                if result.deduplicated:
                    raise RuntimeError(f"{path}: deduplicated by the server, no bytes sent")
                urls.append(result.file.cdn_url or result.file.oss_url)
        return urls

    def run() -> List[str]:
        return asyncio.run(upload_all())

    return run, f"community-uploader {version('community-uploader')}"


def _upyun_sdk() -> Any:
    """The official SDK, made usable on Python >= 3.10 (see the comment)."""
    import collections
    import collections.abc

    # upyun 2.5.5's resumable upload (resume.py, UpYunResume.upload) checks its
    # progress reporter with isinstance(reporter, collections.Callable), an
    # alias Python 3.10 removed: without it every need_resume=True upload dies
    # with AttributeError right after its first part.  The alias restores it.
    if not hasattr(collections, "Callable"):
        collections.Callable = collections.abc.Callable  # type: ignore[attr-defined]
    import upyun

    return upyun


def _upclient_upyun(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    import upclient
    import upclient.backends.upyun  # noqa: F401  (imported before the clock, like the other backends)
    import upclient.backends.upyun.uploads  # noqa: F401  (the backend imports it on the first put)
    import upclient.client  # noqa: F401
    import upclient.connections  # noqa: F401

    def run() -> List[str]:
        options: Dict[str, Any] = {}
        if spec.get("part_size") is not None:
            options["part_size"] = int(spec["part_size"])
        if spec.get("concurrency") is not None:
            options["concurrency"] = int(spec["concurrency"])
        if spec.get("checksum") is not None:
            options["checksum"] = bool(spec["checksum"])
        client = upclient.Client(
            f"upyun://{spec['operator']}@{spec['service']}",
            password=spec["password"],
            endpoint=spec["url"],
            store=None,
            **options,
        )
        try:
            keys = []
            for path, key in zip(spec["files"], spec["keys"]):
                result = client.put(path, key=key)
                keys.append(result.key)
            return keys
        finally:
            client.close()

    return run, f"upclient {upclient.__version__}"


def _upyun_resume(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    from importlib.metadata import version

    upyun = _upyun_sdk()

    def run() -> List[str]:
        up = upyun.UpYun(spec["service"], username=spec["operator"], password=spec["password"], endpoint=spec["url"])
        keys = []
        for path, key in zip(spec["files"], spec["keys"]):
            with open(path, "rb") as f:
                up.put(key, f, need_resume=True)
            keys.append(key)
        return keys

    return run, f"upyun {version('upyun')} resume"


def _upyun_multi(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    from concurrent.futures import ThreadPoolExecutor
    from importlib.metadata import version

    upyun = _upyun_sdk()
    part_size = int(spec.get("part_size") or 16 << 20)
    threads = int(spec.get("threads") or 4)

    def run() -> List[str]:
        up = upyun.UpYun(spec["service"], username=spec["operator"], password=spec["password"], endpoint=spec["url"])
        keys = []
        for path, key in zip(spec["files"], spec["keys"]):
            size = os.path.getsize(path)
            m = up.init_multi_uploader(key, part_size=part_size, file_size=size)
            send_parts(m, path, size)
            m.complete()
            keys.append(key)
        return keys

    def send_parts(m: Any, path: str, size: int) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            def send(i: int) -> None:  # in a pool thread: read the part, send it
                m.upload(i, os.pread(fd, part_size, i * part_size))

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(send, range(max(1, -(-size // part_size)))))  # the first error is raised
        finally:
            os.close(fd)

    return run, f"upyun {version('upyun')} multi x{threads}"


def _fdfs_port(url: str) -> int:
    """The first tracker's port in ``fdfs://127.0.0.1:PORT[,...]``."""
    return int(url.split("://", 1)[1].split(",")[0].rpartition(":")[2])


def _upclient_fdfs(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    import upclient
    import upclient.backends.fdfs  # noqa: F401  (imported before the clock, like the other backends)
    import upclient.backends.fdfs.uploads  # noqa: F401
    import upclient.client  # noqa: F401

    def run() -> List[str]:
        options: Dict[str, Any] = {}
        if spec.get("part_size") is not None:
            options["part_size"] = int(spec["part_size"])
        if spec.get("max_files") is not None:
            options["max_files"] = int(spec["max_files"])
        client = upclient.Client(spec["url"], store=None, **options)
        try:
            if spec.get("mode") == "get":
                for file_id, dest in zip(spec["ids"], spec["dests"]):
                    client.get(file_id, dest)
                return list(spec["dests"])
            put_options: Dict[str, Any] = {}
            if spec.get("resumable") is not None:
                put_options["resumable"] = bool(spec["resumable"])
            files = spec["files"]
            if spec.get("many"):
                outcomes = client.put_many(files, **put_options)
                failed = [o for o in outcomes if not o.ok]
                if failed:
                    raise RuntimeError(f"{len(failed)} of {len(files)} uploads failed; first: {failed[0].error!r}")
                return [o.result.id for o in outcomes]
            return [client.put(path, **put_options).id for path in files]
        finally:
            client.close()

    return run, f"upclient {upclient.__version__}"


def _fdfs_sdk(spec: Dict[str, Any]) -> Tuple[Callable[[], List[str]], str]:
    from importlib.metadata import version

    from fastdfs_client import FastdfsClient

    trackers = {"host_tuple": ("127.0.0.1",), "port": _fdfs_port(spec["url"]), "timeout": 30,
                "name": "Tracker Pool"}

    def run() -> List[str]:
        sdk = FastdfsClient(trackers)
        try:
            if spec.get("mode") == "get":
                for file_id, dest in zip(spec["ids"], spec["dests"]):
                    sdk.download_to_file(dest, file_id)
                return list(spec["dests"])
            return [sdk.upload_by_filename(path)["Remote file_id"] for path in spec["files"]]
        finally:
            sdk.tracker_pool.destroy()

    return run, f"fastdfs-client {version('fastdfs-client')}"


CLIENTS = {
    "upclient": _upclient,
    "tuspy": _tuspy,
    "resumable-upload": _resumable_upload,
    "upclient-community": _upclient_community,
    "community-sdk": _community_sdk,
    "upclient-upyun": _upclient_upyun,
    "upyun-resume": _upyun_resume,
    "upyun-multi": _upyun_multi,
    "upclient-fdfs": _upclient_fdfs,
    "fdfs-sdk": _fdfs_sdk,
}


def _profiled(run: Callable[[], List[str]], path: str) -> List[str]:
    """``run()`` under cProfile, in this thread and every thread it starts; the merged stats go to ``path``.

    cProfile sees only the thread that enables it, and the clients send their
    parts from worker threads: a profile hook set with threading.setprofile
    starts one more profiler in each new thread, and the stats are added up.
    """
    import cProfile
    import pstats
    import threading

    profilers: List[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(frame: Any, event: str, arg: Any) -> None:
        prof = cProfile.Profile()
        with lock:
            profilers.append(prof)
        prof.enable()  # replaces this hook in this thread

    main_profiler = cProfile.Profile()
    threading.setprofile(start_in_thread)
    try:
        result = main_profiler.runcall(run)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(main_profiler)
    with lock:
        for prof in profilers:
            stats.add(prof)
    stats.dump_stats(path)
    return result


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    spec = json.loads(sys.argv[1])
    out: Dict[str, Any] = {"ok": False}
    try:
        run, label = CLIENTS[spec["client"]](spec)
        out["label"] = label
        out["rss_after_import_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = sum(os.path.getsize(p) for p in spec["files"])
        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        urls = _profiled(run, spec["profile"]) if spec.get("profile") else run()
        out["elapsed"] = time.perf_counter() - started
        out["cpu_upload"] = _cpu_seconds() - cpu_before
        out.update(ok=True, bytes=size, urls=urls)
    except BaseException as exc:  # reported to the harness, which decides
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()[-3000:]
    text = json.dumps(out) + "\n"
    if spec.get("result"):
        with open(spec["result"], "w") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
