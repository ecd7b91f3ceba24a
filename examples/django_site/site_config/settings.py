"""Settings of the example site: uploads go to any upclient backend, streamed from the request.

The backend comes from the environment, so the same site runs against any
of them::

    UPCLIENT_URL=tus+http://127.0.0.1:1080/files/          # python -m upclient.testing tus
    UPCLIENT_URL=upyun://op@svc UPCLIENT_OPTIONS='{"password": "pw", "endpoint": "127.0.0.1:PORT"}'

``UPCLIENT_OPTIONS`` is JSON: any ``UpclientStorage`` option or ``Client``
setting.  ``UPCLIENT_STATIC_URL`` (with ``UPCLIENT_STATIC_OPTIONS``) sends
``collectstatic`` to a backend too, under ``static/``.  ``SITE_DATA``
holds the SQLite database (default: this directory).
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SITE_DATA", BASE_DIR))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "uploads",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "site_config.urls"
WSGI_APPLICATION = "site_config.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
        "OPTIONS": {"timeout": 30},
    }
}
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static-root"

# --- upclient -----------------------------------------------------------------------

STORAGES = {
    "default": {
        "BACKEND": "upclient.contrib.django.UpclientStorage",
        "OPTIONS": {
            "url": os.environ.get("UPCLIENT_URL", "tus+http://127.0.0.1:1080/files/"),
            # parts of 4 MiB: what a streamed upload holds in memory is about one of them
            "part_size": 4 * 1024 * 1024,
            **json.loads(os.environ.get("UPCLIENT_OPTIONS", "{}")),
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if os.environ.get("UPCLIENT_STATIC_URL"):
    STORAGES["staticfiles"] = {
        "BACKEND": "upclient.contrib.django.UpclientStorage",
        "OPTIONS": {
            "url": os.environ["UPCLIENT_STATIC_URL"],
            "location": "static/",
            **json.loads(os.environ.get("UPCLIENT_STATIC_OPTIONS", "{}")),
        },
    }

#: The streaming upload view's limits (see uploads/views.py).
UPLOAD_MAX_SIZE = int(os.environ.get("UPLOAD_MAX_SIZE", 1024 * 1024 * 1024))
UPLOAD_TIMEOUT = float(os.environ.get("UPLOAD_TIMEOUT", 300))
