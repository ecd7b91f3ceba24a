"""A web view that accepts UPYUN notify-url callbacks only when UPYUN signed them.

UPYUN calls the ``notify-url`` of a FORM upload (or of a processing task)
with a POST signed like a request to its API.  ``upclient.upyun.verify_callback``
checks that signature in constant time, with the Date within 30 minutes;
anything else gets 401.  Any WSGI server runs it (Django and Flask views do
the same with ``request.headers``, ``request.path`` and the body)::

    UPYUN_OPERATOR=me UPYUN_PASSWORD=... python examples/upyun_callback_view.py

then give ``policy={"notify-url": "http://<this host>:8000/upyun/notify"}``
to ``client.put(..., form=True)``.
"""

import os
import sys
import urllib.parse
from wsgiref.simple_server import make_server

import upclient


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
    app = make_app(os.environ["UPYUN_OPERATOR"], os.environ["UPYUN_PASSWORD"])
    with make_server("0.0.0.0", 8000, app) as httpd:
        httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
