"""An emulator of the community multipart upload API, for tests.

:class:`CommunityServer` is a real HTTP/1.1 server (stdlib
:mod:`http.server`, keep-alive, a bounded number of connection threads) on
``127.0.0.1`` that implements every endpoint of the community multipart
protocol, as the official SDK ``community-uploader`` 1.0.1 speaks it (its
upload, dedup, resume, info, list, by-URL and delete run against it
unchanged: ``tests/test_community_sdk.py``), and stores files on disk::

    with CommunityServer(tmp_path / "community", tokens={"t0k3n"}, min_part_size=64 * 1024) as server:
        run_client(server.url, token="t0k3n")
        server.fail_part(3, status=503)          # the next PUT of part 3 answers 503
        server.expire_urls()                     # every part URL issued so far is expired
        assert server.stored_sha256(file_id) == hashlib.sha256(data).hexdigest()

API routes (JSON; envelope ``{"code": 0, "message": "ok", "data": ...}``):

=========  ===============================================  ================
init       ``POST /api/community/file/upload/init``          counter ``init``
complete   ``POST /api/community/file/upload/complete``      ``complete``
abort      ``POST /api/community/file/upload/abort``         ``abort``
info       ``GET /api/community/file/{file_id}``             ``info``
by key     ``GET /api/community/file/by-key?file_key=``      ``by_key``
list       ``GET /api/community/file?page=&page_size=...``   ``list``
delete     ``DELETE /api/community/file/{file_id}``          ``delete``
=========  ===============================================  ================

Storage routes (no API auth; errors are OSS-like XML ``<Error><Code>..``):

* ``PUT /upload/{file_id}/{part_number}?Expires=&Gen=&Signature=``: a
  presigned part URL (counter ``part``). ``Signature`` is the hex
  HMAC-SHA256, with a per-server secret, of ``"PUT\\n{path}\\n{Expires}\\n{Gen}"``.
  403 ``SignatureDoesNotMatch`` if the signature does not match (tampered
  path, expiry or generation) or if the request has a ``Content-Type``
  header (a real store signs it); 403 ``AccessDenied`` once ``clock() >
  Expires`` or after :meth:`CommunityServer.expire_urls`; 404
  ``NoSuchUpload`` if the upload is gone (completed, aborted, deleted);
  409 while the upload is being assembled; 400 ``InvalidPartSize`` unless
  the body is exactly the part's size (``Content-Length`` or chunked). The
  body is streamed to a temporary file in 1 MiB blocks with its MD5
  computed on the way, then renamed into place: a part cut off midway
  stores nothing. 200 with ``ETag: "<md5 hex>"``; sending a part again
  replaces it.
* ``GET``/``HEAD /oss/{file_key}``, ``/cdn/{file_key}``, ``/ik/{file_key}``:
  the bytes of a confirmed file (``oss_url``, ``cdn_url`` and
  ``imagekit_url`` point here), with ``Range`` (one range; 206 and
  ``Content-Range``, 416 when unsatisfiable), ``ETag``, ``Accept-Ranges``
  (counter ``download``).

Auth: ``Authorization: Bearer <token>`` with a token given to the
constructor (the user is the one ``tokens`` maps it to, or
:meth:`CommunityServer.user_for_token`), or ``X-API-Key: <key>`` with a key
given to the constructor; with an API key, ``user_id`` is required in the
bodies of init and complete (``org_id`` optional). Anything else: HTTP 401.
A bearer user may complete, abort and delete only their own uploads and
lists only their own files; an API key may act on any file and list
everything (or one user's files with ``user_id=`` in the query). Info and
by-key are open to every authenticated caller.

HTTP errors (status >= 400, body ``{"code": <status>, "message": ...,
"data": null}``, always JSON: the official SDK parses the body before it
looks at the status): 400 malformed JSON, 401 auth, 403 not the owner, 404
unknown file or route, 405 wrong method, 413 JSON body over 1 MiB.

Business errors (HTTP 200, ``code`` below, ``message``, ``data`` null unless
said; 1000 is never an error code, the SDK counts it as success):

====  ==============================================================
1001  invalid ``category`` (general, video, image, document, avatar, cover)
1002  invalid ``file_md5`` (32 lower-case hex digits)
1003  invalid ``file_ext`` (lower-case letters and digits, no dot, at most
      16; empty is allowed: the SDK sends ``""`` for a name without one)
1004  invalid ``file_size`` (an integer >= 0)
1005  invalid ``part_size`` (an integer > 0 when given)
1006  ``user_id`` missing with API-key auth (init, complete)
1007  invalid request: body not a JSON object, ``file_id`` / ``metadata`` /
      ``content_type`` / ``file_key`` missing or of the wrong type, bad
      ``page`` / ``page_size`` / ``status`` in a list query
1011  complete: parts missing (``data``: ``{"missing_parts": [n, ...]}``);
      the upload stays open
1012  complete: the assembled file's MD5 is not ``file_md5``; the upload's
      status becomes ``failed`` and its parts are dropped
1013  wrong state: complete of a failed upload, abort of a confirmed file
====  ==============================================================

Init answers (``data``):

* dedup: a confirmed, undeleted file with the same ``file_md5`` and
  ``file_size`` (whoever uploaded it) -> ``{"status": "completed",
  "file_id": ..., "file": <file object>}`` (the existing file; nothing is
  copied).
* resume: an open upload (``pending`` or ``uploading``) of the same MD5,
  size and user -> the same ``file_id`` and part layout (a new
  ``part_size`` is ignored), ``uploaded``/``etag`` per part and fresh
  presigned URLs for every part; ``status`` is ``"resuming"`` when at least
  one part is stored, else ``"pending"``.
* otherwise a new upload: ``status: "pending"``.

The non-dedup answer is ``{"file_id", "status", "file_key", "part_size",
"total_parts", "parts", "url_expires_at"}`` (epoch seconds), each part
``{"part_number", "start", "end", "size", "upload_url", "uploaded",
"etag"}`` with ``end = start + size`` (exclusive: the SDK slices
``data[start:end]`` for bytes and reads ``size`` bytes at ``start`` for
files) and ``etag`` the stored part's ETag as the PUT answered it (quoted
MD5 hex), ``null`` until stored. Complete needs no part list: the server
knows what it holds.

Part layout: part size = the requested ``part_size`` or ``default_part_size``
(8 MiB), raised to ``min_part_size`` (5 MiB by default, the object stores'
minimum for every part but the last; lower it for small test files) and
lowered to ``max_part_size`` (5 GiB), then raised if needed so there are at
most ``max_parts`` (10000) parts. Parts are numbered from 1, all of that size
but the last, which holds the rest. A 0-byte file has no parts: complete it
right away.

File object: ``id, file_key, file_size, file_type, file_ext, file_md5,
bucket, region, oss_url, imagekit_url, cdn_url, category, user_id, org_id,
status, related_type, related_id, extra_metadata, created_at, updated_at,
confirmed_at, deleted_at`` (timestamps ISO 8601 UTC ``...Z`` from
``clock``); ``file_key`` is ``community/<category>s/<yyyy>/<mm>/<id>.<ext>``
(no ``.<ext>`` when the extension is empty); status ``pending`` after init,
``uploading`` once a part is stored, ``confirmed`` after complete,
``failed`` after an MD5 mismatch. Complete of a confirmed file answers it
again (idempotent). Abort and delete are soft deletes: the record gets
``deleted_at``, its bytes are removed, info/by-key answer 404 and it leaves
the list (newest first; ``pagination: {"total", "page", "page_size",
"total_pages"}``). by-key takes a ``file_key``, an ``oss_url`` /
``cdn_url`` / ``imagekit_url``, or what the SDK's ``extract_file_key``
makes of one (``oss/community/...``).

Storage layout: parts in ``<directory>/parts/<file_id>/<n>``, confirmed files
in ``<directory>/objects/<file_key>``. State is kept in memory: it survives
:meth:`~CommunityServer.stop` / :meth:`~CommunityServer.start` (same port)
but not a new instance.

Faults (thread-safe, used up after ``times`` matches; ``times=None``: until
:meth:`~CommunityServer.clear_faults`): :meth:`~CommunityServer.fail_part`,
:meth:`~CommunityServer.fail_complete`, :meth:`~CommunityServer.fail_request`,
:meth:`~CommunityServer.expire_urls`; a ``status`` of 0 closes the connection
without an answer. Counters: :attr:`~CommunityServer.requests`,
:attr:`~CommunityServer.part_puts`, :attr:`~CommunityServer.part_bytes`,
:attr:`~CommunityServer.part_log`, and :meth:`~CommunityServer.wait_idle`
(after an aborted client run: ``disconnected=True``). Inspection:
:meth:`~CommunityServer.stored_path`, :meth:`~CommunityServer.stored_sha256`,
:meth:`~CommunityServer.uploaded_parts`, :meth:`~CommunityServer.file_object`,
:meth:`~CommunityServer.file_ids`.

HTTPS: ``CommunityServer(tls=certs)`` with
:class:`~upclient.testing.tls.TLSCertificates` (or a server
:class:`ssl.SSLContext`, e.g. one requiring client certificates) terminates
TLS itself: the API is ``community+https://127.0.0.1:PORT`` and the part and
download URLs it hands out are ``https://`` too; failed handshakes are
listed in :attr:`~CommunityServer.tls_failures`.

``python -m upclient.testing community --port 0 --dir DIR --token TOKEN``
runs one from the command line (first stdout line: its URL).

The package, one module per concern: :mod:`.protocol` (routes, codes,
errors, the file object), :mod:`.auth` (tokens, API keys, owners, presigned
part URLs), :mod:`.state` (records, parts and files on disk), :mod:`.api`
(the JSON endpoints), :mod:`.handlers` (HTTP routing and injected faults)
and :mod:`.server` (:class:`CommunityServer`: settings, lifecycle, fault
arming, counters). The HTTP plumbing (body framing, bounded connection
threads, start/stop) is :mod:`upclient.testing.httpbase` and the fault
records :mod:`upclient.testing.faults`, both shared with the other emulators.

Nothing here prints; diagnostics go to the ``upclient.testing.community`` logger.
"""


from upclient.testing.community.protocol import (
    CATEGORIES,
    CODE_BAD_CATEGORY,
    CODE_BAD_EXT,
    CODE_BAD_MD5,
    CODE_BAD_PART_SIZE,
    CODE_BAD_REQUEST,
    CODE_BAD_SIZE,
    CODE_MD5_MISMATCH,
    CODE_PARTS_MISSING,
    CODE_USER_REQUIRED,
    CODE_WRONG_STATE,
    ENDPOINTS,
    STATUSES,
)
from upclient.testing.community.server import CommunityServer
from upclient.testing.httpbase import MiB as MiB  # for ``python -m upclient.testing community``

__all__ = [
    "CommunityServer",
    "CATEGORIES",
    "STATUSES",
    "ENDPOINTS",
    "CODE_BAD_CATEGORY",
    "CODE_BAD_MD5",
    "CODE_BAD_EXT",
    "CODE_BAD_SIZE",
    "CODE_BAD_PART_SIZE",
    "CODE_USER_REQUIRED",
    "CODE_BAD_REQUEST",
    "CODE_PARTS_MISSING",
    "CODE_MD5_MISMATCH",
    "CODE_WRONG_STATE",
]
