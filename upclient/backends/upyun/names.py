"""Storage keys and metadata headers, as UPYUN takes them."""

from __future__ import annotations

import re
import urllib.parse
from typing import Dict, Mapping

from ...errors import BadInput

__all__ = ["check_key", "meta_headers", "metadata_from"]


def check_key(key: str, *, folder: bool = False) -> str:
    """A storage key without its leading slash; BadInput for one that could escape its folder."""
    if not isinstance(key, str) or not key.strip("/"):
        raise BadInput(f"a storage key must be a non-empty path, not {key!r}", backend="upyun")
    if "\x00" in key or any(c in key for c in "\r\n"):
        raise BadInput(f"storage key {key!r} holds a control character", backend="upyun")
    stripped = key.lstrip("/")
    segments = stripped.rstrip("/").split("/")
    if any(s in (".", "..") for s in segments):
        raise BadInput(f"storage key {key!r}: '.' and '..' segments are not allowed", backend="upyun")
    if not folder and stripped.endswith("/"):
        raise BadInput(f"storage key {key!r} names a folder; give a file name", backend="upyun")
    return stripped


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
