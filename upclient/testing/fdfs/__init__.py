"""An emulator of a FastDFS tracker and storage (the native TCP protocol), for tests.

:class:`FdfsServer` runs real TCP servers on ``127.0.0.1``: one or more
trackers sharing one state and one storage per group, each on its own port,
answering byte for byte as FastDFS 6.16 (``fdfs_trackerd`` and
``fdfs_storaged``) does, quirks included. It is checked against the protocol
facts in ``tests/test_fdfs_emulator.py`` and against the official PyPI
client ``fastdfs-client`` 1.3.0 in ``tests/test_fdfs_sdk.py``; it shares no
code with upclient's FastDFS backend, so the two check each other::

    with FdfsServer(tmp_path / "fdfs") as server:
        client = make_client(server.url)               # fdfs://127.0.0.1:PORT
        file_id = client.upload(b"hello", ext="txt")   # group1/M00/00/00/fwAAAW...ABC123.txt
        assert server.stored_sha256(file_id) == hashlib.sha256(b"hello").hexdigest()
        server.fail(24, after=1000)    # the next append is cut after 1000 body bytes
        server.stall(role="storage", times=None)   # every storage request hangs, as after SIGSTOP
        server.stop_tracker(0)         # tracker 0 refuses connections (start_tracker(0): back)

The package, one job a module:

* :mod:`.codec`: the wire format (framing, commands, fields, metadata
  records) and file names (:class:`FileIdCodec`, :class:`DecodedId`);
* :mod:`.store`: one group's files on disk (:class:`FileStore`);
* :mod:`.node`: a group's storage, its counters (:class:`StorageStats`);
* :mod:`.connection`: listeners, the request loop of a connection, one
  request's body and reply, where faults act, and what they need of the
  server (the :class:`~.connection.Emulator` Protocol);
* :mod:`.tracker` and :mod:`.storage`: what each command does, with tables
  of the commands and the quirks of the real servers reproduced;
* :mod:`.server`: :class:`FdfsServer`, its life, addresses, files, faults
  and counters.

Faults: :meth:`FdfsServer.fail` breaks the next requests with a given
command number (storage or tracker): the connection is dropped after
``after`` bytes of the request body were read (when the body is shorter
than that, the command takes effect and the reply is lost), or an error
status is answered (after the body was read; the storage then closes the
connection if the status is 22). :meth:`FdfsServer.stall` hangs requests
as a storage stopped with SIGSTOP, for tests of deadlines: the header is
read, then the body (or only its first ``after`` bytes), and nothing is
answered until ``seconds`` have passed or the server stops. Connections end
as a process closes a socket, with a bare ``close()``: a reset when bytes of
the request are still unread (a drop mid-body), a FIN otherwise (a lost
reply); after an error reply the storage sends its FIN first and drains what
the client still sends for up to a second, so the client reads the reply
before the connection goes.
:attr:`FdfsServer.counts` counts the requests per command number,
:attr:`FdfsServer.connections` the TCP connections accepted. Nothing prints:
every error is logged at DEBUG on the ``upclient.testing.fdfs`` logger.
"""

from upclient.testing.fdfs.codec import DecodedId, FileIdCodec, pack_metadata, parse_metadata
from upclient.testing.fdfs.node import StorageStats
from upclient.testing.fdfs.server import FdfsServer
from upclient.testing.fdfs.store import FileStore

__all__ = ["FdfsServer", "FileIdCodec", "DecodedId", "FileStore", "StorageStats", "parse_metadata", "pack_metadata"]
