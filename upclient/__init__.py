"""upclient: reliable, fast, resumable uploads to storage services.

>>> import upclient
>>> client = upclient.Client("tus+http://127.0.0.1:1080/files/")  # doctest: +SKIP
>>> result = client.put("backup.tar.gz")                           # doctest: +SKIP
"""

import logging
from typing import TYPE_CHECKING

from ._version import __version__  # noqa: E402

from . import errors  # noqa: E402
from .errors import UpClientError  # noqa: E402

if TYPE_CHECKING:  # the names below are imported on first use (see __getattr__)
    from .client import Client  # noqa: F401
    from .progress import Progress  # noqa: F401
    from .redis_store import RedisStore  # noqa: F401
    from .result import FileInfo, PutOutcome, UploadResult  # noqa: F401
    from .retry import RetryPolicy  # noqa: F401
    from .settings import Settings  # noqa: F401
    from .store import BaseStore, FileStore, MemoryStore  # noqa: F401

#: Public names and the module each lives in.  ``import upclient`` loads
#: only the errors: an app that imports it at start-up (a Django settings
#: module, a CLI) pays for the client, its transport and requests only when
#: it first names ``upclient.Client``.
_LAZY = {
    "Client": ".client",
    "UploadResult": ".result",
    "FileInfo": ".result",
    "PutOutcome": ".result",
    "Progress": ".progress",
    "RetryPolicy": ".retry",
    "Settings": ".settings",
    "BaseStore": ".store",
    "MemoryStore": ".store",
    "FileStore": ".store",
    "RedisStore": ".redis_store",
}

# A library prints nothing of its own accord: an app that configures no
# logging sees no upclient records (Python's last-resort stderr handler
# would otherwise show WARNINGs such as a retried part).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Client",
    "UploadResult",
    "FileInfo",
    "PutOutcome",
    "Progress",
    "RetryPolicy",
    "Settings",
    "BaseStore",
    "MemoryStore",
    "FileStore",
    "RedisStore",
    "UpClientError",
    "errors",
    "__version__",
]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    """The public classes, and ``upclient.upyun`` (callback checks, signatures), on first use.

    ``upclient.RedisStore`` needs redis-py only then.  A name is imported once
    and kept in this module's namespace, so later look-ups are plain ones.
    """
    import importlib

    if name == "upyun":
        return importlib.import_module(".upyun", __name__)
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY) | {"upyun"})
