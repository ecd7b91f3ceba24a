"""Integrations of upclient with the frameworks its users build on.

* :mod:`upclient.contrib.flask`: the ``Upclient(app)`` extension (settings
  from the ``UPCLIENT_*`` keys of ``app.config``, one shared
  :class:`~upclient.Client` per app in ``app.extensions["upclient"]``), with
  ``put_body()``, which streams a raw request body to storage, and
  ``put_form()``, which streams each file of a ``multipart/form-data`` form
  without a temporary file.
* :mod:`upclient.contrib.django`: a Django ``Storage`` and a streaming upload
  handler.
* :mod:`upclient.contrib.celery`: ``upload_task(app, client_factory)``, a
  Celery task that uploads one file and resumes another worker's upload.

Each is imported on its own (``import upclient.contrib.flask``): importing
this package imports no framework.
"""
