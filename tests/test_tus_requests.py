"""Request shapes and error mapping of the tus backend, with ``responses``.

These pin down the exact headers the protocol demands and the cases a real
server will not produce on demand (460, 412, Tus-Max-Size, 409 mid-upload).
End-to-end behaviour against real servers is in test_tus_contract.py and
test_tus_servers.py.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import logging

import pytest
import responses

import upclient
from upclient import errors
from upclient.backends.tus import decode_metadata, encode_metadata

URL = "http://tus.test/files/"
UPLOAD = "http://tus.test/files/abc"


def options(rsps, extensions="creation,termination", **headers):
    h = {"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0", "Tus-Extension": extensions}
    h.update(headers)
    rsps.add(responses.OPTIONS, URL, status=204, headers=h)


def client(**kw):
    kw.setdefault("store", None)
    kw.setdefault("retry", upclient.RetryPolicy(attempts=3, backoff=0))
    return upclient.Client("tus+" + URL, **kw)


def test_metadata_is_base64_and_bad_keys_fail_before_any_request():
    assert encode_metadata({"filename": "a b.txt", "empty": ""}) == "filename YSBiLnR4dA==,empty"
    assert decode_metadata("filename YSBiLnR4dA==,empty") == {"filename": "a b.txt", "empty": ""}
    with responses.RequestsMock() as rsps:  # no request registered: any request would fail
        c = client()
        for bad in ("has space", "has,comma", "", "ünï"):
            with pytest.raises(errors.BadInput):
                c.put(b"x", metadata={bad: "v"})
        assert len(rsps.calls) == 0


def test_create_then_patch_carries_the_protocol_headers():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": "/files/abc", "Tus-Resumable": "1.0.0"})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        result = client().put(b"hello", key="dir/hello.txt", metadata={"owner": "me"})
        options_call, post, patch = rsps.calls
        assert "Tus-Resumable" not in options_call.request.headers
        assert post.request.headers["Tus-Resumable"] == "1.0.0"
        assert post.request.headers["Upload-Length"] == "5"
        meta = decode_metadata(post.request.headers["Upload-Metadata"])
        assert meta == {"filename": "dir/hello.txt", "filetype": "text/plain", "owner": "me"}
        assert patch.request.headers["Content-Type"] == "application/offset+octet-stream"
        assert patch.request.headers["Upload-Offset"] == "0"
        assert patch.request.headers["Content-Length"] == "5"
        assert "Transfer-Encoding" not in patch.request.headers
        assert result.id == UPLOAD  # the relative Location resolved against the endpoint


def test_creation_with_upload_sends_a_small_file_in_one_request():
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,creation-with-upload")
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD, "Upload-Offset": "5"})
        client().put(b"hello")
        post = rsps.calls[1].request
        assert post.headers["Content-Type"] == "application/offset+octet-stream"
        assert len(rsps.calls) == 2


def test_no_metadata_header_is_sent_empty():
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,creation-with-upload")
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD, "Upload-Offset": "0"})
        client().put(b"", key=None)
        assert rsps.calls[1].request.headers.get("Upload-Metadata", "x") != ""


def test_the_strongest_common_checksum_is_sent():
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,checksum", **{"Tus-Checksum-Algorithm": "md5,sha1,sha256"})
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        client().put(b"hello")
        digest = base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
        assert rsps.calls[2].request.headers["Upload-Checksum"] == f"sha256 {digest}"


def test_checksum_mismatch_460_resends_the_chunk():
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,checksum", **{"Tus-Checksum-Algorithm": "sha1"})
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=460)
        rsps.add(responses.HEAD, UPLOAD, status=200, headers={"Upload-Offset": "0", "Upload-Length": "5"})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        result = client().put(b"hello")
        assert [c.request.method for c in rsps.calls] == ["OPTIONS", "POST", "PATCH", "HEAD", "PATCH"]
        assert result.sent_bytes == 10


def test_offset_conflict_409_resyncs_by_head_and_sends_only_the_rest():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=409)
        rsps.add(responses.HEAD, UPLOAD, status=200, headers={"Upload-Offset": "3", "Upload-Length": "5"})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        client(checksum=False).put(b"hello")
        last = rsps.calls[4].request
        assert last.headers["Upload-Offset"] == "3"
        body = last.body
        assert (b"".join(iter(lambda: body.read(), b"")) if hasattr(body, "read") else bytes(body)) == b"lo"


def test_a_4xx_is_not_retried_and_keeps_the_server_message():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=400, body="Invalid upload-metadata", headers={"X-Request-Id": "r-1"})
        with pytest.raises(errors.RequestRejected) as info:
            client().put(b"hello")
        err = info.value
        assert (err.status, err.backend, err.operation, err.request_id) == (400, "tus", "create", "r-1")
        assert "Invalid upload-metadata" in str(err)
        assert len(rsps.calls) == 2


def test_503_with_retry_after_is_retried():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=503, headers={"Retry-After": "0"})
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        assert client().put(b"hello").id == UPLOAD


def test_over_the_advertised_max_size_fails_before_creating():
    with responses.RequestsMock() as rsps:
        options(rsps, **{"Tus-Max-Size": "4"})
        with pytest.raises(errors.TooLarge):
            client().put(b"hello")
        assert len(rsps.calls) == 1


def test_a_server_of_another_version_is_unsupported():
    with responses.RequestsMock() as rsps:
        rsps.add(responses.OPTIONS, URL, status=204, headers={"Tus-Version": "0.2.2"})
        with pytest.raises(errors.Unsupported, match="0.2.2"):
            client().put(b"hello")


def test_method_override_sends_patch_and_delete_as_post():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.POST, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        rsps.add(responses.POST, UPLOAD, status=204)
        c = client(method_override=True)
        c.put(b"hello")
        c.delete(UPLOAD)
        assert rsps.calls[2].request.headers["X-HTTP-Method-Override"] == "PATCH"
        assert rsps.calls[3].request.headers["X-HTTP-Method-Override"] == "DELETE"


def test_unknown_client_option_and_url_scheme_are_bad_input():
    with pytest.raises(errors.BadInput, match="nope"):
        upclient.Client("tus+" + URL, nope=1)
    with pytest.raises(errors.BadInput, match="unknown URL scheme"):
        upclient.Client("gopher://x/")
    with pytest.raises(errors.BadInput):
        upclient.Client("not a url")


def test_upload_expires_is_reported():
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,expiration")
        rsps.add(responses.POST, URL, status=201,
                 headers={"Location": UPLOAD, "Upload-Expires": "Wed, 25 Jun 2036 16:00:00 GMT"})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        result = client().put(b"hello")
        assert result.expires == calendar.timegm((2036, 6, 25, 16, 0, 0))


def test_auth_callable_is_called_for_every_request():
    tokens = iter(f"t{i}" for i in range(100))
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "5"})
        client(auth=lambda: {"Authorization": f"Bearer {next(tokens)}"}).put(b"hello")
        seen = [c.request.headers["Authorization"] for c in rsps.calls]
        assert seen == ["Bearer t0", "Bearer t1", "Bearer t2"]


def test_secrets_stay_out_of_reprs_and_errors():
    c = client(headers={"Authorization": "Bearer SECRET"}, auth=lambda: {"X-Key": "SECRET"})
    assert "SECRET" not in repr(c.settings)
    assert "SECRET" not in repr(c)
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=401, body="no")
        with pytest.raises(errors.AuthError) as info:
            c.put(b"x")
        assert "SECRET" not in str(info.value)


def test_one_patch_for_the_whole_file_and_part_sized_ones_after_a_413():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=413, body="too big")
        for end in (4, 8, 10):
            rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": str(end)})
        result = client(part_size=4, checksum=False).put(b"0123456789", key="x.bin")
        patches = [c.request for c in rsps.calls if c.request.method == "PATCH"]
        assert [p.headers["Content-Length"] for p in patches] == ["10", "4", "4", "2"]
        assert [p.headers["Upload-Offset"] for p in patches] == ["0", "0", "4", "8"]
        assert result.size == 10


def test_a_file_larger_than_a_part_is_created_before_its_bytes_go():
    # so that its URL, the resume point, exists before anything can be lost
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,creation-with-upload")
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "10"})
        client(part_size=4).put(b"0123456789")
        post = rsps.calls[1].request
        assert post.headers.get("Content-Length") == "0" and "Upload-Length" in post.headers


def test_a_password_in_the_url_is_basic_auth_and_appears_nowhere_else(caplog):
    caplog.set_level(logging.DEBUG, logger="upclient")
    signed = UPLOAD + "?sig=QUERYSECRET"  # an upload URL may carry a token of its own
    basic = "Basic " + base64.b64encode(b"us@er:P:W0RD").decode()
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,checksum", **{"Tus-Checksum-Algorithm": "sha1"})  # parts of 4 bytes
        rsps.add(responses.POST, URL, status=201, headers={"Location": "/files/abc?sig=QUERYSECRET"})
        rsps.add(responses.PATCH, signed, status=204, headers={"Upload-Offset": "4"})
        rsps.add(responses.PATCH, signed, status=404)  # gone after 4 bytes: UploadExpired names the upload
        c = upclient.Client("tus+http://us%40er:P%3AW0RD@tus.test/files/", store=None, part_size=4,
                            retry=upclient.RetryPolicy(attempts=2, backoff=0))
        with pytest.raises(errors.UploadExpired) as info:
            c.put(b"0123456789")
        assert [call.request.headers.get("Authorization") for call in rsps.calls] == [basic] * 4
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=201, headers={"Location": "/files/abc"})
        for end in (4, 8, 10):
            rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": str(end)})
        result = c.put(b"0123456789")
        assert rsps.calls[-1].request.headers["Authorization"] == basic
    assert result.id == result.url == UPLOAD
    texts = [str(info.value), repr(info.value), repr(info.value.args), caplog.text, repr(c), repr(c.backend),
             c.backend.url, c.backend.endpoint, repr(result), repr(vars(c.backend).get("options"))]
    for text in texts:
        assert "W0RD" not in text and "QUERYSECRET" not in text, text


def test_a_password_in_the_url_and_auth_too_is_bad_input():
    with pytest.raises(errors.BadInput, match="one way") as info:
        upclient.Client("tus+http://user:S3CR3T@tus.test/files/", auth=("user", "other"), store=None)
    assert "S3CR3T" not in str(info.value)
