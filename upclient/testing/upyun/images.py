"""The image facts UPYUN returns for an upload: width, height, frames and type of a PNG, GIF or JPEG."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from upclient.testing.httpbase import KiB

__all__ = ["image_info"]


def image_info(path: Path) -> Optional[Tuple[int, int, int, str]]:
    """(width, height, frames, type) of a PNG, GIF or JPEG file, else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * KiB)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"), 1, "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        frames = max(1, head.count(b"\x00\x2c"))  # image separators, roughly
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little"), frames, "GIF"
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> Optional[Tuple[int, int, int, str]]:
    """The size in the first start-of-frame marker of a JPEG's head."""
    i = 2
    while i + 9 < len(head):
        if head[i] != 0xFF:
            i += 1
            continue
        marker = head[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(head[i + 5 : i + 7], "big")
            width = int.from_bytes(head[i + 7 : i + 9], "big")
            return width, height, 1, "JPEG"
        i += 2 + int.from_bytes(head[i + 2 : i + 4], "big")
    return None
