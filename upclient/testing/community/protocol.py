"""The wire contract of the community emulator: routes, codes, errors, file objects.

Everything here is plain data and pure functions; the package docstring
(:mod:`upclient.testing.community`) describes what each route and code means.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Dict, Optional, Protocol, Tuple
from urllib.parse import quote, unquote

from upclient.testing.httpbase import MiB

#: The categories init accepts.
CATEGORIES = ("general", "video", "image", "document", "avatar", "cover")
#: The statuses of a file object.
STATUSES = ("pending", "uploading", "confirmed", "failed")
#: Counter names of :attr:`CommunityServer.requests`.
ENDPOINTS = ("init", "part", "complete", "abort", "info", "by_key", "list", "delete", "download")

CODE_BAD_CATEGORY = 1001
CODE_BAD_MD5 = 1002
CODE_BAD_EXT = 1003
CODE_BAD_SIZE = 1004
CODE_BAD_PART_SIZE = 1005
CODE_USER_REQUIRED = 1006
CODE_BAD_REQUEST = 1007
CODE_PARTS_MISSING = 1011
CODE_MD5_MISMATCH = 1012
CODE_WRONG_STATE = 1013

API = "/api/community/file"
UPLOAD_PREFIX = "/upload/"
#: Download routes: ``oss_url``, ``cdn_url``, ``imagekit_url``.
DOWNLOAD_PREFIXES = {"oss": "oss_url", "cdn": "cdn_url", "ik": "imagekit_url"}

#: The largest JSON request body read.
MAX_JSON = 1 * MiB

MD5_RE = re.compile(r"^[0-9a-f]{32}$")
EXT_RE = re.compile(r"^[a-z0-9]{0,16}$")


# ------------------------------------------------------------------ errors


class ApiError(Exception):
    """An API answer other than success: HTTP status, envelope code, message."""

    def __init__(self, status: int, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data


def business(code: int, message: str, data: Any = None) -> ApiError:
    """A business error: HTTP 200 with ``code`` in the envelope."""
    return ApiError(200, code, message, data)


def http_error(status: int, message: str) -> ApiError:
    """An HTTP error: the envelope's code is the status."""
    return ApiError(status, status, message)


def json_object(body: Any) -> Dict[str, Any]:
    """A request body that must be a JSON object (business error 1007 otherwise)."""
    if not isinstance(body, dict):
        raise business(CODE_BAD_REQUEST, "the request body must be a JSON object")
    return body


class StoreError(Exception):
    """A storage-route answer other than success (OSS-like XML body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# ------------------------------------------------------------------ routes


_API_TABLE = {
    "/upload/init": ("POST", "init"),
    "/upload/complete": ("POST", "complete"),
    "/upload/abort": ("POST", "abort"),
    "/by-key": ("GET", "by_key"),
    "": ("GET", "list"),
}


def api_route(method: str, path: str) -> Optional[Tuple[str, str]]:
    """``(endpoint, argument)``, ``("method", "")`` for a known path with the wrong method, or None."""
    if path.endswith("/") and path != "/":
        path = path.rstrip("/")
    if not path.startswith(API):
        return None
    rest = path[len(API):]
    if rest in _API_TABLE:
        wanted, endpoint = _API_TABLE[rest]
        return (endpoint, "") if method == wanted else ("method", "")
    if rest.startswith("/upload/"):
        return None
    if rest.count("/") == 1 and len(rest) > 1:
        file_id = unquote(rest[1:])
        if method in ("GET", "HEAD"):
            return "info", file_id
        if method == "DELETE":
            return "delete", file_id
        return "method", ""
    return None


# ------------------------------------------------------------ file objects


def iso(ts: Optional[float]) -> Optional[str]:
    """Epoch seconds as ISO 8601 UTC with milliseconds and ``Z``; None stays None."""
    if ts is None:
        return None
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def is_int(value: Any) -> bool:
    """An integer in JSON terms (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


class FileRecord(Protocol):
    """What :func:`file_object` reads of a record (:class:`~.state.Upload` is one)."""

    id: str
    file_key: str
    file_size: int
    file_type: str
    file_ext: str
    file_md5: str
    category: str
    user_id: str
    org_id: Optional[str]
    status: str
    metadata: Dict[str, Any]
    created_at: float
    updated_at: float
    confirmed_at: Optional[float]
    deleted_at: Optional[float]


def file_object(record: FileRecord, *, base: str, bucket: str, region: str) -> Dict[str, Any]:
    """The file object of ``record`` as the API returns it; its URLs start with ``base``."""
    key = quote(record.file_key)
    return {
        "id": record.id,
        "file_key": record.file_key,
        "file_size": record.file_size,
        "file_type": record.file_type,
        "file_ext": record.file_ext,
        "file_md5": record.file_md5,
        "bucket": bucket,
        "region": region,
        "oss_url": f"{base}/oss/{key}",
        "imagekit_url": f"{base}/ik/{key}",
        "cdn_url": f"{base}/cdn/{key}",
        "category": record.category,
        "user_id": record.user_id,
        "org_id": record.org_id,
        "status": record.status,
        "related_type": None,
        "related_id": None,
        "extra_metadata": dict(record.metadata),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "confirmed_at": iso(record.confirmed_at),
        "deleted_at": iso(record.deleted_at),
    }
