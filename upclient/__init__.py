"""upclient: reliable, fast, resumable uploads to storage services.

>>> import upclient
>>> client = upclient.Client("tus+http://127.0.0.1:1080/files/")  # doctest: +SKIP
>>> result = client.put("backup.tar.gz")                           # doctest: +SKIP
"""

import logging
from typing import TYPE_CHECKING

from ._version import __version__  # noqa: E402

from . import errors  # noqa: E402
from .client import Client  # noqa: E402
from .errors import UpClientError  # noqa: E402
from .progress import Progress  # noqa: E402
from .result import FileInfo, PutOutcome, UploadResult  # noqa: E402
from .retry import RetryPolicy  # noqa: E402
from .settings import Settings  # noqa: E402
from .store import BaseStore, FileStore, MemoryStore  # noqa: E402

if TYPE_CHECKING:  # imported on first use: ``import upclient`` does not need redis-py
    from .redis_store import RedisStore  # noqa: F401

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
    """``upclient.upyun`` (callback checks, signatures) and ``upclient.RedisStore``
    (which needs redis-py) are imported on first use."""
    import importlib

    if name == "upyun":
        return importlib.import_module(".upyun", __name__)
    if name == "RedisStore":
        return importlib.import_module(".redis_store", __name__).RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
