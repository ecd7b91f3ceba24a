"""A web view that forwards uploads to storage: one Client shared by every request thread.

This is the shape of a Flask or Django view, written against plain WSGI so it
runs with the standard library alone.  The client is made once, at start-up;
each request streams its body straight through (a non-seekable stream of
known size: nothing is buffered whole in memory), and upclient's errors
become HTTP answers.

Start a local tus server in another terminal; its first line is the URL to
pass::

    python -m upclient.testing tus

then, from the repository root, serve the view (on 127.0.0.1:8000; ``--host``
and ``--port`` change it) and send it a file::

    python examples/wsgi_upload_view.py tus+http://127.0.0.1:1080/files/
    curl -T photo.jpg -H 'X-Filename: photo.jpg' http://127.0.0.1:8000/upload

The answer is JSON: ``{"id": ..., "size": ...}`` with 201, or an error.  In
Flask the view body is the same: ``client.put(request.stream, key=...,
size=request.content_length)``; in Django, ``request`` itself is the stream
(``client.put(request, size=int(request.META["CONTENT_LENGTH"]))``).
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> int:
    parser = argparse.ArgumentParser(description="Forward PUT /upload bodies to a storage server.")
    parser.add_argument("url", nargs="?", default=os.environ.get("UPCLIENT_URL"),
                        help="where uploads go, e.g. tus+http://127.0.0.1:1080/files/ (default: $UPCLIENT_URL)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks one)")
    args = parser.parse_args()
    if not args.url:
        parser.error("give the storage URL (what `python -m upclient.testing tus` prints) or set UPCLIENT_URL")
    with upclient.Client(args.url, store=None) as client:  # one for the whole process, shared by all threads
        with make_server(args.host, args.port, make_app(client), server_class=ThreadingWSGIServer) as httpd:
            print(f"listening on http://{args.host}:{httpd.server_port}/upload", flush=True)
            try:
                httpd.serve_forever()
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
