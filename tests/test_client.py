"""Client construction: settings validation, TLS and secrets."""

from __future__ import annotations

import logging
import re

import pytest
import responses

import upclient
from upclient import errors


@pytest.mark.parametrize(
    "kwargs",
    [{"part_size": 0}, {"part_size": -5}, {"concurrency": 0}, {"max_files": 0},
     {"connect_timeout": 0}, {"retry": 3}, {"store": "somewhere"}],
)
def test_bad_settings_are_bad_input(kwargs):
    with pytest.raises(errors.BadInput):
        upclient.Client("tus+http://127.0.0.1:1/files/", **kwargs)


def test_tls_settings_reach_the_http_session(tmp_path):
    client = upclient.Client("tus+https://example.test/files/", verify=str(tmp_path / "ca.pem"),
                             cert=("c.pem", "k.pem"), store=None)
    session = client.backend.http.session
    assert session.verify == str(tmp_path / "ca.pem")
    assert session.cert == ("c.pem", "k.pem")
    assert upclient.Client("tus+https://example.test/files/", store=None).backend.http.session.verify is True


def test_credentials_in_the_url_stay_out_of_reprs_logs_and_errors(caplog):
    url = "tus+http://user:hunter2@tus.test/files/"
    client = upclient.Client(url, store=None, retry=upclient.RetryPolicy.never())
    assert "hunter2" not in repr(client)
    caplog.set_level(logging.DEBUG, logger="upclient")
    with responses.RequestsMock() as rsps:
        rsps.add(responses.OPTIONS, re.compile(r"http://(user:hunter2@)?tus\.test/files/"), status=500, body="down")
        with pytest.raises(errors.ServiceError) as info:
            client.put(b"x")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in caplog.text


def test_the_default_store_is_a_file_store():
    client = upclient.Client("tus+http://127.0.0.1:1/files/")
    assert isinstance(client.store, upclient.FileStore)
    assert isinstance(upclient.Client("tus+http://127.0.0.1:1/files/", store=None).store, upclient.MemoryStore)


def test_stream_without_size_needs_a_streaming_backend(tmp_path):
    from upclient.backends.base import Backend
    from upclient.settings import Settings

    class NoStreams(Backend):
        name = "nostreams"

    import io

    class Pipe(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            return 0

    client = upclient.Client(NoStreams("x://", Settings()), store=None)
    with pytest.raises(errors.BadInput, match="size"):
        client.put(Pipe())
