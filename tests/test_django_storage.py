"""UpclientStorage against every backend that can hold named files, each a real server on 127.0.0.1.

UPYUN (keys as names), the community API and FastDFS (the server's ids as
names) and @tus/server (upload ids as names).  Django runs in this process
(the example site's models); every stored byte is checked on the server.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from tests.django_rig import SITE, configure_django, storages_setting

configure_django()

from django.contrib.staticfiles import finders  # noqa: E402
from django.core.files.base import ContentFile, File  # noqa: E402
from django.core.files.storage import storages  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import FileResponse  # noqa: E402
from django.test import override_settings  # noqa: E402

from upclient.contrib.django import UpclientStorage  # noqa: E402

MiB = 1024 * 1024
BACKENDS = ["upyun", "community", "fdfs", "tus"]


@pytest.fixture(params=BACKENDS)
def served(request: pytest.FixtureRequest) -> Iterator[Tuple[Any, UpclientStorage]]:
    """(running server, the default storage on it), configured in STORAGES as a user does."""
    server = request.getfixturevalue(f"upclient_{request.param}_server")
    options = {"url": server.url, **server.settings, "part_size": MiB}
    with storages_setting({"default": {"BACKEND": "upclient.contrib.django.UpclientStorage", "OPTIONS": options},
                           "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}):
        storage = storages["default"]
        try:
            yield server, storage
        finally:
            storage.close()


def stored(server: Any, storage: UpclientStorage, name: str) -> str:
    """SHA-256 of what the server holds under a storage name."""
    return str(server.stored_sha256(storage.dialect.id_of(name)))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OneWayStream:
    """A non-seekable binary stream that records how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)
        self.asked: List[int] = []

    def read(self, n: int = -1) -> bytes:
        self.asked.append(n)
        return self._f.read(n)

    def seekable(self) -> bool:
        return False


# ------------------------------------------------------------------ saving


def test_save_streams_a_file_from_its_chunks_and_never_reads_it_whole(served: Any) -> None:
    server, storage = served
    data = os.urandom(5 * MiB + 17)
    stream = OneWayStream(data)
    content = File(stream, name="big.bin")
    content.size = len(data)  # a stream knows no size; UPYUN needs it, the others need not
    name = storage.save("docs/big.bin", content)
    assert stored(server, storage, name) == sha(data)
    assert stream.asked and max(stream.asked) <= File.DEFAULT_CHUNK_SIZE and -1 not in stream.asked


@pytest.mark.parametrize("kind", ["temporary", "memory", "content", "text"])
def test_save_takes_every_kind_of_django_file(served: Any, kind: str, tmp_path: Path) -> None:
    server, storage = served
    data = os.urandom(2 * MiB + 3)
    if kind == "temporary":
        with override_settings(FILE_UPLOAD_TEMP_DIR=str(tmp_path)):
            content: Any = TemporaryUploadedFile("t.bin", "application/octet-stream", len(data), None)
        content.write(data)
        content.seek(0)
    elif kind == "memory":
        content = SimpleUploadedFile("m.bin", data, content_type="application/octet-stream")
    elif kind == "content":
        content = ContentFile(data, name="c.bin")
    else:
        text = "héllo, wörld\n" * 1000
        data = text.encode("utf-8")
        content = ContentFile(text, name="t.txt")
    name = storage.save(f"kinds/{kind}.bin", content)
    assert stored(server, storage, name) == sha(data)
    assert storage.size(name) == len(data)


def test_one_client_serves_every_thread(served: Any) -> None:
    server, storage = served
    blobs = [os.urandom(300_000 + i) for i in range(6)]
    names: List[str] = [""] * len(blobs)
    clients = set()

    def save(i: int) -> None:
        clients.add(id(storage.client))
        names[i] = storage.save(f"threads/{i}.bin", ContentFile(blobs[i]))

    threads = [threading.Thread(target=save, args=(i,)) for i in range(len(blobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(clients) == 1
    assert [stored(server, storage, n) for n in names] == [sha(b) for b in blobs]


# ------------------------------------------------------------------ reading


def test_open_reads_lazily_in_ranges_and_seeks(served: Any) -> None:
    server, storage = served
    data = os.urandom(3 * MiB + 5)
    name = storage.save("read/r.bin", ContentFile(data))
    with storage.open(name) as f:
        assert f.read(10) == data[:10]
        f.seek(2 * MiB)
        assert f.tell() == 2 * MiB
        assert f.read(100) == data[2 * MiB : 2 * MiB + 100]
        f.seek(-7, io.SEEK_END)
        assert f.read() == data[-7:]
        f.seek(0)
        assert b"".join(f.chunks()) == data
    assert f.size == len(data)


def test_a_file_response_sends_the_stored_bytes_with_their_length(served: Any) -> None:
    server, storage = served
    data = os.urandom(MiB + 99)
    name = storage.save("read/response.bin", ContentFile(data))
    response = FileResponse(storage.open(name), as_attachment=True, filename="response.bin")
    assert response["Content-Length"] == str(len(data))
    assert b"".join(response.streaming_content) == data
    response.close()


def test_opening_for_writing_says_to_save_instead(served: Any) -> None:
    _, storage = served
    with pytest.raises(NotImplementedError, match="save"):
        storage.open("x.bin", "wb")
    with pytest.raises(NotImplementedError):
        storage.path("x.bin")


# ------------------------------------------------------------------ the other verbs


def test_exists_size_and_delete(served: Any) -> None:
    server, storage = served
    name = storage.save("gone/g.bin", ContentFile(b"to be deleted"))
    assert storage.exists(name)
    assert storage.size(name) == 13
    if server.backend == "tus" and server.kind != "node":
        pytest.skip("resumable-upload offers no termination")
    storage.delete(name)
    assert not storage.exists(name)
    with pytest.raises(FileNotFoundError):
        stored(server, storage, name)
    storage.delete(name)  # deleting what is not there is no error, as in Django


def test_url_is_what_the_backend_gives(served: Any) -> None:
    server, storage = served
    name = storage.save("u/photo one.jpg", ContentFile(b"jpeg"))
    backend = server.backend
    if backend == "upyun":
        assert storage.url(name) == f"https://{storage.client.backend.domain}/u/photo%20one.jpg"
    elif backend == "tus":
        url = storage.url(name)
        assert url.startswith(server.server.url) and url.endswith(name)
    elif backend == "community":
        info = storage.client.info(name)
        assert storage.url(name) == info.extra["file"].cdn_url
    else:
        with pytest.raises(NotImplementedError, match="base_url"):
            storage.url(name)


def test_url_is_base_url_and_the_name_when_given(served: Any) -> None:
    server, _ = served
    storage = UpclientStorage(server.url, base_url="https://cdn.example.com/", **server.settings)
    try:
        assert storage.url("a b/c.txt") == "https://cdn.example.com/a%20b/c.txt"
    finally:
        storage.close()


def test_listdir_where_the_backend_lists(served: Any) -> None:
    server, storage = served
    first = storage.save("lists/one.txt", ContentFile(b"1"))
    storage.save("lists/sub/two.txt", ContentFile(b"2"))
    if server.backend == "upyun":
        assert storage.listdir("lists") == (["sub"], ["one.txt"])
        assert storage.listdir("lists/sub/") == ([], ["two.txt"])
    elif server.backend == "community":
        dirs, files = storage.listdir("")
        assert dirs == [] and first in files
    else:
        with pytest.raises(NotImplementedError, match="cannot list"):
            storage.listdir("")


def test_get_modified_time_is_an_aware_datetime_where_the_backend_says(served: Any) -> None:
    server, storage = served
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    name = storage.save("m/when.txt", ContentFile(b"now"))
    if server.backend == "tus":
        with pytest.raises(NotImplementedError, match="when a file changed"):
            storage.get_modified_time(name)
        return
    when = storage.get_modified_time(name)
    assert when.tzinfo is not None
    assert before <= when <= datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)


def test_get_available_name_overwrites_or_finds_a_free_name(served: Any) -> None:
    server, storage = served
    name = storage.save("same/name.txt", ContentFile(b"first"))
    if server.backend != "upyun":
        # the server names each file: two saves never collide
        other = storage.save("same/name.txt", ContentFile(b"second"))
        assert other != name and stored(server, storage, name) == sha(b"first")
        return
    assert storage.get_available_name("same/name.txt") == "same/name.txt"
    assert storage.save("same/name.txt", ContentFile(b"second")) == "same/name.txt"
    assert stored(server, storage, "same/name.txt") == sha(b"second")
    careful = UpclientStorage(server.url, file_overwrite=False, **server.settings)
    try:
        free = careful.save("same/name.txt", ContentFile(b"third"))
        assert free != "same/name.txt" and free.startswith("same/name_") and free.endswith(".txt")
        assert stored(server, storage, "same/name.txt") == sha(b"second")
        assert stored(server, careful, free) == sha(b"third")
        assert len(careful.get_available_name("same/" + "n" * 80 + ".txt", max_length=40)) <= 40
    finally:
        careful.close()


# ------------------------------------------------------------------ model fields


def test_a_file_field_keeps_the_storage_name_within_its_max_length(served: Any) -> None:
    from uploads.models import Document

    server, storage = served
    data = os.urandom(MiB + 1)
    doc = Document()
    doc.file.save("report.pdf", ContentFile(data), save=False)
    assert len(doc.file.name) <= 100, "the default max_length of a FileField"
    assert stored(server, storage, doc.file.name) == sha(data)
    assert doc.file.size == len(data)
    with doc.file.open("rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha(data)


def test_an_image_field_reads_the_stored_image_for_its_dimensions(served: Any) -> None:
    from PIL import Image
    from uploads.models import Picture

    server, storage = served
    buf = io.BytesIO()
    Image.new("RGB", (123, 45), (200, 10, 10)).save(buf, "PNG")
    pic = Picture()
    pic.image.save("red.png", ContentFile(buf.getvalue(), name="red.png"), save=False)
    assert (pic.width, pic.height) == (123, 45)  # Django reads these from the file given to save()
    assert stored(server, storage, pic.image.name) == sha(buf.getvalue())
    loaded = Picture(image=pic.image.name)  # as from the database, without the dimensions: read from storage
    assert (loaded.width, loaded.height) == (123, 45)


# ------------------------------------------------------------------ collectstatic


def test_collectstatic_sends_the_static_files_to_upyun_and_skips_them_when_unchanged(
    upclient_upyun_server: Any,
) -> None:
    server = upclient_upyun_server
    options = {"url": server.url, "location": "static/", **server.settings}
    with storages_setting({"default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
                           "staticfiles": {"BACKEND": "upclient.contrib.django.UpclientStorage", "OPTIONS": options}},
                          STATICFILES_DIRS=[str(SITE / "static")], STATIC_ROOT=None):
        finders.get_finder.cache_clear()
        target = storages["staticfiles"]
        try:
            out = io.StringIO()
            call_command("collectstatic", interactive=False, verbosity=1, stdout=out)
            assert "2 static files copied" in out.getvalue()
            for rel in ("site/site.css", "site/site.js"):
                assert server.stored_sha256("static/" + rel) == sha((SITE / "static" / rel).read_bytes())
            again = io.StringIO()
            call_command("collectstatic", interactive=False, verbosity=1, stdout=again)
            assert "0 static files copied" in again.getvalue() and "2 unmodified" in again.getvalue()
        finally:
            target.close()
            finders.get_finder.cache_clear()
