"""The streaming upload handler's answers, in this process, against real servers on 127.0.0.1.

Requests are built by Django's RequestFactory and go through the view
decorator or the middleware as they would under a server; the files land
on the emulators and are checked there.  (Under a real WSGI server, with
browsers on sockets: test_django_site.py.)
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List

import pytest

from tests.django_rig import configure_django, storages_setting

configure_django()

from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from upclient.contrib.django import (  # noqa: E402
    SIZES_HEADER,
    StoredFile,
    StreamingUploadHandler,
    UpclientStorage,
    UploadErrorMiddleware,
    streaming_upload,
)

MiB = 1024 * 1024


@pytest.fixture
def upyun_storage(upclient_upyun_server: Any) -> Any:
    storage = UpclientStorage(upclient_upyun_server.url, part_size=MiB, **upclient_upyun_server.settings)
    yield storage
    storage.close()


@pytest.fixture
def fdfs_storage(upclient_fdfs_server: Any) -> Any:
    storage = UpclientStorage(upclient_fdfs_server.url, part_size=MiB)
    yield storage
    storage.close()


def post(files: Dict[str, bytes], **headers: str) -> HttpRequest:
    data = {field: SimpleUploadedFile(f"{field}.bin", body) for field, body in files.items()}
    return RequestFactory().post("/upload", data, **headers)


def names_of(request: HttpRequest) -> JsonResponse:
    out: Dict[str, Any] = {}
    for field, f in request.FILES.items():
        assert isinstance(f, StoredFile)
        out[field] = {"name": f.storage_name, "size": f.size, "original": f.name}
    return JsonResponse(out)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_upyun_files_of_announced_sizes_stream_and_arrive(upyun_storage: Any, upclient_upyun_server: Any) -> None:
    view = streaming_upload(csrf=False, storage=upyun_storage)(names_of)
    a, b = os.urandom(3 * MiB + 1), os.urandom(10)
    response = view(post({"a": a, "b": b}, **{"HTTP_X_UPLOAD_SIZES": f"{len(a)}, {len(b)}"}))
    assert response.status_code == 200
    got = __import__("json").loads(response.content)
    assert upclient_upyun_server.stored_sha256(got["a"]["name"]) == sha(a)
    assert upclient_upyun_server.stored_sha256(got["b"]["name"]) == sha(b)
    assert got["a"]["original"] == "a.bin" and got["a"]["name"].startswith("uploads/")


def test_upyun_without_sizes_and_without_spooling_is_411(upyun_storage: Any) -> None:
    view = streaming_upload(csrf=False, storage=upyun_storage, spool=False)(names_of)
    response = view(post({"a": b"data"}))
    assert response.status_code == 411
    assert SIZES_HEADER in response.content.decode()


def test_sizes_that_are_not_numbers_are_400(fdfs_storage: Any) -> None:
    view = streaming_upload(csrf=False, storage=fdfs_storage)(names_of)
    assert view(post({"a": b"data"}, HTTP_X_UPLOAD_SIZES="lots")).status_code == 400


def test_a_body_over_max_size_is_413_and_nothing_is_stored(fdfs_storage: Any, upclient_fdfs_server: Any) -> None:
    view = streaming_upload(csrf=False, storage=fdfs_storage, max_size=MiB)(names_of)
    response = view(post({"a": os.urandom(MiB + 1)}))
    assert response.status_code == 413
    assert upclient_fdfs_server.server.files() == []


def test_a_storage_that_refuses_is_502(upclient_community_server: Any) -> None:
    storage = UpclientStorage(upclient_community_server.url, token="not-the-token")
    try:
        view = streaming_upload(csrf=False, storage=storage)(names_of)
        assert view(post({"a": os.urandom(1000)})).status_code == 502
    finally:
        storage.close()


def test_a_stored_file_kept_in_a_file_field_is_not_uploaded_again(upclient_fdfs_server: Any) -> None:
    from django.core.files.storage import storages
    from uploads.models import Document

    kept: List[str] = []

    def keep(request: HttpRequest) -> HttpResponse:
        doc = Document(file=request.FILES["a"], original_name=request.FILES["a"].name)
        Document._meta.get_field("file").pre_save(doc, add=True)  # what Model.save does with it
        kept.append(doc.file.name)
        return HttpResponse("ok")

    data = os.urandom(2 * MiB)
    with storages_setting({"default": {"BACKEND": "upclient.contrib.django.UpclientStorage",
                                       "OPTIONS": {"url": upclient_fdfs_server.url, "part_size": MiB}},
                           "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}):
        try:
            response = streaming_upload(csrf=False)(keep)(post({"a": data}))
        finally:
            storages["default"].close()
    assert response.status_code == 200
    assert upclient_fdfs_server.server.files() == kept  # one file: the streamed one, under its own id
    assert upclient_fdfs_server.stored_sha256(kept[0]) == sha(data)


def test_the_handler_in_settings_with_the_middleware(upclient_tus_server: Any) -> None:
    with storages_setting(
        {"default": {"BACKEND": "upclient.contrib.django.UpclientStorage",
                     "OPTIONS": {"url": upclient_tus_server.url, "part_size": MiB}},
         "staticfiles": {"BACKEND": "django.core.files.storage.InMemoryStorage"}},
        UPCLIENT_UPLOAD_HANDLER={"max_size": 2 * MiB},
    ):
        from django.core.files.storage import storages

        middleware = UploadErrorMiddleware(lambda request: HttpResponse("unused"))
        try:
            small = post({"a": os.urandom(MiB)})
            small.upload_handlers = [StreamingUploadHandler(small)]
            assert middleware.process_view(small, names_of, (), {}) is None
            stored = small.FILES["a"]
            assert upclient_tus_server.stored_sha256(stored.storage_name) == sha(stored.read())
            large = post({"a": os.urandom(3 * MiB)})
            large.upload_handlers = [StreamingUploadHandler(large)]
            assert middleware.process_view(large, names_of, (), {}).status_code == 413
        finally:
            storages["default"].close()
