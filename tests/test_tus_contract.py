"""The backend contract, run by the tus backend against real tus servers:
the reference Node server (serial PATCH, creation-with-upload) and the
resumable-upload server (parallel concatenation, checksums), plus that
server with concatenation turned off (serial PATCH with checksums)."""

from __future__ import annotations

import pytest

import upclient

from .contract import BackendContract


def _factory(server, **backend_options):
    def make(**settings):
        settings.setdefault("store", None)
        return upclient.Client("tus+" + server.url, **backend_options, **settings)

    return make


class TestNodeServer(BackendContract):
    __test__ = True

    @pytest.fixture
    def client_factory(self, node_server):
        return _factory(node_server)

    @pytest.fixture
    def stored_sha256(self, node_server):
        return lambda result: node_server.stored_sha256(result.id)


class TestResumableUploadConcat(BackendContract):
    __test__ = True

    @pytest.fixture
    def client_factory(self, rus_server):
        return _factory(rus_server)

    @pytest.fixture
    def stored_sha256(self, rus_server):
        return lambda result: rus_server.stored_sha256(result.id)


class TestResumableUploadSerialChecksum(BackendContract):
    __test__ = True

    @pytest.fixture
    def client_factory(self, rus_server):
        return _factory(rus_server, concat=False)

    @pytest.fixture
    def stored_sha256(self, rus_server):
        return lambda result: rus_server.stored_sha256(result.id)
