"""One benchmark run of one Python client, in its own process.

``python bench/worker.py '<json spec>'`` uploads the spec's files with the
named client and writes one JSON line (to ``result``, else stdout): the wall
time of the uploads (client construction to close; every module a client
needs is imported before the clock starts, for every client), the bytes,
the upload URLs, and the peak RSS the process had reached after its imports
(so the harness can tell the interpreter's own share from the upload's).
The harness (``bench/run.py``) measures the process's real peak RSS.

Spec keys: ``client`` (``upclient``, ``tuspy``, ``resumable-upload``;
``upclient-community``, ``community-sdk`` for the community emulator),
``url`` (the tus creation URL, ``http://...``; the community base URL),
``token`` (community bearer token), ``files`` (paths),
``result`` (where to write the JSON result; stdout if absent), and per
client: ``part_size``, ``concurrency``, ``max_files``, ``concat``
(upclient); ``chunk_size`` (tuspy, resumable-upload); ``parallel``
(resumable-upload's ``parallel_uploads``); ``part_size``, ``concurrency``
(upclient-community, community-sdk: ``None`` or absent is the client's own
default). A community upload answered as deduplicated is an error: the
harness makes every file fresh so each run moves the bytes.
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
    import upclient.backends.tus  # noqa: F401  (Client() would import it, with requests, inside the timing)

    def run() -> List[str]:
        options: Dict[str, Any] = {}
        if spec.get("concat") is not None:
            options["concat"] = bool(spec["concat"])
        if spec.get("part_size") is not None:  # else the client's default
            options["part_size"] = int(spec["part_size"])
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


CLIENTS = {
    "upclient": _upclient,
    "tuspy": _tuspy,
    "resumable-upload": _resumable_upload,
    "upclient-community": _upclient_community,
    "community-sdk": _community_sdk,
}


def main() -> int:
    spec = json.loads(sys.argv[1])
    out: Dict[str, Any] = {"ok": False}
    try:
        run, label = CLIENTS[spec["client"]](spec)
        out["label"] = label
        out["rss_after_import_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = sum(os.path.getsize(p) for p in spec["files"])
        started = time.perf_counter()
        urls = run()
        out["elapsed"] = time.perf_counter() - started
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
