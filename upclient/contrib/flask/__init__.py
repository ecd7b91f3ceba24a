"""Flask: uploads streamed from the request to storage, through one shared ``Client`` per app.

::

    from flask import Flask
    from upclient.contrib.flask import Upclient

    app = Flask(__name__)
    app.config["UPCLIENT_URL"] = "upyun://operator@service"
    app.config["UPCLIENT_PASSWORD"] = "..."
    uploads = Upclient(app)            # or Upclient() and uploads.init_app(app) in a factory

    @app.put("/upload/<name>")
    def upload(name):                  # curl -T photo.jpg http://host/upload/photo.jpg
        result = uploads.put_body(name)
        return {"id": result.id, "size": result.size}, 201

    @app.post("/upload")
    def upload_form():                 # <form method=post enctype=multipart/form-data>
        stored = uploads.put_form()
        return {"files": [f.result.id for f in stored.files]}, 201

:meth:`Upclient.put_body` streams ``request.stream`` into ``Client.put``
with the size from ``Content-Length``; :meth:`Upclient.put_form` reads a
``multipart/form-data`` body part by part and streams each file, with no
temporary file (``request.files`` would spool it to disk first).  Each
upload holds the part it reads and those in flight (``concurrency`` at
most), whatever the file size.
Each request runs under a deadline (``UPCLIENT_TIMEOUT``); failures are
Werkzeug HTTP errors (411, 413, 400, 504, 502: :mod:`.answers`); a browser
that goes away aborts its upload on the storage server, which keeps no
partial file.  Settings are the ``UPCLIENT_*`` keys of ``app.config``
(:mod:`.config`).
"""

from .answers import http_error
from .body import BadForm, BodyInterrupted, FileTooLarge, RequestBody, RequestBodyError
from .extension import EXTENSION_KEY, FormUpload, StoredFile, Upclient
from .form import FilePart, FormReader, TextField

__all__ = [
    "Upclient",
    "FormUpload",
    "StoredFile",
    "EXTENSION_KEY",
    "http_error",
    "RequestBody",
    "RequestBodyError",
    "BodyInterrupted",
    "FileTooLarge",
    "BadForm",
    "FormReader",
    "FilePart",
    "TextField",
]
