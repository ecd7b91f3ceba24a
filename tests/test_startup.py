"""What ``import upclient`` and a first upload load: start-up CPU is what a cron job pays each run.

Each check runs a fresh interpreter and reads its ``sys.modules``: a module
that is not imported costs nothing, whatever the machine's load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]

#: Loaded by no upload over plain HTTP without a proxy or netrc: requests
#: (such a request goes straight to urllib3), retries (tenacity, on the first
#: retry only), the default store's directory (platformdirs), redis-py, the
#: other backends, the command line, the integrations and the emulators.
NEVER_ON_AN_UPLOAD = [
    "tenacity",
    "requests",
    "platformdirs",
    "redis",
    "upclient.backends.upyun",
    "upclient.backends.community",
    "upclient.backends.fdfs",
    "upclient.upyun",
    "upclient.cli",
    "upclient.sync",
    "upclient.contrib",
    "upclient.testing",
    "upclient.redis_store",
]

#: ``import upclient`` alone loads none of these either: the client, its
#: transport and the HTTP libraries come with the first ``upclient.Client``.
NOT_ON_IMPORT = NEVER_ON_AN_UPLOAD + [
    "upclient.client",
    "upclient.transport",
    "upclient.backends",
    "upclient.settings",
    "upclient.store",
    "requests",
    "urllib3",
]

_PROBE = """
import json, sys
def loaded(names):
    return sorted(n for n in names if n in sys.modules or any(m.startswith(n + ".") for m in sys.modules))
names = json.loads(sys.argv[1])
import upclient
out = {"import": loaded(names)}
if len(sys.argv) > 2:
    with upclient.Client(sys.argv[2], store=None, checksum=False) as client:
        results = [client.put(sys.argv[3])] + [o.result for o in client.put_many([sys.argv[3]] * 3)]
        out["urls"] = [r.url for r in results]
        out["ids"] = [r.id for r in results]
    out["upload"] = loaded(names)
print(json.dumps(out))
"""


def _probe(names: List[str], *args: str, home: str = "") -> Dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "NETRC"}
    env["PYTHONPATH"] = str(REPO)
    if home:  # no ~/.netrc
        env["HOME"] = home
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(names), *args], env=env, cwd=str(REPO),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out: Dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return out


def test_import_upclient_loads_no_client_transport_or_http_library():
    assert _probe(NOT_ON_IMPORT)["import"] == []


def test_an_upload_and_put_many_load_no_requests_retry_library_store_directory_or_other_backend(
    rus_server, make_file, tmp_path
):
    path, digest = make_file(64 * 1024 + 3)
    (tmp_path / "home").mkdir()
    out = _probe(NEVER_ON_AN_UPLOAD, "tus+" + rus_server.url, str(path), home=str(tmp_path / "home"))
    assert out["upload"] == []
    urls = out["urls"]
    assert len(set(urls)) == 4  # type: ignore[arg-type]
    for url in urls:  # type: ignore[attr-defined]
        assert rus_server.stored_sha256(url) == digest


#: A FastDFS client speaks its own protocol over sockets: no HTTP library, no TLS.
NOT_FOR_FASTDFS = NEVER_ON_AN_UPLOAD[:] + ["urllib3", "upclient.connections", "ssl", "http.client"]
NOT_FOR_FASTDFS.remove("upclient.backends.fdfs")


def test_a_fastdfs_upload_loads_no_http_library(tmp_path, make_file):
    from upclient.testing import FdfsServer

    path, digest = make_file(64 * 1024 + 3)
    (tmp_path / "home").mkdir()
    with FdfsServer(tmp_path / "fdfs") as server:
        out = _probe(NOT_FOR_FASTDFS, server.url, str(path), home=str(tmp_path / "home"))
        ids = out["ids"]
        assert len(set(ids)) == 4  # type: ignore[arg-type]
        for file_id in ids:  # type: ignore[attr-defined]
            assert server.stored_sha256(file_id) == digest
    assert out["upload"] == []


def test_backend_class_still_names_every_scheme_s_backend():
    from upclient.backends import backend_class

    assert backend_class("tus+https://h/files/").__name__ == "TusBackend"  # type: ignore[union-attr]
    assert backend_class("upyun://op@svc").__name__ == "UpyunBackend"  # type: ignore[union-attr]
    assert backend_class("community+http://h").__name__ == "CommunityBackend"  # type: ignore[union-attr]
    assert backend_class("fdfs://h:22122").__name__ == "FdfsBackend"  # type: ignore[union-attr]
    assert backend_class("nope://h") is None

