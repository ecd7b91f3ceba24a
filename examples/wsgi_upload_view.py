"""A web view that forwards uploads to storage: one Client shared by every request thread.

This is the shape of a Flask or Django view, written against plain WSGI so it
runs with the standard library alone.  The client is made once, at start-up;
each request streams its body straight through (a non-seekable stream of
known size: nothing is buffered whole in memory), and upclient's errors
become HTTP answers.

Run it against a local tus server::

    resumable-upload serve --host 127.0.0.1 --port 1080 --upload-dir /tmp/up --db-path /tmp/up.db &
    python examples/wsgi_upload_view.py tus+http://127.0.0.1:1080/files/
    curl -T photo.jpg -H 'X-Filename: photo.jpg' http://127.0.0.1:8000/upload

In Flask the view body is the same: ``client.put(request.stream,
key=..., size=request.content_length)``; in Django, ``request`` itself is the
stream (``client.put(request, size=int(request.META["CONTENT_LENGTH"]))``).
"""

from __future__ import annotations

import json
import sys
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIServer, make_server

import upclient
from upclient import errors


def make_app(client: upclient.Client) -> Callable[..., Iterable[bytes]]:
    """The WSGI app: PUT or POST /upload with the file as the body."""

    def app(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        def answer(status: str, payload: dict) -> Iterable[bytes]:
            body = json.dumps(payload).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]

        if environ.get("PATH_INFO") != "/upload" or environ.get("REQUEST_METHOD") not in ("PUT", "POST"):
            return answer("404 Not Found", {"error": "PUT /upload"})
        try:
            size = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return answer("411 Length Required", {"error": "send a Content-Length"})
        key = environ.get("HTTP_X_FILENAME") or "upload.bin"
        try:
            result = client.put(environ["wsgi.input"], key=key, size=size)
        except errors.BadInput as exc:
            return answer("400 Bad Request", {"error": str(exc)})
        except errors.UpClientError as exc:  # the storage failed after its retries
            return answer("502 Bad Gateway", {"error": type(exc).__name__})
        return answer("201 Created", {"id": result.id, "size": result.size})

    return app


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "tus+http://127.0.0.1:1080/files/"
    client = upclient.Client(url, store=None)  # one for the whole process, shared by all threads
    with make_server("127.0.0.1", 8000, make_app(client), server_class=ThreadingWSGIServer) as httpd:
        print("listening on http://127.0.0.1:8000/upload")
        httpd.serve_forever()


if __name__ == "__main__":
    main()
