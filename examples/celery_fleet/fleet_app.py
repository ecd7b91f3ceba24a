"""A Celery app whose workers upload files and resume each other's uploads.

Every worker runs this module; its settings come from the environment, so
the same file serves on every host (secrets stay on the workers: a task's
message carries a path, never a password):

``FLEET_REDIS``
    the Redis URL of Celery's broker and result backend and of upclient's
    RedisStore (default ``redis://127.0.0.1:6379/0``)
``FLEET_TARGET``
    where files go: ``upyun://operator@service``, ``tus+https://host/files/``,
    ``community+https://api.example.com``, ``fdfs://tracker:22122``
``FLEET_OPTIONS``
    more Client settings that are no secret, as a JSON object
    (``{"endpoint": "v0.api.upyun.com", "part_size": 8388608}``)
``FLEET_PASSWORD``, ``FLEET_TOKEN``
    the backend's password or token, if it takes one
``FLEET_IDENTITY``
    ``content`` (the default: workers see the files on shared storage, maybe
    under different mount points), ``digest`` or ``local`` (see upclient.digest)
``FLEET_ATTEMPTS``, ``FLEET_BACKOFF``
    tries of each request within one run of a task (default 5), and the
    first delay in seconds before Celery runs a failed task again (default 5)
``FLEET_LOCK_TTL``
    seconds after which a dead worker's claim on an upload lapses (default 30)
``FLEET_VISIBILITY_TIMEOUT``
    seconds after which Redis hands the task of a worker that vanished to
    another (default 3600; a worker's own lock keeps an early redelivery
    from sending the same upload twice)

Run a worker on each host, from this directory::

    FLEET_REDIS=redis://queue:6379/0 FLEET_TARGET=upyun://op@svc FLEET_PASSWORD=... \\
        celery -A fleet_app worker --concurrency 2 --loglevel info

and send it a directory with ``python examples/celery_fleet/fanout.py DIR``.
To try it on one machine: ``redis-server`` and ``python -m upclient.testing
upyun`` (it prints the endpoint and password to use).
"""

from __future__ import annotations

import json
import os

from celery import Celery

import upclient
from upclient.contrib.celery import upload_task

REDIS = os.environ.get("FLEET_REDIS", "redis://127.0.0.1:6379/0")
VISIBILITY_TIMEOUT = float(os.environ.get("FLEET_VISIBILITY_TIMEOUT", "3600"))

app = Celery("fleet_app", broker=REDIS, backend=REDIS)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_extended=True,  # AsyncResult.retries, .worker, .args for whoever gathers the results
    worker_prefetch_multiplier=1,  # a worker takes one upload at a time per slot: the others stay queued
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # look for the tasks of vanished workers every few seconds, not every 100
        "unacked_restore_interval": max(1.0, min(10.0, VISIBILITY_TIMEOUT / 4)),
        "unacked_restore_throttle": 1,
    },
)


def make_client() -> upclient.Client:
    """The worker's Client: called once per worker process, on its first task."""
    settings = json.loads(os.environ.get("FLEET_OPTIONS", "{}"))
    for name in ("password", "token"):
        secret = os.environ.get(f"FLEET_{name.upper()}")
        if secret:
            settings[name] = secret
    store = upclient.RedisStore(REDIS, lock_ttl=float(os.environ.get("FLEET_LOCK_TTL", "30")))
    retry = upclient.RetryPolicy(attempts=int(os.environ.get("FLEET_ATTEMPTS", "5")))
    return upclient.Client(os.environ["FLEET_TARGET"], store=store, retry=retry,
                           identity=os.environ.get("FLEET_IDENTITY", "content"), **settings)


upload = upload_task(app, make_client, backoff=float(os.environ.get("FLEET_BACKOFF", "5")))
