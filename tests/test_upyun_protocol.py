"""The UPYUN upload protocol without sockets: requests built, answers read into
values, hints and error classes (``upclient.backends.upyun.protocol``)."""

from __future__ import annotations

import base64
import json

import pytest

from upclient import errors
from upclient.backends.upyun import protocol as p
from upclient.transfer import Restart, Resync

MiB = 1024 * 1024


def answer(status, code=None, msg="m", **headers):
    body = b"" if code is None else json.dumps({"code": code, "msg": msg, "id": "rid"}).encode()
    return p.Answer(status, headers, body)


# -- requests -------------------------------------------------------------------------


def test_initiate_moves_the_type_to_multi_type_and_asks_for_disorder():
    req = p.initiate_request("/svc/a.bin", {"Content-Type": "image/png", "x-upyun-meta-k": "v"},
                             length=3 * MiB, part_size=MiB, disorder=True)
    assert (req.method, req.path, req.operation) == ("PUT", "/svc/a.bin", "initiate")
    assert "Content-Type" not in req.headers and req.headers["x-upyun-meta-k"] == "v"
    assert req.headers["X-Upyun-Multi-Type"] == "image/png"
    assert req.headers["X-Upyun-Multi-Length"] == str(3 * MiB)
    assert req.headers["X-Upyun-Multi-Part-Size"] == str(MiB)
    assert req.headers["X-Upyun-Multi-Disorder"] == "true"
    serial = p.initiate_request("/svc/a.bin", {"Content-Type": "x/y"}, length=1, part_size=MiB, disorder=False)
    assert "X-Upyun-Multi-Disorder" not in serial.headers


def test_part_complete_query_info_and_cancel_requests():
    part = p.part_request("/svc/a", "U", 7, "abc")
    assert part.headers == {"X-Upyun-Multi-Stage": "upload", "X-Upyun-Multi-Uuid": "U", "X-Upyun-Part-Id": "7",
                            "Content-MD5": "abc"}
    assert "Content-MD5" not in p.part_request("/svc/a", "U", 0, None).headers
    assert p.complete_request("/svc/a", "U", "f" * 32).headers["X-Upyun-Multi-MD5"] == "f" * 32
    assert "X-Upyun-Multi-MD5" not in p.complete_request("/svc/a", "U", None).headers
    assert p.query_request("/svc/a", "U").method == "GET"
    assert p.info_request("/svc/a", "U").headers["X-Upyun-Multi-Info"] == "true"
    cancel = p.cancel_request("/svc/a", "U")
    assert (cancel.method, cancel.ok) == ("DELETE", (200, 204))


@pytest.mark.parametrize("size,ok", [(MiB, True), (50 * MiB, True), (3 * MiB, True), (MiB + 1, False),
                                     (51 * MiB, False), (1000 * 1000, False)])
def test_part_sizes(size, ok):
    assert (p.check_part_size(size) is None) is ok


# -- what a part's answer says ----------------------------------------------------------


def test_a_stored_part_and_the_last_one():
    assert p.read_part(answer(204, **{"X-Upyun-Next-Part-Id": "4"}), "U") == p.PartDone(all_parts=False)
    assert p.read_part(answer(204, **{"x-upyun-next-part-id": "-1"}), "U") == p.PartDone(all_parts=True)


def test_part_id_error_is_a_resync_hint_naming_the_part_and_the_upload():
    hint = p.read_part(answer(400, 40011061, **{"X-Upyun-Next-Part-Id": "3"}), "U1")
    assert hint == Resync("part id error", next_part=3, upload_id="U1")
    assert p.read_part(answer(400, 40011061), "U1").next_part is None


def test_a_forgotten_upload_is_a_restart_hint():
    hint = p.read_part(answer(400, 40011058, "x-upyun-multi-uuid not found"), "U1")
    assert isinstance(hint, Restart) and hint.upload_id == "U1" and "not found" in hint.reason
    assert isinstance(p.read_part(answer(404), "U1"), Restart)


def test_already_complete_counts_as_done_and_already_uploaded_as_stored():
    assert p.read_part(answer(400, 40011062), "U") == p.PartDone(all_parts=True)
    assert p.read_part(answer(400, 40011059), "U") == p.AlreadyStored()


@pytest.mark.parametrize("status,code,kind", [
    (503, 50300000, errors.ServiceError),
    (403, 40300007, errors.ChecksumMismatch),
    (401, 40100005, errors.AuthError),
    (429, 42900001, errors.RateLimited),
])
def test_other_part_answers_are_errors_to_raise(status, code, kind):
    out = p.read_part(answer(status, code, "said"), "U")
    assert isinstance(out, p.ErrorAnswer) and out.kind is kind
    assert (out.code, out.message, out.request_id) == (code, "said", "rid")


# -- complete, query, info, cancel --------------------------------------------------------


def test_complete_answers():
    done = p.read_complete(answer(201, **{"x-upyun-multi-length": "9"}), "U")
    assert isinstance(done, p.Completed) and done.headers["x-upyun-multi-length"] == "9"
    assert p.read_complete(answer(400, 40011059), "U") == p.AlreadyStored()
    missing = p.read_complete(answer(400, 40011061, **{"X-Upyun-Next-Part-Id": "2"}), "U")
    assert isinstance(missing, Resync) and missing.next_part == 2 and missing.upload_id == "U"
    assert isinstance(p.read_complete(answer(400, 40011058), "U"), Restart)
    mismatch = p.read_complete(answer(400, 40011060), "U")
    assert mismatch.kind is p.WholeFileMismatch and issubclass(mismatch.kind, errors.ChecksumMismatch)
    assert not p.WholeFileMismatch.retryable and errors.ChecksumMismatch.retryable


def test_query_lists_parts_or_says_gone_or_cannot_tell():
    listed = p.Answer(200, {}, json.dumps({"parts": [{"id": 0}, {"id": 2}]}).encode())
    assert p.read_parts(listed, "U") == {0, 2}
    assert isinstance(p.read_parts(answer(400, 40011058), "U"), Restart)
    assert p.read_parts(answer(503, 50300000), "U") is None
    assert p.read_parts(p.Answer(200, {}, b"not json"), "U") is None


def test_info_of_an_upload_begun_elsewhere():
    info = p.read_info(answer(200, **{"X-Upyun-Multi-Length": "10", "X-Upyun-Multi-Part-Size": str(2 * MiB),
                                      "X-Upyun-Multi-Disorder": "false", "X-Upyun-Next-Part-Id": "1"}), "U", "k")
    assert info == p.UploadInfo(length=10, part_size=2 * MiB, disorder=False, next_part=1)
    gone = p.read_info(answer(404, 40011058, "not found"), "U", "k")
    assert gone.kind is errors.UploadExpired and "no unfinished upload U of k" in gone.message


def test_a_cancel_of_a_gone_upload_is_fine():
    assert p.read_cancel(answer(204)) is None
    assert p.read_cancel(answer(400, 40011058)) is None
    assert p.read_cancel(answer(503, 50300000)).kind is errors.ServiceError


def test_initiate_without_a_uuid_is_refused():
    assert p.read_initiate(answer(204, **{"X-Upyun-Multi-Uuid": "U"})) == "U"
    assert p.read_initiate(answer(204)).kind is errors.RequestRejected


# -- errors -------------------------------------------------------------------------------


def test_error_bodies_that_are_not_json_fall_back_to_the_status():
    assert p.read_error(p.Answer(502, {}, b"<html>")).kind is errors.ServiceError
    assert p.read_error(p.Answer(404, {}, b"")).kind is errors.NotFound
    assert p.read_error(p.Answer(403, {}, json.dumps({"code": 40300030}).encode())).kind is errors.RequestRejected


# -- FORM ---------------------------------------------------------------------------------


def test_form_policy_and_envelope():
    policy = p.form_policy(service="svc", key="a/b.png", expiration=100, date="D", content_type="image/png",
                           secret="s3", metadata={"k": "v"}, user_headers={"X-Gmkerl-Rotate": "90"},
                           extra={"notify-url": "http://n/", "save-key": "/{filename}"}, content_md5="m5")
    assert policy == {"service": "svc", "save-key": "/{filename}", "expiration": 100, "date": "D",
                      "content-type": "image/png", "content-secret": "s3", "x-upyun-meta-k": "v",
                      "x-gmkerl-rotate": "90", "notify-url": "http://n/", "content-md5": "m5"}
    encoded = base64.b64encode(json.dumps(policy).encode()).decode()
    head, tail = p.form_envelope("BOUND", encoded, "UPYUN op:sig", 'a"b.png', "image/png")
    assert head.startswith(b"--BOUND\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\n" + encoded.encode())
    assert b'filename="a%22b.png"' in head and head.endswith(b"Content-Type: image/png\r\n\r\n")
    assert tail == b"\r\n--BOUND--\r\n"


def test_form_answers():
    assert p.read_form(p.Answer(200, {}, b'{"code": 200, "url": "/a.png"}'))["url"] == "/a.png"
    redirect = p.read_form(p.Answer(302, {"Location": "http://r/back?code=200&url=%2Fa.png"}))
    assert redirect["url"] == "/a.png" and redirect["return_url"].startswith("http://r/back")
    refused = p.read_form(p.Answer(302, {"Location": "http://r/back?code=403&message=no"}))
    assert refused.kind is errors.RequestRejected and refused.code == "403"
    assert p.read_form(answer(403, 40300010)).code == 40300010


def test_listing_lines():
    assert p.listing("a.txt\tN\t3\t1700000000\nsub\tF\t0\t1700000001\n\nbad line") == [
        ("a.txt", False, 3, 1700000000.0), ("sub", True, None, 1700000001.0)]
