"""Conformance: the official UPYUN SDK (``upyun`` 2.5.5) runs unchanged against the emulator.

Every upload is checked byte for byte on the server side. The SDK's
hard-coded hosts (``purge.upyun.com``, ``p0.api.upyun.com``) reach the
emulator through its requests session's proxy setting: the emulator serves
absolute-form request targets by their path. The SDK signs every request
itself, so its signatures are a third implementation the emulator's own
signature code must agree with (REST, FORM, purge and callbacks).
"""

from __future__ import annotations

import collections
import collections.abc
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest
import upyun
from upyun.modules.exception import UpYunClientException, UpYunServiceException
from upyun.resume import MemoryStore

from tests.test_upyun_emulator import Receiver
from upclient.testing.upyun import LIST_END, UpyunServer

KiB = 1024
MiB = 1024 * KiB
SVC, OP, PW = "sdksvc", "sdkop", "sdk-secret"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UpyunServer]:
    with UpyunServer(tmp_path / "upyun", service=SVC, operator=OP, password=PW) as srv:
        yield srv


@pytest.fixture
def up(server: UpyunServer) -> Iterator[upyun.UpYun]:
    client = upyun.UpYun(SVC, username=OP, password=PW, endpoint=server.endpoint, timeout=30)
    yield client
    client.hp.session.close()


@pytest.fixture
def resumable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK's resume path tests its reporter with ``collections.Callable``, an
    # alias removed in Python 3.10; put it back for the duration of the test.
    monkeypatch.setattr(collections, "Callable", collections.abc.Callable, raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def source(tmp_path: Path, size: int, name: str = "source.bin") -> Tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def service_error(exc: pytest.ExceptionInfo) -> Tuple[int, int, str]:
    err = exc.value
    assert isinstance(err, UpYunServiceException)
    body = json.loads(err.err)
    return err.status, body["code"], body["msg"]


# ------------------------------------------------------------------- REST


def test_put_bytes_and_files_with_checksum_and_headers(server: UpyunServer, up: upyun.UpYun, tmp_path: Path) -> None:
    data = os.urandom(70 * KiB)
    answer = up.put("/sdk/a.bin", data, checksum=True, headers={"x-upyun-meta-who": "sdk", "Content-Type": "x/y"})
    assert answer["etag"] == f'"{md5(data)}"'
    assert server.stored_sha256("sdk/a.bin") == sha256(data)
    meta = server.metadata("sdk/a.bin")
    assert (meta["content_type"], meta["meta"], meta["md5"]) == ("x/y", {"x-upyun-meta-who": "sdk"}, md5(data))
    path, content = source(tmp_path, 300 * KiB)
    with open(path, "rb") as f:
        up.put("/sdk/file.bin", f, checksum=True, secret="s3cret")
    assert server.stored_sha256("sdk/file.bin") == sha256(content)
    assert server.metadata("sdk/file.bin")["secret"] == "s3cret"
    up.put("/sdk/text.txt", "text, not bytes")
    assert server.stored_bytes("sdk/text.txt") == b"text, not bytes"
    assert server.metadata("sdk/text.txt")["content_type"] == "text/plain"


def test_get_to_a_file_object_and_getinfo(server: UpyunServer, up: upyun.UpYun) -> None:
    data = os.urandom(200 * KiB)
    up.put("/g/data.bin", data, headers={"x-upyun-meta-n": "7"})
    out = io.BytesIO()
    up.get("/g/data.bin", out)
    assert out.getvalue() == data
    up.put("/g/small.txt", b"small")
    assert up.get("/g/small.txt") == "small"
    info = up.getinfo("/g/data.bin")
    assert info["file-type"] == "file" and info["file-size"] == str(len(data))
    assert info["content-md5"] == md5(data) and info["meta-n"] == "7"
    assert info["file-date"] == str(int(server.metadata("g/data.bin")["mtime"]))
    assert up.getinfo("/g")["file-type"] == "folder"
    with pytest.raises(UpYunServiceException) as exc:
        up.getinfo("/g/missing")
    assert exc.value.status == 404


def test_lists_paged_with_iter_and_streamed(server: UpyunServer, up: upyun.UpYun) -> None:
    names = [f"f{i}.txt" for i in range(5)]
    for name in names:
        up.put(f"/l/{name}", name.encode())
    up.mkdir("/l/sub")
    listed = up.getlist("/l")
    assert [e["name"] for e in listed] == names + ["sub"]
    assert listed[0] == {
        "name": "f0.txt", "type": "N", "size": "6", "time": str(int(server.metadata("l/f0.txt")["mtime"]))
    }  # fmt: skip
    assert listed[-1]["type"] == "F"
    assert up.getlist("/l/sub") == []
    seen: List[str] = []
    begin = None
    while True:
        page = up.get_list_with_iter("/l", limit=2, begin=begin)
        seen += [e["name"] for e in page["files"]]
        begin = page["iter"]
        if begin == LIST_END:
            break
    assert seen == names + ["sub"]
    assert [e["name"] for e in up.getlist("/l", order="desc", limit=2)] == ["sub", "f4.txt"]
    assert [e["name"] for e in up.iterlist("/l")] == names + ["sub"]
    assert [e["name"] for e in up.getlist("/")] == ["l"]


def test_mkdir_delete_move_copy_usage(server: UpyunServer, up: upyun.UpYun) -> None:
    up.mkdir("/d1/d2")
    assert server.stored_path("d1/d2").is_dir()
    with pytest.raises(UpYunServiceException) as exc:
        up.mkdir("/d1/d2")
    assert service_error(exc) == (406, 40600002, "folder already exists")
    data = os.urandom(4000)
    up.put("/d1/d2/x.bin", data)
    with pytest.raises(UpYunServiceException) as exc:
        up.delete("/d1/d2")
    assert service_error(exc)[1] == 40300005
    up.copy("/d1/d2/x.bin", "/copy.bin")
    up.move("/d1/d2/x.bin", "/moved/x.bin")
    assert not server.exists("d1/d2/x.bin")
    assert server.stored_sha256("copy.bin") == server.stored_sha256("moved/x.bin") == sha256(data)
    assert up.usage() == str(2 * len(data))
    up.delete("/d1/d2")
    up.delete("/copy.bin")
    assert not server.exists("d1/d2") and not server.exists("copy.bin")
    assert up.usage() == str(len(data))


def test_sdk_errors_carry_the_service_codes(server: UpyunServer) -> None:
    wrong = upyun.UpYun(SVC, username=OP, password="not it", endpoint=server.endpoint, timeout=30)
    with pytest.raises(UpYunServiceException) as exc:
        wrong.getlist("/")
    assert service_error(exc) == (401, 40100005, "signature error")
    assert exc.value.request_id == json.loads(exc.value.err)["id"]
    stranger = upyun.UpYun("nosuch", username=OP, password=PW, endpoint=server.endpoint, timeout=30)
    with pytest.raises(UpYunServiceException) as exc:
        stranger.usage()
    assert service_error(exc)[1] == 40100012


# ------------------------------------------------------------------- FORM


def test_form_upload(server: UpyunServer, up: upyun.UpYun, tmp_path: Path) -> None:
    path, data = source(tmp_path, 150 * KiB, "photo.jpg")
    with open(path, "rb") as f:
        answer = up.put(
            "/form/{filename}-{filemd5}{.suffix}", f, form=True,
            **{"content-length-range": f"1,{len(data)}", "x-upyun-meta-via": "form"},
        )  # fmt: skip
    assert answer["code"] == 200 and answer["message"] == "ok"
    assert answer["url"] == f"/form/photo-{md5(data)}.jpg"
    assert server.stored_sha256(answer["url"]) == sha256(data)
    assert server.metadata(answer["url"])["meta"] == {"x-upyun-meta-via": "form"}
    with open(path, "rb") as f, pytest.raises(UpYunServiceException) as exc:
        up.put("/form/small.jpg", f, form=True, **{"content-length-range": "0,10"})
    assert service_error(exc) == (403, 40300009, "file too large")
    assert not server.exists("form/small.jpg")


def test_the_sdk_verifies_a_callback_the_emulator_signed(
    server: UpyunServer, up: upyun.UpYun, tmp_path: Path, receiver: Receiver
) -> None:
    path, data = source(tmp_path, 10 * KiB, "n.txt")
    with open(path, "rb") as f:
        answer = up.put("/notified.txt", f, form=True, **{"notify-url": receiver.url + "/upyun/notify"})
    assert server.stored_sha256("notified.txt") == sha256(data)
    assert server.wait_callbacks(30)
    [got] = receiver.got
    headers = got["headers"]
    assert json.loads(json.dumps(answer))["url"] == "/notified.txt"
    assert up.verify_signature(headers["Authorization"], got["path"], headers)
    assert not up.verify_signature(headers["Authorization"], "/elsewhere", headers)
    forged = dict(headers, **{"Content-MD5": md5(b"another body")})
    assert not up.verify_signature(headers["Authorization"], got["path"], forged)


# -------------------------------------------------------------- resumable


def test_resume_upload(server: UpyunServer, up: upyun.UpYun, tmp_path: Path, resumable: None) -> None:
    path, data = source(tmp_path, 3 * MiB + 300 * KiB)
    with open(path, "rb") as f:
        up.put("/big/resume.bin", f, need_resume=True, part_size=MiB, store=MemoryStore(),
               headers={"x-upyun-meta-kind": "resume"})  # fmt: skip
    assert server.stored_sha256("big/resume.bin") == sha256(data)
    assert server.metadata("big/resume.bin")["meta"] == {"x-upyun-meta-kind": "resume"}
    assert server.part_receipts() == {0: 1, 1: 1, 2: 1, 3: 1}
    counts = server.requests
    assert (counts["initiate"], counts["part"], counts["complete"]) == (1, 4, 1)
    assert server.uploads() == {}


def test_resume_upload_with_checksums(server: UpyunServer, up: upyun.UpYun, tmp_path: Path, resumable: None) -> None:
    path, data = source(tmp_path, 2 * MiB + 1)
    with open(path, "rb") as f:
        up.put("/big/sums.bin", f, need_resume=True, part_size=MiB, checksum=True, store=MemoryStore())
    assert server.stored_sha256("big/sums.bin") == sha256(data)
    assert server.part_receipts() == {0: 1, 1: 1, 2: 1}
    # a file of one part goes in one request: initiate, upload and complete
    path, data = source(tmp_path, 100 * KiB, "one.bin")
    server.reset_counters()
    with open(path, "rb") as f:
        up.put("/big/one.bin", f, need_resume=True, checksum=True, store=MemoryStore())
    assert server.stored_sha256("big/one.bin") == sha256(data)
    assert server.requests == {"initiate": 1, "part": 1, "complete": 1}


@pytest.mark.parametrize("status", [503, 0], ids=["503", "dropped"])
def test_resume_after_a_failure_resends_only_the_part_in_flight(
    server: UpyunServer, up: upyun.UpYun, tmp_path: Path, resumable: None, status: int
) -> None:
    path, data = source(tmp_path, 4 * MiB + 10)
    store = MemoryStore()
    server.fail("part", status=status, part_id=2)
    with open(path, "rb") as f, pytest.raises((UpYunServiceException, UpYunClientException)):
        up.put("/big/again.bin", f, need_resume=True, part_size=MiB, store=store)
    [(upload, state)] = server.uploads().items()
    assert state["parts"] == [0, 1] and state["next_part_id"] == 2
    assert not server.exists("big/again.bin")
    with open(path, "rb") as f:
        up.put("/big/again.bin", f, need_resume=True, part_size=MiB, store=store)
    assert server.stored_sha256("big/again.bin") == sha256(data)
    assert server.part_receipts(upload) == {0: 1, 1: 1, 2: 2, 3: 1, 4: 1}
    assert server.requests["initiate"] == 1


def test_a_lost_final_answer_ends_in_file_already_upload(
    server: UpyunServer, up: upyun.UpYun, tmp_path: Path, resumable: None
) -> None:
    path, data = source(tmp_path, 2 * MiB + 5)
    store = MemoryStore()
    server.fail("complete", status=0, commit=True)  # the last part and the complete happen; the answer is lost
    with open(path, "rb") as f, pytest.raises(UpYunClientException):
        up.put("/big/lost.bin", f, need_resume=True, part_size=MiB, store=store)
    assert server.stored_sha256("big/lost.bin") == sha256(data)
    with open(path, "rb") as f:
        up.put("/big/lost.bin", f, need_resume=True, part_size=MiB, store=store)  # "file already upload": done
    assert server.stored_sha256("big/lost.bin") == sha256(data)
    assert server.part_receipts() == {0: 1, 1: 1, 2: 2}  # the last part was in flight: sent twice


def test_multi_uploader_parts_out_of_order_and_cancel(server: UpyunServer, up: upyun.UpYun) -> None:
    data = os.urandom(2 * MiB + 77)
    parts = [data[i : i + MiB] for i in range(0, len(data), MiB)]
    uploader = up.init_multi_uploader("/multi/out.bin", part_size=MiB, file_size=len(data))
    for i in (2, 0, 1):
        uploader.upload(i, parts[i])
    answer = uploader.complete(multi_md5=md5(data))
    assert answer["multi-length"] == str(len(data))
    assert server.stored_sha256("multi/out.bin") == sha256(data)
    assert server.part_receipts(uploader.uuid) == {0: 1, 1: 1, 2: 1}
    doomed = up.init_multi_uploader("/multi/doomed.bin", part_size=MiB, file_size=len(data))
    doomed.upload(1, parts[1])
    assert server.uploads()[doomed.uuid]["parts"] == [1]
    doomed.cancel()
    assert server.uploads() == {} and not server.exists("multi/doomed.bin")
    bad = up.init_multi_uploader("/multi/bad.bin", part_size=MiB, file_size=len(parts[2]))
    bad.upload(0, parts[2])
    with pytest.raises(UpYunServiceException) as exc:
        bad.complete(multi_md5=md5(b"wrong"))
    assert service_error(exc) == (400, 40011060, "file md5 not match")


# ------------------------------------------------- purge and tasks (fixed hosts)


def test_purge_through_the_proxy_setting(server: UpyunServer, up: upyun.UpYun) -> None:
    up.hp.session.proxies = {"http": server.url}
    assert up.purge(["a.png", "/dir/b.png"]) == []
    assert server.purged == [f"http://{SVC}.b0.upaiyun.com/a.png", f"http://{SVC}.b0.upaiyun.com/dir/b.png"]
    # the SDK cuts "http://<domain>" off the invalid URLs, leaving the path
    assert up.purge("c.png", domain="not-ours.example.com") == ["/c.png"]
    assert server.request_count("purge") == 2


def test_pretreat_and_status_through_the_proxy_setting(server: UpyunServer, up: upyun.UpYun) -> None:
    up.hp.session.proxies = {"http": server.url}
    up.put("/video.mp4", b"not a video")
    tasks = [{"type": "video", "avopts": "/s/240p", "save_as": "/out/240.mp4"}, {"type": "thumbnail"}]
    ids = up.pretreat(tasks, "/video.mp4", notify_url="")
    assert len(ids) == 2 and ids == list(server.tasks())
    assert [server.tasks()[i]["task"] for i in ids] == tasks
    progress = up.status(ids)
    assert set(progress) == set(ids) and all(0 <= p <= 100 for p in progress.values())
    server.advance(server.task_duration)
    assert up.status(ids) == {ids[0]: 100, ids[1]: 100}
    assert up.status(ids + ["0" * 32])["0" * 32] is None
