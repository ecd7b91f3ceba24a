"""The tus sessions on the engine's seam, driven by hand with ``responses``:
no I/O before start(), one request per try of a part, and what the server's
answers ask for returned as hints (never a loop inside the session)."""

from __future__ import annotations

import pytest
import responses

import upclient
from upclient import errors
from upclient.source import open_source
from upclient.transfer import PartIO, Restart, Resync, StopSignal

URL = "http://tus.test/files/"
UPLOAD = "http://tus.test/files/abc"
OTHER = "http://tus.test/files/def"


def backend(**kw):
    kw.setdefault("store", None)
    kw.setdefault("retry", upclient.RetryPolicy(attempts=3, backoff=0))
    return upclient.Client("tus+" + URL, **kw).backend


def options(rsps, extensions="creation,termination", **headers):
    h = {"Tus-Version": "1.0.0", "Tus-Extension": extensions}
    h.update(headers)
    rsps.add(responses.OPTIONS, URL, status=204, headers=h)


def send(session, source, part):
    return session.send_part(part, PartIO(source, part, lambda n: None, StopSignal()))


def test_making_a_backend_and_an_upload_sends_nothing():
    with responses.RequestsMock() as rsps:  # nothing registered: any request fails
        b = backend()
        src = open_source(b"0123456789")
        for options_, state in (({}, None), ({"upload_url": UPLOAD}, None), ({}, {"mode": "serial", "url": UPLOAD}),
                                ({}, {"mode": "concat", "size": 10, "part_size": 4, "partials": {}})):
            b.open_upload(src, key="k", metadata={}, options=options_, state=state)
        assert len(rsps.calls) == 0


def test_after_a_413_each_try_of_the_part_is_one_patch_and_says_where_the_server_stands():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=413)
        for end in (4, 8, 10):
            rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": str(end)})
        src = open_source(b"0123456789")
        session = backend(part_size=4, checksum=False).open_upload(src, key=None, metadata={}, options={}, state=None)
        session = session.start()
        (part,) = session.pending_parts()  # the whole file, as one streamed PATCH
        hints = []
        while True:
            before = len(rsps.calls)
            hint = send(session, src, part)
            assert len(rsps.calls) == before + 1
            if hint is None:
                break
            hints.append(hint)
            session.recover(part, hint)
        assert all(isinstance(h, Resync) for h in hints)
        assert [h.offset for h in hints] == [0, 4, 8]
        assert session.confirmed(part) == 10
        assert session.finish().size == 10


def test_an_upload_gone_under_the_first_part_is_created_again():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=404)
        rsps.add(responses.POST, URL, status=201, headers={"Location": OTHER})
        rsps.add(responses.PATCH, OTHER, status=204, headers={"Upload-Offset": "10"})
        src = open_source(b"0123456789")
        session = backend(part_size=4, checksum=False).open_upload(src, key=None, metadata={}, options={}, state=None)
        session = session.start()
        (part,) = session.pending_parts()
        hint = send(session, src, part)
        assert isinstance(hint, Restart) and hint.upload_id == UPLOAD
        session.recover(part, hint)
        assert send(session, src, part) is None
        assert session.finish().id == OTHER


def test_an_upload_gone_midway_fails_with_what_to_do():
    # earlier parts went into the lost upload: the session cannot send them
    # again, so it says that the next put starts afresh
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,checksum", **{"Tus-Checksum-Algorithm": "sha1"})
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=204, headers={"Upload-Offset": "4"})
        rsps.add(responses.PATCH, UPLOAD, status=410)
        with pytest.raises(errors.UploadExpired, match="put the file again"):
            upclient.Client("tus+" + URL, part_size=4, store=None).put(b"0123456789")


def test_a_partial_upload_gone_is_created_again():
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,concatenation")
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=404)
        rsps.add(responses.POST, URL, status=201, headers={"Location": OTHER})
        rsps.add(responses.PATCH, OTHER, status=204, headers={"Upload-Offset": "4"})
        src = open_source(b"0123456789")
        session = backend(part_size=4).open_upload(src, key=None, metadata={}, options={}, state=None)
        session = session.start()
        assert session.parallel
        first = session.pending_parts()[0]
        hint = send(session, src, first)
        assert isinstance(hint, Restart)
        session.recover(first, hint)
        assert send(session, src, first) is None
        assert session.state()["partials"] == {"0": {"url": OTHER, "done": True}}


def test_a_conflict_without_an_offset_is_resynchronised_by_head():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.POST, URL, status=201, headers={"Location": UPLOAD})
        rsps.add(responses.PATCH, UPLOAD, status=409)
        rsps.add(responses.HEAD, UPLOAD, status=200, headers={"Upload-Offset": "7", "Upload-Length": "10"})
        src = open_source(b"0123456789")
        session = backend(part_size=4, checksum=False).open_upload(src, key=None, metadata={}, options={}, state=None)
        session = session.start()
        (part,) = session.pending_parts()
        hint = send(session, src, part)
        assert isinstance(hint, Resync) and hint.offset is None
        session.recover(part, hint)
        assert session.confirmed(part) == 7


def test_an_upload_url_given_by_the_caller_is_never_replaced():
    # unlike a resume record, upload_url= is the caller's word: if it cannot be
    # reached or is gone, the put fails and says so
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        options(rsps)
        rsps.add(responses.HEAD, UPLOAD, status=404)
        client = upclient.Client("tus+" + URL, store=None, retry=upclient.RetryPolicy.never())
        with pytest.raises(errors.UploadExpired):
            client.put(b"0123456789", upload_url=UPLOAD)
        with pytest.raises(errors.BadInput, match="trusted_origins"):  # another origin: refused before any request
            client.put(b"0123456789", upload_url="http://elsewhere.test/files/x")
        trusting = upclient.Client("tus+" + URL, store=None, retry=upclient.RetryPolicy.never(),
                                   trusted_origins=["http://elsewhere.test"])
        with pytest.raises(errors.NetworkError):  # nothing registered for it: connection refused
            trusting.put(b"0123456789", upload_url="http://elsewhere.test/files/x")
        assert not any(c.request.method == "POST" for c in rsps.calls)


def test_a_stored_upload_for_another_length_starts_afresh():
    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.HEAD, UPLOAD, status=200, headers={"Upload-Offset": "2", "Upload-Length": "99"})
        rsps.add(responses.POST, URL, status=201, headers={"Location": OTHER})
        src = open_source(b"0123456789")
        session = backend().open_upload(src, key=None, metadata={}, options={},
                                        state={"mode": "serial", "url": UPLOAD})
        session = session.start()
        assert not session.resumed and session.upload_id == OTHER


def test_stored_partials_on_a_host_that_never_answers_are_given_up_after_the_retries():
    # the endpoint answers; HEAD of every stored partial breaks (nothing is
    # registered for them): the retries are spent on the first, then all go
    state = {"mode": "concat", "size": 12, "part_size": 4,
             "partials": {str(i): {"url": f"{URL}p{i}", "done": False} for i in range(3)}}
    with responses.RequestsMock() as rsps:
        options(rsps, "creation,concatenation")
        b = backend(part_size=4)
        src = open_source(b"0123456789ab")
        made = []

        def open_session():
            made.append(b.open_upload(src, key=None, metadata={}, options={}, state=state))
            return made[-1].start()

        session = b.settings.retry.call(open_session)
        heads = [c for c in rsps.calls if c.request.method == "HEAD"]
        assert len(made) == 3 and len(heads) == 3 + 2
        assert not session.resumed
        assert [p.index for p in session.pending_parts()] == [0, 1, 2]
        assert b._unreachable == {}  # forgotten once the upload started


def test_a_stored_url_elsewhere_is_kept_while_the_endpoint_cannot_be_reached_either():
    # nothing says the record is stale when the server cannot be reached at
    # all: the error stands, the retries (and the next run) try again
    import requests

    with responses.RequestsMock() as rsps:
        options(rsps)
        rsps.add(responses.OPTIONS, URL, body=requests.ConnectionError("refused"))
        b = backend()
        b.capabilities()  # known from an earlier upload
        session = b.open_upload(open_source(b"0123456789"), key=None, metadata={}, options={},
                                state={"mode": "serial", "url": "http://moved.test/files/abc"})
        with pytest.raises(errors.NetworkError, match="moved.test"):
            session = session.start()
        assert not any(c.request.method == "POST" for c in rsps.calls)
