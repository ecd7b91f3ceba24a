"""A web view that accepts UPYUN notify-url callbacks only when UPYUN signed them.

UPYUN calls the ``notify-url`` of a FORM upload (or of a processing task)
with a POST signed like a request to its API.  ``upclient.upyun.verify_callback``
checks that signature in constant time, with the Date within 30 minutes;
anything else gets 401.  Any WSGI server runs it (Django and Flask views do
the same with ``request.headers``, ``request.path`` and the body).

Against a local emulator of UPYUN: start one in another terminal (its first
line is its endpoint)::

    python -m upclient.testing upyun --service svc --operator op --password pw

then, from the repository root, serve this view with the same operator and
password (it listens on 127.0.0.1:8000; ``--host 0.0.0.0`` or
``UPYUN_CALLBACK_HOST`` to be reachable from elsewhere, as UPYUN itself
must reach it, and ``--port`` to change the port)::

    UPYUN_OPERATOR=op UPYUN_PASSWORD=pw python examples/upyun_callback_view.py

and upload with ``policy={"notify-url": "http://127.0.0.1:8000/upyun/notify"}``
given to ``client.put(..., form=True)``: each genuine callback is printed.
"""

import argparse
import os
import sys
import urllib.parse
from wsgiref.simple_server import make_server

import upclient

#: The variables main() needs, and what each one holds.
REQUIRED = {"UPYUN_OPERATOR": "the operator UPYUN signs callbacks as",
            "UPYUN_PASSWORD": "that operator's password"}


def make_app(operator: str, password: str, on_upload=print):
    """A WSGI app: ``on_upload(fields)`` for each genuine callback."""

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] != "POST":
            start_response("405 Method Not Allowed", [("Content-Length", "0")])
            return [b""]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k[5:].replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["CONTENT-TYPE"] = environ["CONTENT_TYPE"]
        uri = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
        if not upclient.upyun.verify_callback(headers, uri, operator, password, body=body):
            start_response("401 Unauthorized", [("Content-Length", "0")])
            return [b""]
        on_upload(dict(urllib.parse.parse_qsl(body.decode("utf-8"))))
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    return app


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Accept UPYUN notify-url callbacks signed by UPYUN_OPERATOR with UPYUN_PASSWORD.",
        epilog="environment: " + "; ".join(f"{k}: {v}" for k, v in REQUIRED.items()),
    )
    parser.add_argument("--host", default=os.environ.get("UPYUN_CALLBACK_HOST", "127.0.0.1"),
                        help="address to listen on (default $UPYUN_CALLBACK_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks one)")
    args = parser.parse_args()
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        parser.error(f"missing environment variable{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")

    def show(fields: dict) -> None:
        print("genuine callback:", fields, flush=True)

    app = make_app(os.environ["UPYUN_OPERATOR"], os.environ["UPYUN_PASSWORD"], on_upload=show)
    with make_server(args.host, args.port, app) as httpd:
        print(f"listening on http://{args.host}:{httpd.server_port}/upyun/notify", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
