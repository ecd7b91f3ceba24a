"""The tus protocol without I/O: requests built, answers read into values,
hints and typed errors (upclient.backends.tus.protocol)."""

from __future__ import annotations

import calendar
import dataclasses
from typing import Dict

import pytest
from requests.structures import CaseInsensitiveDict

from upclient import errors
from upclient.backends.tus.protocol import (
    Capabilities,
    Created,
    PatchAnswer,
    TusRequest,
    UploadStatus,
    checksum_header,
    error_for,
    same_origin,
)
from upclient.transfer import Restart, Resync

UPLOAD = "http://tus.test/files/abc"


@dataclasses.dataclass
class Reply:
    """Just what the parsers read of a response."""

    status_code: int
    headers: CaseInsensitiveDict

    def __init__(self, status: int, headers: Dict[str, str] = None) -> None:
        self.status_code = status
        self.headers = CaseInsensitiveDict(headers or {})


def test_every_request_but_options_carries_tus_resumable():
    assert "Tus-Resumable" not in TusRequest.options("http://x/files/").on_the_wire().headers
    for request in (TusRequest.head(UPLOAD), TusRequest.delete(UPLOAD), TusRequest.get(UPLOAD),
                    TusRequest.patch(UPLOAD, offset=0, body=b"x"),
                    TusRequest.create("http://x/files/", length=1, metadata="")):
        assert request.on_the_wire().headers["Tus-Resumable"] == "1.0.0"


def test_method_override_turns_patch_and_delete_into_post_only():
    patch = TusRequest.patch(UPLOAD, offset=3, body=b"x").on_the_wire(method_override=True)
    assert (patch.method, patch.headers["X-HTTP-Method-Override"]) == ("POST", "PATCH")
    head = TusRequest.head(UPLOAD).on_the_wire(method_override=True)
    assert head.method == "HEAD" and "X-HTTP-Method-Override" not in head.headers


def test_create_headers_for_plain_deferred_partial_and_final_uploads():
    plain = TusRequest.create("http://x/files/", length=5, metadata="filename YQ==")
    assert plain.headers == {"Upload-Length": "5", "Upload-Metadata": "filename YQ=="}
    deferred = TusRequest.create("http://x/files/", length=None, metadata="", body=b"abc")
    assert deferred.headers == {"Upload-Defer-Length": "1", "Content-Type": "application/offset+octet-stream"}
    partial = TusRequest.create("http://x/files/", length=4, metadata="", concat="partial")
    assert partial.headers == {"Upload-Concat": "partial", "Upload-Length": "4"}
    final = TusRequest.final("http://x/files/", ["http://x/files/a", "http://x/files/b"], "k dg==")
    assert final.headers == {"Upload-Concat": "final;http://x/files/a http://x/files/b", "Upload-Metadata": "k dg=="}


def test_patch_headers_and_the_checksum_of_its_body():
    request = TusRequest.patch(UPLOAD, offset=7, body=b"hello", checksum=checksum_header("sha1", b"hello"),
                               length=12)
    assert request.headers == {
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": "7",
        "Upload-Length": "12",
        "Upload-Checksum": "sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=",
    }


def test_a_ranged_get():
    assert TusRequest.get(UPLOAD, offset=2, length=3).headers == {"Range": "bytes=2-4"}
    assert TusRequest.get(UPLOAD, offset=2).headers == {"Range": "bytes=2-"}
    assert TusRequest.get(UPLOAD).headers == {}


def test_capabilities_from_options():
    caps = Capabilities.from_response(Reply(204, {
        "Tus-Version": "1.0.0,0.2.2", "Tus-Extension": "creation, checksum,concatenation",
        "Tus-Max-Size": "1000", "Tus-Checksum-Algorithm": "MD5,sha1,sha256"}))
    assert caps.has("checksum") and caps.has("concatenation") and not caps.has("termination")
    assert (caps.max_size, caps.checksum_algorithm()) == (1000, "sha256")
    assert Capabilities.from_response(Reply(405)).extensions == {"creation"}  # no OPTIONS: core + creation
    with pytest.raises(errors.Unsupported, match="0.2.2"):
        Capabilities.from_response(Reply(204, {"Tus-Version": "0.2.2"}))


def test_upload_status_from_head():
    status = UploadStatus.from_response(Reply(200, {
        "Upload-Offset": "3", "Upload-Length": "10", "Upload-Metadata": "filename YS50eHQ=",
        "Upload-Expires": "Wed, 25 Jun 2036 16:00:00 GMT"}))
    assert (status.offset, status.length, status.metadata) == (3, 10, {"filename": "a.txt"})
    assert status.expires == calendar.timegm((2036, 6, 25, 16, 0, 0))
    deferred = UploadStatus.from_response(Reply(200, {"Upload-Offset": "0", "Upload-Defer-Length": "1"}))
    assert (deferred.length, deferred.deferred_length) == (None, True)


def test_created_resolves_a_relative_location_and_needs_one():
    created = Created.from_response(Reply(201, {"Location": "/files/abc", "Upload-Offset": "5"}),
                                    "http://tus.test/files/")
    assert (created.url, created.offset) == (UPLOAD, 5)
    with pytest.raises(errors.ServerError, match="no Location"):
        Created.from_response(Reply(201), "http://tus.test/files/")


def test_patch_answers_become_offsets_or_hints():
    done = PatchAnswer.from_response(Reply(204, {"Upload-Offset": "10"}), UPLOAD, 10)
    assert (done.offset, done.hint) == (10, None)
    short = PatchAnswer.from_response(Reply(204, {"Upload-Offset": "6"}), UPLOAD, 10)
    assert short.offset == 6 and isinstance(short.hint, Resync) and short.hint.offset == 6
    conflict = PatchAnswer.from_response(Reply(409), UPLOAD, 10).hint
    assert isinstance(conflict, Resync) and conflict.offset is None  # HEAD will tell
    assert isinstance(PatchAnswer.from_response(Reply(460), UPLOAD, 10).hint, Resync)
    assert isinstance(PatchAnswer.from_response(Reply(403), UPLOAD, 10).hint, Resync)
    for status in (404, 410):
        gone = PatchAnswer.from_response(Reply(status), UPLOAD, 10).hint
        assert isinstance(gone, Restart) and gone.upload_id == UPLOAD
    with pytest.raises(errors.ServerError, match="Upload-Offset"):
        PatchAnswer.from_response(Reply(204), UPLOAD, 10)


def test_patch_lists_its_hint_statuses_as_answers_not_errors():
    ok = TusRequest.patch(UPLOAD, offset=0, body=b"").ok
    assert {403, 404, 409, 410, 460} <= set(ok) and 413 not in ok and 500 not in ok


@pytest.mark.parametrize("status, operation, cls", [
    (404, "head", errors.UploadExpired),
    (410, "head", errors.UploadExpired),
    (403, "head", errors.UploadExpired),
    (404, "get", errors.NotFound),
    (409, "patch", errors.OffsetConflict),
    (409, "create", errors.Conflict),
    (460, "patch", errors.ChecksumMismatch),
    (412, "create", errors.Unsupported),
    (413, "patch", errors.TooLarge),
    (401, "create", errors.AuthError),
    (429, "create", errors.RateLimited),
    (503, "patch", errors.ServiceError),
    (400, "create", errors.RequestRejected),
])
def test_errors_are_mapped_in_one_place(status, operation, cls):
    mapped, _ = error_for(status, operation)
    assert mapped is cls


def test_same_origin():
    assert same_origin("http://h:1/files/a", "http://h:1/files/")
    assert not same_origin("http://h:1/files/a", "http://h:2/files/")
    assert not same_origin("https://h/files/a", "http://h/files/")
