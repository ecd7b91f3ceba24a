"""upclient and the official UPYUN SDK (``upyun`` 2.5.5) on the same emulator:
what one stores the other reads and lists, an upload one begins the other
finishes, and each accepts the other's signatures."""

from __future__ import annotations

import collections
import collections.abc
import hashlib
import io
import threading

import pytest

import upclient
from upclient import errors
from upclient.backends.upyun import signing
from upclient.testing import UpyunServer

from .conftest import MiB, sha256_bytes
from .contract import HookedFileSource

upyun = pytest.importorskip("upyun")
from upyun.multi import UpYunMultiUploader  # noqa: E402 - after the skip

PASSWORD = "cross-pa55"


@pytest.fixture(autouse=True)
def sdk_on_python_3_10(monkeypatch):
    # The SDK's resume path checks ``isinstance(x, collections.Callable)``, a
    # name removed in Python 3.10; without it every resumable put fails there.
    monkeypatch.setattr(collections, "Callable", collections.abc.Callable, raising=False)


@pytest.fixture
def server(tmp_path):
    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password=PASSWORD) as srv:
        yield srv


@pytest.fixture
def sdk(server):
    return upyun.UpYun("svc", username="op", password=PASSWORD, endpoint=server.endpoint, timeout=30)


@pytest.fixture
def client(server):
    with upclient.Client("upyun://op@svc", password=PASSWORD, endpoint=server.endpoint, store=None,
                         part_size=MiB) as c:
        yield c


def test_what_the_sdk_stores_upclient_reads_and_lists(sdk, client, make_file):
    small, small_digest = make_file(1000)
    big, big_digest = make_file(3 * MiB + 11)
    with open(small, "rb") as f:
        sdk.put("/sdk/small.bin", f, checksum=True, headers={"x-upyun-meta-by": "sdk"})
    with open(big, "rb") as f:
        sdk.put("/sdk/big.bin", f, need_resume=True, part_size=MiB)
    assert sha256_bytes(client.get("sdk/small.bin")) == small_digest
    assert sha256_bytes(client.get("sdk/big.bin")) == big_digest
    assert client.get("sdk/big.bin", offset=MiB, length=5) == big.read_bytes()[MiB:MiB + 5]
    assert client.info("sdk/small.bin").metadata == {"by": "sdk"}
    assert sorted((e.id, e.size) for e in client.iter("sdk/")) == [
        ("sdk/big.bin", 3 * MiB + 11), ("sdk/small.bin", 1000)]


def test_what_upclient_stores_the_sdk_reads_and_lists(sdk, client, make_file):
    path, digest = make_file(4 * MiB + 3)
    client.put(path, key="up/file.bin", metadata={"by": "upclient"})
    client.put(b"form bytes", key="up/form.txt", form=True)
    out = io.BytesIO()
    sdk.get("/up/file.bin", out)
    assert sha256_bytes(out.getvalue()) == digest
    info = sdk.getinfo("/up/file.bin")
    assert int(info["file-size"]) == 4 * MiB + 3 and info["file-type"] == "file"
    names = sorted(e["name"] for e in sdk.getlist("/up/"))
    assert names == ["file.bin", "form.txt"]
    assert sdk.get("/up/form.txt") == "form bytes"


def test_an_upload_the_sdk_began_upclient_finishes(sdk, client, server, make_file):
    path, digest = make_file(4 * MiB + 100)
    data = path.read_bytes()
    multi = sdk.init_multi_uploader("/half/sdk.bin", part_size=MiB, file_size=len(data))
    multi.upload(0, data[:MiB])
    multi.upload(2, data[2 * MiB:3 * MiB])
    result = client.put(path, key="half/sdk.bin", uuid=multi.uuid)
    assert server.stored_sha256("half/sdk.bin") == digest
    assert result.sent_bytes == len(data) - 2 * MiB  # parts 0 and 2 were on the server


def test_an_upload_upclient_began_the_sdk_finishes(sdk, server, make_file, store):
    size = 5 * MiB + 9
    path, digest = make_file(size)
    data = path.read_bytes()
    cancel = threading.Event()
    with upclient.Client("upyun://op@svc", password=PASSWORD, endpoint=server.endpoint, store=store,
                         part_size=MiB, concurrency=1) as c:
        with HookedFileSource(path, lambda off: cancel.set() if off >= 2 * MiB else None) as src:
            with pytest.raises(errors.Cancelled):
                c.put(src, key="half/up.bin", cancel=cancel)
    (record,) = [store.load(k) for k in store.keys() if not k.startswith("digest-")]
    state = record["state"]
    # the SDK's uploader, attached to upclient's upload instead of starting its own
    multi = object.__new__(UpYunMultiUploader)
    multi.rest, multi.key, multi.uuid = sdk.up_rest, "/half/up.bin", state["uuid"]
    for i in range(6):
        if i not in state["done"]:
            multi.upload(i, data[i * MiB:(i + 1) * MiB])
    multi.complete(hashlib.md5(data).hexdigest())
    assert server.stored_sha256("half/up.bin") == digest


def test_signatures_are_accepted_both_ways(sdk):
    body = b"code=200&message=ok&url=%2Fa.jpg"
    date = signing.http_date()
    md5 = hashlib.md5(body).hexdigest()
    ours = signing.authorization("op", signing.password_md5(PASSWORD), "POST", "/notify", date, None, md5)
    assert sdk.verify_signature(ours, "/notify", {"Date": date, "Content-MD5": md5})
    theirs = upyun.modules.sign.make_signature(username="op", password=signing.password_md5(PASSWORD),
                                               method="POST", uri="/notify", date=date, content_md5=md5)
    headers = {"Date": date, "Content-MD5": md5, "Authorization": theirs}
    assert upclient.upyun.verify_callback(headers, "/notify", "op", PASSWORD, body=body)
    assert not upclient.upyun.verify_callback(headers, "/notify", "op", "other", body=body)
    assert not sdk.verify_signature(ours.replace("op:", "op:x"), "/notify", {"Date": date, "Content-MD5": md5})
