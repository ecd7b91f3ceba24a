"""The values verbs return: :class:`UploadResult`, :class:`FileInfo`, :class:`PutOutcome`."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

__all__ = ["UploadResult", "FileInfo", "PutOutcome"]


@dataclasses.dataclass(frozen=True)
class UploadResult:
    """What ``Client.put`` returns.

    ``id`` is the handle every other verb takes (a tus upload URL, a storage
    key, a file id).  ``sent_bytes`` counts the bytes this call sent,
    including parts sent again after a failure; with ``resumed`` it shows how
    much a resume saved.
    """

    id: str
    size: int
    backend: str
    url: Optional[str] = None
    key: Optional[str] = None
    resumed: bool = False
    sent_bytes: int = 0
    deduplicated: bool = False
    elapsed: float = 0.0
    expires: Optional[float] = None
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What ``Client.info`` and ``Client.iter`` return about one stored file.

    ``complete`` is False for an upload still in progress, whose ``offset``
    says how many bytes the server has.
    """

    id: str
    backend: str
    size: Optional[int] = None
    complete: bool = True
    offset: Optional[int] = None
    content_type: Optional[str] = None
    modified: Optional[float] = None
    expires: Optional[float] = None
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PutOutcome:
    """One item of ``Client.put_many``: a result or the error, never both."""

    source: Any
    result: Optional[UploadResult] = None
    error: Optional[BaseException] = None

    @property
    def ok(self) -> bool:
        return self.error is None
