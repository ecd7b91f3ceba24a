"""Run real third-party tus servers as subprocesses, for tests and benchmarks.

Two servers are supported:

:class:`TusNodeServer`
    The reference Node.js implementation, ``@tus/server`` 2.4.5 with
    ``@tus/file-store`` 2.1.1, started through ``tus-node-server.mjs`` (in
    this package). It needs ``node`` >= 20.19 and the two npm packages,
    which pip cannot install: :mod:`.nodepackages` says where they are
    looked for (``$UPCLIENT_TUS_NODE_MODULES``, a source checkout's
    ``tests/servers``, ``NODE_PATH``, the user cache) and names the
    ``npm install`` command when they are missing. In a source checkout the
    harness runs ``npm ci --prefix tests/servers`` itself the first time.

:class:`ResumableUploadServer`
    The ``resumable-upload`` 0.3.0 package from PyPI (``resumable-upload serve``),
    run with the current Python interpreter.

Both are context managers that start the server on ``127.0.0.1`` with a free
port, wait until it answers, and stop it (SIGTERM, then SIGKILL after a few
seconds) when the ``with`` block ends, also when the block raised::

    with TusNodeServer(tmp_path / "uploads") as server:
        upload_url = create_and_upload(server.url, data)
        assert server.stored_sha256(upload_url) == hashlib.sha256(data).hexdigest()

``stop()`` and ``start()`` restart a server on the same port and directory,
so a client can be shown a server that goes away and comes back.

``TusNodeServer(tls=certs)`` (:class:`~upclient.testing.tls.TLSCertificates`)
serves HTTPS through node's ``https`` module, with ``require_client_cert=True``
mutual TLS; its :attr:`url` is then ``https://127.0.0.1:PORT/files/``.
``resumable-upload`` has no TLS option, so :class:`ResumableUploadServer`
speaks plain HTTP only.

What the servers do (as observed with these exact versions):

* ``@tus/server`` + ``@tus/file-store``: ``Tus-Extension: creation,
  creation-with-upload,creation-defer-length,termination,expiration``; no
  checksum, no concatenation (``Upload-Concat`` answers 501); absolute
  ``Location`` built from the request's ``Host`` header (so through a proxy it
  names the proxy); an upload ``<id>`` (32 hex digits) is stored as the file
  ``<directory>/<id>`` with its record in ``<directory>/<id>.json`` (metadata
  decoded to strings, ``size``, ``creation_date``; the ``offset`` in the JSON
  stays 0, the real offset is the file's size); ``GET <upload url>`` returns
  the bytes of a *finished* upload (404 while unfinished); an empty
  ``Upload-Metadata`` header answers 400; responses have an empty reason
  phrase (``HTTP/1.1 204 ``) and idle keep-alive connections are closed after
  5 s; ``Upload-Expires`` is sent on POST and on PATCH responses while the
  upload is unfinished; after expiry HEAD and PATCH answer 410, finished or
  not. A PATCH cut off midway (reset or FIN) keeps the bytes that arrived:
  HEAD reports them.
* ``resumable-upload`` 0.3.0: ``Tus-Extension: creation,creation-with-upload,
  creation-defer-length,termination,checksum,expiration,concatenation,
  concatenation-unfinished,checksum-trailer`` (``expiration`` is advertised
  even when no expiry is configured; ``Upload-Expires`` is only sent with
  ``--upload-expiry``, and then also for finished uploads);
  ``Tus-Checksum-Algorithm`` lists the configured algorithms; relative
  ``Location`` (``/files/<uuid4>``); an upload is stored as the file
  ``<upload-dir>/<uuid4>`` and its record (metadata as JSON, length, offset,
  expiry) in the SQLite database ``--db-path``; ``GET`` of a finished upload
  only with ``--enable-downloads`` (this harness enables it), else 404; a
  PATCH body is read whole into memory before anything is written, so a
  PATCH cut off by a connection reset stores nothing, while one whose client
  closes its sending side early (FIN) stores the short body and is answered
  204 with the smaller ``Upload-Offset``; an empty ``Upload-Metadata`` header
  is accepted; stopping takes about 0.5 s (its accept loop polls).
"""

from upclient.testing.servers.node import MIN_NODE_VERSION, NODE_BIN_ENV, NODE_DIR_ENV, NODE_MODULES_ENV, TusNodeServer
from upclient.testing.servers.process import ServerStartError, free_port
from upclient.testing.servers.rus import ResumableUploadServer

__all__ = [
    "ServerStartError",
    "TusNodeServer",
    "ResumableUploadServer",
    "free_port",
    "NODE_DIR_ENV",
    "NODE_MODULES_ENV",
    "NODE_BIN_ENV",
    "MIN_NODE_VERSION",
]
