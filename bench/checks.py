"""What the servers hold after each run: the checks that make a run count, and the clean-up between runs."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import ssl
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from bench.scenarios import MiB, UPYUN_OPERATOR, UPYUN_PASSWORD, UPYUN_SERVICE

def verify(urls: List[str], size: int, count: int, tus: bool = True, ca: Optional[str] = None) -> Tuple[bool, str]:
    """HEAD every upload: the server must hold all ``size`` bytes of each.

    tus: Upload-Offset; community (``tus=False``): the file URL's Content-Length.
    ``https://`` URLs are checked over TLS, trusting ``ca`` (a CA bundle).
    """
    if len(urls) != count:
        return False, f"{len(urls)} upload URLs for {count} files"
    conns: Dict[str, http.client.HTTPConnection] = {}
    try:
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            conn = conns.get(parts.netloc)
            if conn is None:
                host = parts.hostname or ""
                if parts.scheme == "https":
                    context = ssl.create_default_context(cafile=ca)
                    conn = http.client.HTTPSConnection(host, parts.port, timeout=30, context=context)
                else:
                    conn = http.client.HTTPConnection(host, parts.port, timeout=30)
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
