"""A Flask app that streams uploads to storage: raw PUT bodies and browser forms, no temporary file.

One ``Client`` for the whole app (``Upclient(app)``), shared by every request
thread; each request's body goes to storage while it arrives, under a
deadline, and a browser that goes away leaves no partial file behind.

Start a local tus server in another terminal; its first line is the URL to
pass::

    python -m upclient.testing tus

then, from the repository root, serve the app (waitress on 127.0.0.1:8000;
``--port 0`` picks a free port) and send it files::

    python examples/flask_app.py tus+http://127.0.0.1:1080/files/
    curl -T photo.jpg http://127.0.0.1:8000/upload/photo.jpg
    curl -F file=@photo.jpg http://127.0.0.1:8000/upload

or open http://127.0.0.1:8000/ in a browser for a form.  The answer is JSON:
``{"id": ..., "size": ...}`` with 201, or ``{"error": ...}`` with the status
of what went wrong (400, 411, 413, 502, 504).

Any setting of ``upclient.contrib.flask`` comes from the environment as
``FLASK_UPCLIENT_*`` (Flask's ``app.config.from_prefixed_env()``), e.g.
``FLASK_UPCLIENT_PASSWORD=... FLASK_UPCLIENT_TIMEOUT=60
FLASK_UPCLIENT_PART_SIZE=8388608``; the URL argument is ``UPCLIENT_URL``.
Under gunicorn: ``gunicorn -k gthread --threads 16 --chdir examples
'flask_app:create_app()'`` with ``FLASK_UPCLIENT_URL`` set.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Mapping, Optional, Tuple

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from upclient.contrib.flask import Upclient

uploads = Upclient()

FORM = """<!doctype html>
<title>upload</title>
<form method="post" action="/upload" enctype="multipart/form-data">
  <input type="text" name="note" placeholder="a note">
  <input type="file" name="file" multiple>
  <button>upload</button>
</form>
"""


def create_app(config: Optional[Mapping[str, Any]] = None) -> Flask:
    """The app: settings from ``FLASK_UPCLIENT_*`` in the environment, then ``config``."""
    app = Flask(__name__)
    app.config.from_prefixed_env()
    if config:
        app.config.update(config)
    uploads.init_app(app)

    @app.get("/")
    def form() -> str:
        return FORM

    @app.put("/upload/<path:name>")
    def upload_body(name: str) -> Tuple[Any, int]:
        """The request body is the file: ``curl -T``, ``fetch(url, {method: "PUT", body: file})``."""
        result = uploads.put_body(name)
        return {"id": result.id, "size": result.size}, 201

    @app.post("/upload")
    def upload_form() -> Tuple[Any, int]:
        """A browser's form: every file in it, the text fields beside them."""
        stored = uploads.put_form()
        if not stored.files:
            return {"error": "the form has no file"}, 400
        files = [{"field": f.field, "filename": f.filename, "id": f.result.id, "size": f.result.size}
                 for f in stored.files]
        return {**files[0], "files": files, "fields": stored.fields.to_dict()}, 201

    @app.errorhandler(HTTPException)
    def as_json(exc: HTTPException) -> Any:
        response = jsonify(error=exc.description)
        response.status_code = exc.code or 500
        return response

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description="Serve a Flask app that streams uploads to storage.")
    parser.add_argument("url", nargs="?", default=os.environ.get("FLASK_UPCLIENT_URL"),
                        help="where uploads go, e.g. tus+http://127.0.0.1:1080/files/ "
                             "(default: $FLASK_UPCLIENT_URL)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks one)")
    parser.add_argument("--threads", type=int, default=16, help="request threads (default 16)")
    args = parser.parse_args()
    if not args.url:
        parser.error("give the storage URL (what `python -m upclient.testing tus` prints) "
                     "or set FLASK_UPCLIENT_URL")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import waitress

    app = create_app({"UPCLIENT_URL": args.url})
    server = waitress.create_server(app, host=args.host, port=args.port, threads=args.threads)
    print(f"listening on http://{args.host}:{server.effective_port}/", flush=True)  # type: ignore[union-attr]
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        uploads.close(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
