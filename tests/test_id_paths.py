"""Ids and keys that would leave the API's path are BadInput, before any request.

An app that passes a user's id to ``client.info`` / ``get`` / ``delete``
must not be steered to another endpoint or host with its credentials:
``..`` segments (urllib3 removes them), ``?`` and ``#``, backslashes,
control characters, URLs.  Each case is checked against a real server that
counts what it receives (nothing), or with ``responses`` and no route
registered (any request would fail as a connection error, not BadInput).
Ids that are merely odd are percent-encoded and reach the server intact.
"""

from __future__ import annotations

import hashlib

import pytest
import responses

import upclient
from upclient import errors
from upclient.backends.fdfs import FileId
from upclient.testing import CommunityServer, FdfsServer, UpyunServer

TOKEN = "t0k3n-for-id-tests"

#: Ids that leave an API's path, for backends whose ids are opaque names.
HOSTILE = [
    "../../admin/delete?x=1",
    "..",
    ".",
    "%2e%2e",
    "a/../../b",
    "a/b",
    "a?x=1",
    "a#frag",
    "a\\..\\b",
    "a\r\nX-Injected: 1",
    "a\tb",
    "a\x7fb",
    "http://127.0.0.1:9/x",
    "//127.0.0.1:9/x",
    "",
]


def verbs(client):
    return {
        "info": client.info,
        "delete": client.delete,
        "get": client.get,
        "exists": client.exists,
    }


# -- community --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def community(tmp_path_factory):
    with CommunityServer(tmp_path_factory.mktemp("community-ids"), tokens={TOKEN}, min_part_size=1024) as server:
        yield server


def community_client(server, **kw):
    kw.setdefault("store", None)
    return upclient.Client("community+" + server.url, token=TOKEN, **kw)


@pytest.mark.parametrize("verb", ["info", "delete", "get", "exists"])
@pytest.mark.parametrize("bad_id", HOSTILE)
def test_community_ids_that_leave_the_path_never_reach_the_server(community, verb, bad_id):
    with community_client(community) as client:
        before = community.request_count()
        with pytest.raises(errors.BadInput):
            verbs(client)[verb](bad_id)
        assert community.request_count() == before


def test_the_issue_s_own_community_example_sends_nothing(community):
    with community_client(community) as client:
        before = community.request_count()
        with pytest.raises(errors.BadInput, match="leave the API's path"):
            client.delete("../../admin/delete?x=1")
        assert community.request_count() == before


def test_a_community_id_round_trips_and_odd_ones_are_encoded(community):
    with community_client(community) as client:
        result = client.put(b"some bytes", key="a.bin")
        assert client.info(result.id).size == 10  # a real id still works
        assert client.get(result.id) == b"some bytes"
    base = "http://api.test"
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, base + "/api/community/file/a%20b%2Bc%3A%40%25", status=404,
                 json={"code": 404, "message": "no such file", "data": None})
        with upclient.Client("community+" + base, token=TOKEN, store=None,
                             retry=upclient.RetryPolicy.never()) as client:
            with pytest.raises(errors.NotFound):
                client.info("a b+c:@%")
        assert rsps.calls[0].request.url == base + "/api/community/file/a%20b%2Bc%3A%40%25"


@pytest.mark.parametrize("part_url", ["file:///etc/passwd", "ftp://store.test/p1", "/relative/p1",
                                      "http://store.test/p1\r\nX-Injected: 1", "http:///p1"])
def test_a_part_url_that_is_not_http_is_a_service_error_before_any_part(tmp_path, part_url):
    base = "http://api.test"
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"0123456789")
    layout = {"file_id": "f1", "status": "pending",
              "parts": [{"part_number": 1, "start": 0, "end": 10, "size": 10, "upload_url": part_url,
                         "uploaded": False, "etag": None}]}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, base + "/api/community/file/upload/init", json={"code": 0, "data": layout})
        with upclient.Client("community+" + base, token=TOKEN, store=None, part_size=10,
                             retry=upclient.RetryPolicy.never()) as client:
            with pytest.raises(errors.ServiceError, match="part URL"):
                client.put(src)
        assert [c.request.method for c in rsps.calls] == ["POST"]


@pytest.mark.parametrize("cdn_url", ["file:///etc/passwd", "ftp://cdn.test/f1", "/cdn/f1"])
def test_a_download_url_that_is_not_http_is_a_service_error(cdn_url):
    base = "http://api.test"
    f = {"id": "f1", "file_size": 10, "file_md5": hashlib.md5(b"x").hexdigest(), "status": "confirmed",
         "cdn_url": cdn_url, "oss_url": None}
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, base + "/api/community/file/f1", json={"code": 0, "data": f})
        with upclient.Client("community+" + base, token=TOKEN, store=None,
                             retry=upclient.RetryPolicy.never()) as client:
            with pytest.raises(errors.ServiceError, match="download URL"):
                client.get("f1")
        assert len(rsps.calls) == 1


@pytest.mark.parametrize("url", ["community+http://api.test/x?y=1", "community+http://api.test/#x"])
def test_a_community_url_with_a_query_or_fragment_is_bad_input(url):
    with pytest.raises(errors.BadInput):
        upclient.Client(url, token=TOKEN, store=None)


# -- UPYUN ------------------------------------------------------------------------------

UPYUN_BAD_KEYS = ["a\\b", "..\\x", "a\tb", "a\x7fb", "a\x1bb", "../x", "a/./b"]


@pytest.fixture
def upyun(tmp_path):
    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password="pw") as server:
        yield server


def upyun_client(server, **kw):
    kw.setdefault("store", None)
    return upclient.Client("upyun://op@svc", password="pw", endpoint=server.endpoint, **kw)


@pytest.mark.parametrize("key", UPYUN_BAD_KEYS)
def test_upyun_keys_with_backslashes_control_characters_or_dots_never_reach_the_server(upyun, key):
    with upyun_client(upyun) as client:
        before = upyun.request_count()
        calls = [
            lambda: client.info(key), lambda: client.get(key), lambda: client.delete(key),
            lambda: client.put(b"x", key=key), lambda: client.move(key, "ok.txt"),
            lambda: client.copy("ok.txt", key), lambda: client.set_metadata(key, {"a": "b"}),
            lambda: client.mkdir(key), lambda: client.list_page(key),
        ]
        for call in calls:
            with pytest.raises(errors.BadInput):
                call()
        assert upyun.request_count() == before


def test_upyun_keys_with_query_and_fragment_characters_stay_in_the_path(upyun):
    key = "dir/what?x=1#frag%2e.txt"
    with upyun_client(upyun) as client:
        client.put(b"payload", key=key)
        assert client.get(key) == b"payload"
        assert [e.id for e in client.iter("dir")] == ["dir/" + key.split("/", 1)[1]]
    assert upyun.stored_bytes(key) == b"payload"


@pytest.mark.parametrize("service", ["..", "%2e%2e", ".", "a%2Fb", "a%5Cb", "a%0Ab", "a%3Fb", "a%23b"])
def test_an_upyun_service_name_that_could_escape_is_bad_input(service):
    with pytest.raises(errors.BadInput, match="service"):
        upclient.Client(f"upyun://op@{service}", password="pw", store=None)


@pytest.mark.parametrize("uuid", ["u\r\nX-Injected: 1", "u u", "u\x00"])
def test_an_upyun_upload_uuid_with_control_characters_is_bad_input(upyun, uuid):
    with upyun_client(upyun, part_size=1024 * 1024) as client:
        before = upyun.request_count()
        with pytest.raises(errors.BadInput, match="uuid"):
            client.abort(f"big.bin#{uuid}")
        with pytest.raises(errors.BadInput, match="uuid"):
            client.put(b"x" * (2 * 1024 * 1024), key="big.bin", uuid=uuid)
        assert upyun.request_count() == before


@pytest.mark.parametrize("endpoint", ["http://user:pw@127.0.0.1:9", "http://127.0.0.1:9?x=1",
                                      "http://127.0.0.1:9#x", "http://127.0.0.1:9\r\nX-Injected: 1"])
def test_an_upyun_endpoint_with_userinfo_query_or_fragment_is_bad_input(endpoint):
    with pytest.raises(errors.BadInput) as info:
        upclient.Client("upyun://op@svc", password="pw", endpoint=endpoint, store=None)
    assert "pw@" not in str(info.value)


# -- tus --------------------------------------------------------------------------------

TUS = "http://tus.test/files/"

TUS_HOSTILE = [
    "../admin",
    "../../admin/delete",
    "a/../../admin",
    "%2e%2e/admin",
    "a/%2E%2E/%2e%2e/admin",
    "a%2F..%2F..%2Fadmin",
    "./abc",
    "abc#frag",
    "abc?x=1",
    "a\\..\\admin",
    "abc\r\nX-Injected: 1",
    "abc\tdef",
    "",
    "http://tus.test/files/../admin",
    "http://tus.test/files/abc#frag",
    "http://user:pw@tus.test/files/abc",
    "ftp://tus.test/files/abc",
    "http://other.test/files/abc",
    "https://tus.test/files/abc",
    "http://tus.test:8080/files/abc",
    "//other.test/files/abc",
]


def tus_client(**kw):
    kw.setdefault("store", None)
    kw.setdefault("retry", upclient.RetryPolicy.never())
    return upclient.Client("tus+" + TUS, **kw)


@pytest.mark.parametrize("verb", ["info", "delete", "get", "exists"])
@pytest.mark.parametrize("bad_id", TUS_HOSTILE)
def test_tus_ids_off_the_endpoint_s_origin_or_climbing_out_send_nothing(verb, bad_id):
    with responses.RequestsMock() as rsps:  # nothing registered: any request is a NetworkError
        with tus_client() as client:
            with pytest.raises(errors.BadInput) as info:
                verbs(client)[verb](bad_id)
        assert not rsps.calls
    assert "pw@" not in str(info.value)


@pytest.mark.parametrize("bad_id", TUS_HOSTILE)
def test_tus_upload_url_of_put_is_checked_the_same_way(bad_id):
    with responses.RequestsMock() as rsps:
        with tus_client() as client:
            with pytest.raises(errors.BadInput):
                client.put(b"0123456789", upload_url=bad_id)
        assert not rsps.calls


@pytest.mark.parametrize("good_id, url", [
    ("abc", TUS + "abc"),
    ("abc/def", TUS + "abc/def"),
    ("/files/abc", TUS + "abc"),
    ("http://tus.test/files/abc", TUS + "abc"),
    ("http://tus.test/files/abc?token=x", TUS + "abc?token=x"),
    ("a%20b", TUS + "a%20b"),
])
def test_tus_ids_below_the_endpoint_or_on_its_origin_are_asked(good_id, url):
    with responses.RequestsMock() as rsps:
        rsps.add(responses.HEAD, url, status=200,
                 headers={"Upload-Offset": "3", "Upload-Length": "3", "Tus-Resumable": "1.0.0"})
        with tus_client() as client:
            assert client.info(good_id).size == 3
        assert len(rsps.calls) == 1


def test_a_tus_id_on_a_trusted_origin_is_asked():
    other = "http://other.test/files/abc"
    with responses.RequestsMock() as rsps:
        rsps.add(responses.HEAD, other, status=200, headers={"Upload-Offset": "1", "Upload-Length": "1"})
        with tus_client(trusted_origins=["http://other.test"]) as client:
            assert client.info(other).size == 1
        assert len(rsps.calls) == 1


# -- FastDFS ----------------------------------------------------------------------------

NAME = "fwAAAWsBleuASNlKAAGGoH_dGuY316"


@pytest.fixture(scope="module")
def fdfs(tmp_path_factory):
    with FdfsServer(tmp_path_factory.mktemp("fdfs-ids")) as server:
        yield server


@pytest.mark.parametrize("bad_id", [
    f"group1/M00/00/00/{NAME}\\..\\..\\x.bin",
    f"group1/M00/00/00/{NAME}\x00.bin",
    f"group1/M00/00/00/{NAME}.bin?x=1",
    f"group1/M00/00/00/{NAME}.bin#x",
    f"group1/M00/00/00/{NAME} x.bin",
    f"group1/M00/00/00/{NAME}\r\n.bin",
    f"group1/M00/00/00/{NAME}%2F..%2Fx",
])
def test_fdfs_ids_with_path_tricks_are_bad_input_before_any_request(fdfs, bad_id):
    with pytest.raises(errors.BadInput, match="not a FastDFS file id"):
        FileId.parse(bad_id)
    with upclient.Client(fdfs.url, store=None) as client:
        fdfs.reset_counts()
        for verb in (client.info, client.get, client.delete, client.exists):
            with pytest.raises(errors.BadInput):
                verb(bad_id)
        assert sum(fdfs.counts.values()) == 0, fdfs.counts


def test_fdfs_real_ids_still_parse():
    for good in (f"group1/M00/00/00/{NAME}.bin", f"group1/M00/00/00/{NAME}_big.tar.gz",
                 f"g-2/M0A/FF/0c/{NAME}123"):
        assert str(FileId.parse(good)) == good
