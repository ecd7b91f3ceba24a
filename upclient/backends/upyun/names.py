"""Storage keys and metadata headers, as UPYUN takes them."""

from __future__ import annotations

import re
import urllib.parse
from typing import Dict, Mapping

from ...errors import BadInput
from ..paths import bad_character

__all__ = ["check_key", "check_service", "check_uuid", "meta_headers", "metadata_from"]


def check_key(key: str, *, folder: bool = False) -> str:
    """A storage key without its leading slash; BadInput for one that could escape its folder."""
    if not isinstance(key, str) or not key.strip("/"):
        raise BadInput(f"a storage key must be a non-empty path, not {key!r}", backend="upyun")
    where = bad_character(key)
    if where:
        raise BadInput(f"storage key {key!r} holds a control character or backslash ({where})", backend="upyun")
    stripped = key.lstrip("/")
    segments = stripped.rstrip("/").split("/")
    if any(s in (".", "..") for s in segments):
        raise BadInput(f"storage key {key!r}: '.' and '..' segments are not allowed", backend="upyun")
    if not folder and stripped.endswith("/"):
        raise BadInput(f"storage key {key!r} names a folder; give a file name", backend="upyun")
    return stripped


def check_service(service: str) -> str:
    """A service (bucket) name, the first segment of every storage path; BadInput unless it
    is one plain segment (letters, digits, ``-``, ``_``, ``.``; not ``.`` or ``..``)."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", service) or service in (".", ".."):
        raise BadInput(f"the service name {service!r} must be letters, digits, '-', '_' or '.' "
                       "(one path segment)", backend="upyun")
    return service


def check_uuid(uuid: object, operation: str) -> str:
    """A multipart upload's ``X-Upyun-Multi-Uuid``: printable ASCII without spaces (it goes in a header)."""
    if not isinstance(uuid, str) or not re.fullmatch(r"[!-~]+", uuid):
        raise BadInput(f"uuid {uuid!r} is not the X-Upyun-Multi-Uuid of an upload (printable ASCII, no spaces)",
                       backend="upyun", operation=operation)
    return uuid


def meta_headers(metadata: Mapping[str, str]) -> Dict[str, str]:
    out = {}
    for k, v in metadata.items():
        name = k if k.lower().startswith("x-upyun-meta-") else f"x-upyun-meta-{k}"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise BadInput(f"metadata key {k!r}: UPYUN takes letters, digits, '-' and '_'", backend="upyun")
        out[name] = urllib.parse.quote(v, safe="") if not v.isascii() or not v.isprintable() else v
    return out


def metadata_from(headers: Mapping[str, str]) -> Dict[str, str]:
    out = {}
    for k, v in headers.items():
        if k.lower().startswith("x-upyun-meta-"):
            out[k.lower()[len("x-upyun-meta-"):]] = urllib.parse.unquote(v)
    return out
