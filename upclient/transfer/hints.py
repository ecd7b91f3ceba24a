"""What a server's answer tells the engine to do next, as plain values.

A session returns these from :meth:`~upclient.transfer.UploadSession.send_part`
or :meth:`~upclient.transfer.UploadSession.finish` instead of tagging
exceptions with attributes: the protocol reads the answer, the engine acts.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

from .parts import Part

__all__ = ["Resync", "Restart", "MoreParts", "Hint"]


@dataclasses.dataclass(frozen=True)
class Resync:
    """Client and server disagree on where the upload stands: ask, then resend.

    ``offset`` (tus) or ``next_part`` (UPYUN) is what the server said, when it
    said it; ``upload_id`` is the upload the answer was about, so a late
    answer about an upload already replaced can be ignored.
    """

    reason: str
    offset: Optional[int] = None
    next_part: Optional[int] = None
    upload_id: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Restart:
    """The server forgot the upload (expired, unknown id): open a new one."""

    reason: str
    upload_id: Optional[str] = None


Hint = Union[Resync, Restart]


@dataclasses.dataclass(frozen=True)
class MoreParts:
    """Returned by ``finish``: these parts must reach the server first.

    ``parallel`` False sends them one at a time, in order.
    """

    parts: Sequence[Part]
    reason: str = ""
    parallel: bool = False
