"""A malformed URL is BadInput when the Client is made, for every scheme.

Before, ``urllib.parse`` decided: an unclosed ``[`` was a bare ValueError,
an empty host or a port out of range failed later as a retryable
NetworkError, and a CRLF vanished from the URL without a word.  Nothing here
touches the network: every Client is made and closed, never used.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest

import upclient
from upclient.errors import BadInput

#: Options each scheme's backend needs to be made at all.
NEEDS: Dict[str, Dict[str, Any]] = {
    "tus+http": {},
    "tus+https": {},
    "community+http": {"token": "t0ken"},
    "community+https": {"token": "t0ken"},
    "upyun": {"password": "pw"},
    "fdfs": {},
}

#: A good URL of each scheme, with ``{host}`` where the host goes and ``{path}`` after it.
GOOD = {
    "tus+http": "tus+http://{host}/files/{path}",
    "tus+https": "tus+https://{host}/files/{path}",
    "community+http": "community+http://{host}/api{path}",
    "community+https": "community+https://{host}{path}",
    "upyun": "upyun://operator@{host}{path}",
    "fdfs": "fdfs://{host}{path}",
}
SCHEMES = sorted(GOOD)


def make(url: str) -> upclient.Client:
    scheme = url.partition("://")[0]
    return upclient.Client(url, store=None, **NEEDS.get(scheme, {}))


def url_of(scheme: str, host: str, path: str = "") -> str:
    return GOOD[scheme].format(host=host, path=path)


def refused(url: str) -> BadInput:
    with pytest.raises(BadInput) as info:
        make(url).close()
    assert type(info.value) is not ValueError
    return info.value


@pytest.mark.parametrize("scheme", SCHEMES)
def test_good_urls_make_a_client(scheme):
    hosts = ["127.0.0.1", "example.com", "127.0.0.1:8080", "[::1]", "[::1]:8080", "files.example.com:443"]
    if scheme == "upyun":
        hosts = ["my-service", "svc_2"]
    for host in hosts:
        make(url_of(scheme, host)).close()


def test_fdfs_takes_a_list_of_trackers_others_do_not():
    make("fdfs://10.0.0.1:22122,10.0.0.2:22122,[::1]:22122").close()
    make("fdfs://10.0.0.1,10.0.0.2").close()
    refused("tus+http://10.0.0.1:1080,10.0.0.2:1080/files/")
    refused("fdfs://10.0.0.1:22122,10.0.0.2:99999")
    refused("fdfs://10.0.0.1:22122,[::1:22122")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("host", ["[::1", "[::1:8080", "[not-an-ip]", "[::1]x", "[::1]:80]"])
def test_broken_brackets_are_bad_input_not_a_bare_valueerror(scheme, host):
    err = refused(url_of(scheme, host))
    assert "usable URL" in str(err)


def test_the_issue_s_own_example():
    with pytest.raises(BadInput, match="closing"):
        upclient.Client("tus+http://[::1/files/", store=None)


@pytest.mark.parametrize(
    "url",
    [
        "tus+http:///files/",
        "tus+https://",
        "tus+http://:1080/files/",
        "community+http://",
        "community+https:///api",
        "upyun://operator@",
        "upyun:///",
        "fdfs://",
        "fdfs:///",
        "fdfs://:22122",
        "fdfs://,",
    ],
)
def test_no_host_is_bad_input_at_construction(url):
    assert "host" in str(refused(url))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("port", ["0", "65536", "70000", "99999999999", "-1", "http", "８０", "80:81"])
def test_a_port_out_of_range_or_not_a_number_is_bad_input(scheme, port):
    refused(url_of(scheme, f"127.0.0.1:{port}"))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("char", ["\r\n", "\n", "\r", "\t", " ", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\xa0"])
@pytest.mark.parametrize("where", ["host", "path", "end"])
def test_control_characters_and_spaces_are_bad_input_not_dropped(scheme, char, where):
    if where == "host":
        url = url_of(scheme, "exam" + char + "ple.com")
    elif where == "path":
        url = url_of(scheme, "example.com", "/a" + char + "b")
    else:
        url = url_of(scheme, "example.com") + char
    err = refused(url)
    assert "control character or space" in str(err)
    assert repr(char[0]) in str(err)  # says which, visibly


def test_a_crlf_header_injection_attempt_is_refused():
    refused("tus+http://example.com/files/\r\nX-Injected: 1\r\n")


def test_percent_encoded_characters_stay_allowed():
    make("tus+http://example.com/files/a%20b%0D%0A").close()


def test_the_password_in_a_url_never_reaches_the_message():
    for url in (
        "tus+http://user:s3cret-pw@[::1/files/",
        "tus+http://user:s3cret-pw@example.com:70000/files/",
        "tus+http://user:s3cret-pw@example.com/files/\r\n",
        "community+https://user:s3cret-pw@/api",
    ):
        err = refused(url)
        assert "s3cret-pw" not in str(err) and "s3cret-pw" not in repr(err)
        assert "user:***" in str(err)


def test_not_a_url_at_all():
    for url in ("example.com/files/", "", "://example.com", "tus+http//example.com/"):
        refused(url)


def test_the_command_line_says_usage_error_for_a_bad_url(tmp_path):
    from upclient.cli import main

    path = tmp_path / "f.bin"
    path.write_bytes(b"x")
    for url in ("tus+http://[::1/files/", "tus+http:///files/", "fdfs://127.0.0.1:70000",
                "tus+http://example.com/files/\r\n"):
        assert main(["put", str(path), "--to", url, "--store", str(tmp_path / "s"), "-q"]) == 2


def test_a_registered_scheme_is_checked_too(monkeypatch):
    from upclient import backends

    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    monkeypatch.setattr(backends, "_MANY_HOSTS", set(backends._MANY_HOSTS))
    backends.register("mine", "upclient.backends.tus:TusBackend")  # never made: every URL is refused first
    for url in ("mine://[::1/x", "mine://h:0/x", "mine://h/x\r\n", "mine:///x", "mine://a:1,b:2/x"):
        refused(url)
    backends.register("many", "upclient.backends.tus:TusBackend", many_hosts=True)
    with pytest.raises(BadInput, match="tus\\+http"):  # the list passes; the backend then says what it wants
        make("many://a:1,b:2/x")


def test_the_hint_for_a_scheme_without_its_backend_keeps_the_password_out():
    with pytest.raises(BadInput, match=r"did you mean tus\+http://user:\*\*\*@example.com/files/") as info:
        make("http://user:s3cret-pw@example.com/files/")
    assert "s3cret-pw" not in str(info.value)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:99999", "127.0.0.1:0", "[::1:80", "host name:80", "a\r\nb:80"])
@pytest.mark.parametrize("option", ["endpoint", "purge_endpoint", "process_endpoint"])
def test_a_bad_upyun_endpoint_is_bad_input_at_construction(endpoint, option):
    with pytest.raises(BadInput):
        upclient.Client("upyun://op@svc", password="pw", store=None, **{option: endpoint})


@pytest.mark.parametrize("userinfo", ["alice:S3CRET-pw@", "alice@", ":S3CRET-pw@"])
def test_a_fastdfs_url_with_a_user_or_password_is_bad_input_that_does_not_show_it(userinfo):
    # FastDFS has no users: a password there would only be carried around (reprs, host names, errors)
    err = refused(f"fdfs://{userinfo}127.0.0.1:22122,127.0.0.2:22122")
    assert "S3CRET" not in str(err) and "user" in str(err)
