"""An emulator of the UPYUN storage APIs (REST, FORM, purge, processing tasks), for tests.

:class:`UpyunServer` is a real HTTP/1.1 server (stdlib :mod:`http.server`,
keep-alive, a bounded number of connection threads) on ``127.0.0.1`` that
answers as the UPYUN service does (as its API documentation and the
official SDK ``upyun`` 2.5.5 show it; every call of that SDK runs against it
unchanged: ``tests/test_upyun_sdk.py``), and stores files on disk::

    with UpyunServer(tmp_path / "upyun", service="svc", operator="op", password="pw") as server:
        up = upyun.UpYun("svc", username="op", password="pw", endpoint=server.endpoint)
        server.fail("part", status=503, retry_after=1, part_id=3)   # the next part 3 answers 503
        server.advance(25 * 3600)                                   # unfinished uploads expire
        assert server.stored_sha256("a/b.bin") == hashlib.sha256(data).hexdigest()

Routes (``<key>`` may be empty: the service's root folder). Every answer
carries ``X-Request-Id``; errors are JSON ``{"msg", "code", "id"}``. The
counter of each route (:attr:`UpyunServer.requests`) is the name on the right.

================================================  ======================================  ============
``PUT /<svc>/<key>``                              upload (streamed to a temporary file,   ``put``
                                                  renamed into place: a cut off
                                                  upload stores nothing)
``PUT`` + ``X-Upyun-Move-Source`` / ``-Copy-``    move / copy                             ``move`` ``copy``
``PUT`` + ``X-Upyun-Multi-Stage``                 multipart stages, comma-joined          ``initiate``
                                                                                          ``part``
                                                                                          ``complete``
``GET`` + ``X-Upyun-Multi-Uuid``                  multipart query (``parts`` JSON, or     ``query``
                                                  headers with
                                                  ``X-Upyun-Multi-Info: true``)
``DELETE`` + ``X-Upyun-Multi-Uuid``               cancel a multipart upload               ``cancel``
``GET /<svc>/<key>`` on a file / a folder         download (one ``Range``) / list         ``get`` ``list``
``GET /<svc>/?usage``                             bytes stored, as text                   ``usage``
``HEAD /<svc>/<key>``                             ``x-upyun-file-type|size|date``         ``head``
``DELETE /<svc>/<key>``                           delete a file or an empty folder        ``delete``
``POST /<svc>/<key>`` + ``Folder: true``          mkdir (``x-upyun-folder`` too)          ``mkdir``
``PATCH /<svc>/<key>?metadata=``                  merge, replace or delete                ``metadata``
                                                  ``x-upyun-meta-*``
``POST /<svc>`` or ``/<svc>/`` multipart/form     FORM upload                             ``form``
``POST /purge/``                                  purge CDN URLs                          ``purge``
``POST /pretreatment/``                           submit processing tasks                 ``pretreat``
``GET /status/?service=&task_ids=``               task progress                           ``status``
``GET /result/?service=&task_ids=``               task results                            ``result``
================================================  ======================================  ============

So ``purge``, ``pretreatment``, ``status`` and ``result`` cannot be service
names. Requests in absolute form (``POST http://purge.upyun.com/purge/
HTTP/1.1``, as sent to an HTTP proxy) are served by their path whatever the
host: point a client's proxy at :attr:`UpyunServer.url` and the SDK's
hard-coded ``purge.upyun.com`` and ``p0.api.upyun.com`` land here too.

Storage: files in ``<directory>/files/<service>/<key>`` (folders are real
directories; uploading a file creates its missing parent folders), parts of
unfinished uploads in ``<directory>/multipart/<uuid>/<part id>``, bodies
being received in ``<directory>/tmp``. Keys with a ``.`` or ``..`` segment
or a NUL are refused (400 40000015), ``\\r \\n \\t`` in a name 403
40300001, a segment over 255 bytes 403 40300003; empty segments (``a//b``)
are dropped. Metadata (content type, MD5, time, ``x-upyun-meta-*``,
``Content-Secret``) is kept in memory: it survives
:meth:`~UpyunServer.stop` / :meth:`~UpyunServer.start` (same port), not a
new instance. ``directory=None``: a temporary directory removed by
:meth:`~UpyunServer.close`.

Auth (REST, multipart, tasks): ``Authorization: UPYUN <operator>:<sig>``
(scheme word in any case) and ``Date`` (or ``X-Date``, preferred when both
are sent), checked by the emulator's own :mod:`~upclient.testing.upyun.signatures`
(never the client's signing code, which would agree with its own mistakes).
``sig`` must match ``METHOD&URI&DATE[&CONTENT-MD5]`` for one of the URIs: the
path as sent with its query, the path alone, or either re-encoded as the
SDK encodes it (:func:`~upclient.testing.upyun.signatures.wire_path`). A ``Content-MD5``
header must be signed, be 32 hex digits (else 400 40001001 wrong
content-md5) and match the body where there is one (403 40300007 content md5
not match). All 401: 40100004 need authorization header, 40100003 unknown
realm (a scheme word other than UPYUN), 40100001 need date header, 40100016
invalid date value in header, 40100002 date offset error (more than 30
minutes from :meth:`~UpyunServer.clock`), 40100012 bucket not exist (an
unknown service), 40100006 user not exists, 40100017 user need permission
(``permissions`` does not let the operator use the service), 40100005
signature error.

REST codes: 404 40400001 file or directory not found; 406 40600001 dir not
acceptable (a file where a folder is, or the reverse); 406 40600002 folder
already exists; 403 40300005 directory not empty, 40300011 no permission to
delete (the root), 40300014 order must be asc or desc, 40300015 path is not
a file, 40300016 content-secret only accept [a-zA-Z0-9]; 400 40001161 wrong
range (anything but one satisfiable ``bytes=`` range); 400 40000041 source
equals target, 40000042 bad source (malformed, another service, a folder);
405 40500000 for a verb the path does not take. 400 40000015 is this
emulator's code for a malformed argument the service's documentation gives
no code for (``X-Upyun-Multi-Length``, part size, list limit, iter token,
stage names, metadata directive).

Lists: ``X-List-Limit`` (default 100, at most 10000), ``X-List-Order``
(asc by name, or desc), ``X-List-Iter``; body ``name\\tN|F\\tsize\\tmtime``
lines joined by ``\\n`` (empty for an empty folder), header
``x-upyun-list-iter`` (an opaque token, or ``g2gCZAAEbmV4dGQAA2VvZg`` on the
last page). ``Accept: application/json``: ``{"files": [{"type", "length",
"name", "last_modified"}], "iter"}`` where ``type`` is ``folder`` or the
file's content type.

Multipart (all stages PUT to the target path, combinable with commas as the
SDK does: ``initiate,upload``, ``upload,complete``,
``initiate,upload,complete``): initiate needs ``X-Upyun-Multi-Length``;
``X-Upyun-Multi-Part-Size`` a multiple of 1 MiB up to 50 MiB (default 1
MiB); ``X-Upyun-Multi-Type`` (default from the extension);
``X-Upyun-Multi-Disorder: true`` lets parts come in any order (else part
``n`` must be the ``next-part-id``); ``x-upyun-meta-*`` and
``Content-Secret`` go to the final file. Every part is exactly the part size
but the last, which is the rest (403 40300030 wrong content-length); a 0-byte
file has one empty part 0. Answers 204 with ``x-upyun-multi-uuid`` and
``x-upyun-next-part-id`` (the lowest missing part, -1 when all are in);
complete answers 201 (new file) or 204 (replaced one) with
``x-upyun-multi-uuid``, ``-type``, ``-length``. Errors (400, messages as the
SDK matches them): 40011058 ``x-upyun-multi-uuid not found`` (unknown,
cancelled, another path, or 24 hours after initiate by the server clock),
40011059 ``file already upload`` (a completed uuid, until it expires),
40011060 ``file md5 not match`` (``X-Upyun-Multi-MD5`` of complete; the upload
is dropped), 40011061 ``part id error`` with ``X-Upyun-Next-Part-Id`` (a part
out of turn or out of range, or complete with a part missing: the header
names the first missing one), 40011062 ``part already complete`` (serial, all
parts in). An error after an initiate in the same request carries the new
``x-upyun-multi-uuid``.

FORM: ``policy`` (base64 JSON), ``authorization`` (or an ``Authorization``
header), ``file`` (streamed to disk, in any position); signature over
``POST&/<svc>[/]&<policy date or Date header>&<policy>[&<content-md5>]``.
Policy: ``bucket`` or ``service`` = the path's service (else 400 40000003),
``save-key`` (400 40000001) with ``{year} {mon} {day} {hour} {min} {sec}``
(UTC, server clock) ``{filemd5} {random} {random32} {filename} {suffix}
{.suffix}``, ``expiration`` (400 40000004; 403 40300006 once past), and the
optional ``content-md5`` (403 40300007), ``content-length-range`` (403
40300008 / 40300009), ``allow-file-type`` (of the sent file name's
extension, 403 40300010), ``content-type``, ``content-secret``,
``x-upyun-meta-*``, ``ext-param`` (echoed), ``return-url``, ``notify-url``.
400 40000009 decode policy error, 40000007 need policy, 40000005 need file,
415 41500001 not multipart/form-data. Answer 200 ``{"code": 200, "message":
"ok", "url", "time"}`` plus ``image-width``, ``image-height``,
``image-frames``, ``image-type`` for PNG, GIF and JPEG files. ``return-url``:
302 to it with the result (or a policy error's code and message) in the
query. ``notify-url``: the same fields, urlencoded, POSTed from a background
thread as UPYUN signs callbacks (``Date``, ``Content-MD5`` = MD5 hex of the
body, ``Authorization: UPYUN <operator>:<sig>`` over ``POST&<path[?query]>&
<Date>&<Content-MD5>`` with the uploading operator's password), only to
``127.0.0.1``, ``localhost`` or ``::1`` (any other URL is recorded, never
called): :attr:`~UpyunServer.callbacks`, :meth:`~UpyunServer.wait_callbacks`.

Purge: ``POST /purge/`` urlencoded ``purge`` (URLs joined by ``\\n``),
``Authorization: UpYun <svc>:<operator>:<md5>`` checked with
:func:`~upclient.testing.upyun.signatures.purge_digest` and the Date
rules above -> ``{"invalid_domain_of_url": [...]}`` (valid: the host
``<svc>.b0.upaiyun.com`` or one of ``domains``); 406 40600003 past 600 URLs
a minute per service. Valid URLs are recorded: :attr:`~UpyunServer.purged`.

Processing tasks: ``POST /pretreatment/`` (urlencoded ``service``,
``notify_url``, ``source``, ``tasks`` = base64 JSON list of 1 to 10, ``accept``,
``app_name``; signed, with ``Content-MD5`` of the body when sent) -> JSON
list of 32-hex task ids. ``GET /status/?service=&task_ids=a,b`` (at most 20)
-> ``{"tasks": {id: progress}}``, progress growing linearly with the server
clock to 100 over ``task_duration`` seconds, ``null`` for an unknown id;
``GET /result/`` -> ``{"tasks": {id: result or null}}``. A finished task
with a loopback ``notify_url`` gets a signed callback (JSON with
``accept=json``, else urlencoded).

Faults (thread-safe; after auth, so a refused request does not use one up):
:meth:`~UpyunServer.fail` arms ``status`` (503 -> code 50300000, 429 ->
42900001, else ``status * 100000``; ``Retry-After`` when asked; 0 closes the
connection without an answer, after reading the body) for the next ``times``
requests of a route (``part_id=`` and ``key=`` narrow it; ``commit=True``
carries the request out first and loses its answer). A combined multipart
request matches a fault of any of its stages.

Counters: :attr:`~UpyunServer.requests` (per route; a combined request
counts once per stage), :attr:`~UpyunServer.part_log`,
:meth:`~UpyunServer.part_receipts` (how many times each part's body arrived
in full), :meth:`~UpyunServer.wait_idle`.

HTTPS: ``UpyunServer(tls=certs)`` with
:class:`~upclient.testing.tls.TLSCertificates` (or a server
:class:`ssl.SSLContext`, e.g. one requiring client certificates) terminates
TLS itself; :attr:`~UpyunServer.endpoint` is then ``https://127.0.0.1:PORT``
(for upclient's ``endpoint=``; the official SDK takes only a host) and
failed handshakes are listed in :attr:`~UpyunServer.tls_failures`.

``python -m upclient.testing upyun --port 0 --dir DIR --service SVC
--operator OP --password PW`` runs one from the command line (first stdout
line: ``127.0.0.1:PORT``, the SDK's ``endpoint``).

Nothing here prints; diagnostics go to the ``upclient.testing.upyun`` logger.

Modules, one job each: ``server`` (the handler, dispatch, faults applied),
``store`` (state, clock, files on disk, counters), ``records`` (what is kept
of files, uploads and tasks), ``wire`` (the request as seen, answers and
error answers), ``signatures`` and ``auth`` (signatures, dates, rights),
``faults`` (:meth:`~UpyunServer.fail` on the shared
:class:`~upclient.testing.faults.Fault`), ``rest``, ``multipart``,
``form`` (with ``formdata``, the body reader), ``notify`` (callbacks),
``purge``, ``tasks`` and ``images`` (the image facts of an upload).
"""

from upclient.testing.upyun.faults import ROUTES
from upclient.testing.upyun.records import MAX_PART_SIZE, MULTI_LIFETIME
from upclient.testing.upyun.rest import LIST_END
from upclient.testing.upyun.server import RESERVED, UpyunServer
from upclient.testing.upyun.wire import CODE_BAD_ARGUMENT

__all__ = [
    "UpyunServer",
    "ROUTES",
    "RESERVED",
    "LIST_END",
    "MULTI_LIFETIME",
    "MAX_PART_SIZE",
    "CODE_BAD_ARGUMENT",
]
