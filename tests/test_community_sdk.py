"""Conformance: the official async SDK ``community-uploader`` 1.0.1 against the emulator.

The SDK is used unchanged (it needs aiohttp and aiofiles); every check of
what arrived is made on the server side (``stored_sha256``, counters, part
log).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, List, Set, Tuple, TypeVar

import pytest

from upclient.testing.community import CODE_BAD_CATEGORY, CODE_USER_REQUIRED, CommunityServer

cu = pytest.importorskip("community_uploader", reason="pip install community-uploader==1.0.1 aiohttp aiofiles")
from community_uploader import (  # noqa: E402
    AbortError,
    AuthError,
    CommunityUploader,
    ListFilesParams,
    UploadError,
    UploadOptions,
)

KiB = 1024
PART = 64 * KiB
TOKEN = "sdk-token"
API_KEY = "sdk-key"

T = TypeVar("T")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CommunityServer]:
    with CommunityServer(
        tmp_path / "community",
        tokens={TOKEN: "alice", "other-token": "bob"},
        api_keys={API_KEY},
        default_part_size=PART,
        min_part_size=16 * KiB,
    ) as srv:
        yield srv


def make_data(size: int) -> bytes:
    return os.urandom(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def uploader(server: CommunityServer, **kwargs: Any) -> CommunityUploader:
    kwargs.setdefault("retry_delay", 0.01)
    kwargs.setdefault("timeout", 30.0)
    if "api_key" not in kwargs and "get_token" not in kwargs:
        kwargs["get_token"] = lambda: TOKEN
    return CommunityUploader(server.url, **kwargs)


def run(server: CommunityServer, body: Callable[[CommunityUploader], Awaitable[T]], **kwargs: Any) -> T:
    """Run ``body(uploader)`` in a fresh event loop with a fresh SDK client, closed afterwards."""

    async def main() -> T:
        async with uploader(server, **kwargs) as client:
            return await body(client)

    return asyncio.run(main())


def parts_put(server: CommunityServer, file_id: str, status: int = 200) -> List[int]:
    return [n for fid, n, s in server.part_log if fid == file_id and s == status]


# ------------------------------------------------------------------ upload


def test_upload_path_with_token(server: CommunityServer, tmp_path: Path) -> None:
    data = make_data(10 * PART + 4321)
    path = tmp_path / "Clip.MP4"
    path.write_bytes(data)
    progress: List[float] = []
    logs: List[str] = []

    result = run(
        server,
        lambda c: c.upload(path, options=UploadOptions(category="video", on_progress=progress.append)),
        on_log=logs.append,
    )
    assert not result.deduplicated
    info = result.file
    assert info.status == "confirmed" and info.category == "video"
    assert (info.file_ext, info.file_type, info.file_size) == ("mp4", "video/mp4", len(data))
    assert info.file_md5 == hashlib.md5(data).hexdigest() and info.user_id == "alice"
    assert re.fullmatch(r"community/videos/\d{4}/\d{2}/[0-9a-f]{32}\.mp4", info.file_key)
    assert server.stored_sha256(info.id) == sha256(data)
    assert sorted(parts_put(server, info.id)) == list(range(1, 12))
    assert server.requests == {"init": 1, "part": 11, "complete": 1}
    assert progress[0] == 0 and progress[-1] == 100 and len(progress) == 12
    assert any("11" in line for line in logs)  # "新上传: 共 11 个分片"


def test_upload_bytes_and_file_objects(server: CommunityServer) -> None:
    # bytes: the SDK slices data[start:end], so this checks that "end" is exclusive.
    data = make_data(3 * PART + 1)
    result = run(server, lambda c: c.upload(data))
    assert result.file.file_ext == "" and result.file.file_key.endswith(result.file.id)
    assert server.stored_sha256(result.file.id) == sha256(data)

    other = make_data(2 * PART + 17)
    handle = io.BytesIO(other)
    result = run(server, lambda c: c.upload(handle, file_name="notes.TXT", options=UploadOptions(category="document")))
    assert (result.file.file_ext, result.file.file_type) == ("txt", "text/plain")
    assert server.stored_sha256(result.file.id) == sha256(other)


def test_upload_empty_file(server: CommunityServer) -> None:
    result = run(server, lambda c: c.upload(b"", file_name="empty.bin"))
    assert result.file.status == "confirmed" and result.file.file_size == 0
    assert server.stored_path(result.file.id).read_bytes() == b""


def test_token_callables_and_part_size(server: CommunityServer) -> None:
    async def get_token() -> str:
        return "Bearer " + TOKEN  # already prefixed: sent as is

    data = make_data(100 * KiB)
    result = run(server, lambda c: c.upload(data, options=UploadOptions(part_size=40 * KiB)), get_token=get_token)
    assert sorted(parts_put(server, result.file.id)) == [1, 2, 3]
    assert server.stored_sha256(result.file.id) == sha256(data)


def test_upload_with_api_key(server: CommunityServer) -> None:
    data = make_data(2 * PART + 5)
    options = UploadOptions(category="image", metadata={"source": "svc"})
    result = run(
        server,
        lambda c: c.upload(data, file_name="a.png", options=options),
        api_key=API_KEY,
        user_id="svc-user",
        org_id="org-9",
    )
    info = result.file
    assert (info.user_id, info.org_id, info.status) == ("svc-user", "org-9", "confirmed")
    assert info.extra_metadata == {"source": "svc"}
    assert server.stored_sha256(info.id) == sha256(data)


def test_api_key_with_user_only_in_options_fails_at_complete(server: CommunityServer) -> None:
    """An SDK quirk: complete sends the client's user_id, never UploadOptions.user_id."""
    data = make_data(PART)
    with pytest.raises(UploadError) as caught:
        run(server, lambda c: c.upload(data, options=UploadOptions(user_id="svc-user")), api_key=API_KEY)
    assert caught.value.code == CODE_USER_REQUIRED
    assert server.requests == {"init": 1, "part": 1, "complete": 1}


def test_auth_and_business_errors(server: CommunityServer) -> None:
    with pytest.raises(AuthError) as auth:
        run(server, lambda c: c.upload(b"x"), get_token=lambda: "nope")
    assert auth.value.code == 401
    with pytest.raises(UploadError) as bad:
        run(server, lambda c: c.upload(b"x", options=UploadOptions(category="music")))
    assert bad.value.code == CODE_BAD_CATEGORY
    assert server.request_count("part") == 0


# ------------------------------------------------------- dedup and resume


def test_dedup_instant_upload(server: CommunityServer) -> None:
    data = make_data(4 * PART)
    first = run(server, lambda c: c.upload(data, file_name="a.bin"))
    puts = server.part_puts
    second = run(server, lambda c: c.upload(data, file_name="copy.bin"), get_token=lambda: "other-token")
    assert second.deduplicated and second.file.id == first.file.id
    assert second.file.status == "confirmed" and second.file.oss_url == first.file.oss_url
    assert server.part_puts == puts
    assert server.requests == {"init": 2, "part": 4, "complete": 1}


def resume(server: CommunityServer, data: bytes) -> Tuple[str, Set[int]]:
    """After an interrupted upload of ``data``: upload it again and check only missing parts are sent.

    Returns the file id and the parts the server held before.
    """
    assert server.wait_idle(10, disconnected=True)
    (file_id,) = server.file_ids()
    stored = set(server.uploaded_parts(file_id))
    server.clear_faults()
    server.reset_counters()
    logs: List[str] = []
    result = run(server, lambda c: c.upload(data, file_name="big.bin"), on_log=logs.append)
    assert not result.deduplicated and result.file.id == file_id
    total = -(-len(data) // PART)
    assert sorted(parts_put(server, file_id)) == sorted(set(range(1, total + 1)) - stored)
    assert server.request_count("part") == total - len(stored)
    assert any(line.startswith("断点续传") for line in logs), logs  # the SDK saw status "resuming"
    assert server.stored_sha256(file_id) == sha256(data)
    return file_id, stored


def test_resume_after_part_failures(server: CommunityServer) -> None:
    data = make_data(16 * PART + 999)  # 17 parts
    server.fail_part(17, status=500, times=None)  # the SDK does not retry HTTP errors
    with pytest.raises(UploadError) as caught:
        run(server, lambda c: c.upload(data, file_name="big.bin"))
    assert "500" in str(caught.value)
    file_id, stored = resume(server, data)
    assert 17 not in stored and len(stored) >= 13


def test_resume_after_cancel(server: CommunityServer) -> None:
    data = make_data(12 * PART)

    async def body(client: CommunityUploader) -> Any:
        def on_progress(percent: float) -> None:
            if percent >= 40:
                client.cancel()  # stops scheduling parts; those under way finish

        return await client.upload(data, file_name="big.bin", options=UploadOptions(on_progress=on_progress))

    with pytest.raises(AbortError):
        run(server, body)
    assert server.request_count("complete") == 0
    file_id, stored = resume(server, data)
    assert 5 <= len(stored) < 12


def test_expired_urls_need_a_new_init(server: CommunityServer) -> None:
    data = make_data(8 * PART)

    async def body(client: CommunityUploader) -> Any:
        def on_progress(percent: float) -> None:
            if percent > 0:
                server.expire_urls()  # every URL the SDK holds is now stale

        return await client.upload(data, file_name="big.bin", options=UploadOptions(on_progress=on_progress))

    with pytest.raises(UploadError) as caught:
        run(server, body)
    assert "403" in str(caught.value)  # the SDK does not refresh part URLs itself
    assert server.wait_idle(10, disconnected=True)
    assert any(status == 403 for _, _, status in server.part_log)
    # A new upload() does a new init, which hands out fresh URLs.
    resume(server, data)


def test_connection_drop_is_retried(server: CommunityServer) -> None:
    data = make_data(3 * PART)
    server.fail_part(2, status=0, times=1)  # the connection closes without an answer
    result = run(server, lambda c: c.upload(data))
    fid = result.file.id
    assert parts_put(server, fid, status=0) == [2]
    assert sorted(parts_put(server, fid)) == [1, 2, 3]
    assert server.stored_sha256(fid) == sha256(data)


def test_failed_complete_then_upload_again(server: CommunityServer) -> None:
    data = make_data(3 * PART)
    server.fail_complete(status=500)
    with pytest.raises(UploadError) as caught:
        run(server, lambda c: c.upload(data))
    assert caught.value.code == 500
    server.reset_counters()
    result = run(server, lambda c: c.upload(data))
    assert server.requests == {"init": 1, "complete": 1}  # every part was already there
    assert server.stored_sha256(result.file.id) == sha256(data)


def test_abort_upload(server: CommunityServer) -> None:
    data = make_data(6 * PART)
    server.fail_part(6, status=503, times=None)
    with pytest.raises(UploadError):
        run(server, lambda c: c.upload(data))
    assert server.wait_idle(10, disconnected=True)
    (file_id,) = server.file_ids()

    async def body(client: CommunityUploader) -> Tuple[bool, bool]:
        aborted = await client.abort_upload(file_id)
        again = await client.abort_upload(file_id)
        return aborted, again

    assert run(server, body) == (True, False)
    assert server.file_object(file_id)["deleted_at"] is not None


# ----------------------------------------------------- info, list, delete


def test_info_list_by_url_and_delete(server: CommunityServer) -> None:
    video = make_data(PART + 1)
    image = make_data(PART + 2)

    async def body(client: CommunityUploader) -> None:
        v = (await client.upload(video, file_name="v.mp4", options=UploadOptions(category="video"))).file
        i = (await client.upload(image, file_name="i.jpg", options=UploadOptions(category="image"))).file

        info = await client.get_file_info(v.id)
        assert info.to_dict() == v.to_dict()
        for url in (i.oss_url, i.cdn_url, i.imagekit_url, i.file_key):
            assert url is not None
            assert (await client.get_file_by_url(url)).id == i.id, url

        files, total = await client.list_files()
        assert total == 2 and [f.id for f in files] == [i.id, v.id]
        files, total = await client.list_files(ListFilesParams(category="video"))
        assert total == 1 and files[0].id == v.id
        files, total = await client.list_files(ListFilesParams(page=2, page_size=1, status="confirmed"))
        assert total == 2 and [f.id for f in files] == [v.id]

        assert await client.delete_file(v.id) is True
        with pytest.raises(UploadError) as gone:
            await client.get_file_info(v.id)
        assert gone.value.code == 404
        assert await client.delete_file(v.id) is False
        files, total = await client.list_files()
        assert total == 1 and files[0].id == i.id

    run(server, body)
    assert server.request_count("delete") == 2 and server.request_count("by_key") == 4


# -- crossing the SDK and upclient: the same server, either client first -----------


def upclient_client(server: CommunityServer, **kw: Any) -> Any:
    import upclient

    kw.setdefault("store", None)
    return upclient.Client("community+" + server.url, token=TOKEN, **kw)


def test_a_file_the_sdk_uploaded_is_found_listed_and_deduplicated_by_upclient(server, tmp_path):
    data = make_data(5 * PART + 9)
    path = tmp_path / "from-sdk.mp4"
    path.write_bytes(data)
    sdk_file = run(server, lambda c: c.upload(str(path), options=UploadOptions(category="video"))).file
    with upclient_client(server, part_size=PART) as client:
        info = client.info(sdk_file.id)
        assert (info.size, info.extra["file"].file_md5) == (len(data), hashlib.md5(data).hexdigest())
        assert sdk_file.id in [f.id for f in client.iter_files(category="video")]
        assert client.info_by_key(sdk_file.file_key).id == sdk_file.id
        before = server.part_puts
        again = client.put(path, category="video")
        assert again.deduplicated and again.id == sdk_file.id and server.part_puts == before
        assert hashlib.sha256(client.get(sdk_file.id)).hexdigest() == sha256(data)


def test_a_file_upclient_uploaded_is_deduplicated_by_the_sdk(server, tmp_path):
    data = make_data(3 * PART + 1)
    path = tmp_path / "from-upclient.bin"
    path.write_bytes(data)
    with upclient_client(server, part_size=PART) as client:
        mine = client.put(path, category="document")
    assert server.stored_sha256(mine.id) == sha256(data)
    before = server.part_puts
    theirs = run(server, lambda c: c.upload(str(path), options=UploadOptions(category="document")))
    assert theirs.deduplicated and theirs.file.id == mine.id and server.part_puts == before
    got = run(server, lambda c: c.get_file_info(mine.id))
    assert got.file_md5 == hashlib.md5(data).hexdigest()


def test_an_upload_the_sdk_left_half_done_is_finished_by_upclient_sending_only_the_rest(server, tmp_path):
    data = make_data(8 * PART + 5)  # 9 parts
    path = tmp_path / "half.bin"
    path.write_bytes(data)
    server.fail_part(9, status=503, times=None)  # the SDK does not retry HTTP errors
    with pytest.raises(UploadError):
        run(server, lambda c: c.upload(str(path)))
    assert server.wait_idle(10, disconnected=True)
    server.clear_faults()
    (file_id,) = server.file_ids()
    held = server.uploaded_parts(file_id)
    assert 9 not in held
    with upclient_client(server, part_size=PART) as client:
        result = client.put(path)
    assert result.id == file_id and result.resumed and not result.deduplicated
    assert result.sent_bytes == len(data) - PART * len(held)  # part 9 (5 bytes) is among the rest
    assert server.stored_sha256(file_id) == sha256(data)


def test_a_pipe_upclient_hashed_while_reading_is_deduplicated_by_the_sdk(server):
    import threading

    data = make_data(2 * PART + 3)
    reader, writer = os.pipe()

    def feed() -> None:
        with os.fdopen(writer, "wb") as w:
            w.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    with os.fdopen(reader, "rb") as pipe, upclient_client(server, part_size=PART) as client:
        mine = client.put(pipe, key="piped.bin")  # no size: the pipe is read to its end
    feeder.join(10)
    assert mine.size == len(data) and server.stored_sha256(mine.id) == sha256(data)
    before = server.part_puts
    theirs = run(server, lambda c: c.upload(data, file_name="piped.bin"))
    assert theirs.deduplicated and theirs.file.id == mine.id and server.part_puts == before
