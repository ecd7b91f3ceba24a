"""The settings a client shares with every backend and transfer, as one value."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional, Tuple, Union

from .errors import BadInput
from .origins import trusted_origins
from .retry import RetryPolicy

__all__ = ["Settings", "MiB"]

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Settings:
    """Shared, immutable transfer settings (see :class:`upclient.Client`)."""

    part_size: int = 16 * MiB
    concurrency: int = 4
    max_files: int = 4
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    checksum: bool = True
    verify: Union[bool, str] = True
    cert: Union[str, Tuple[str, str], None] = None
    headers: Optional[Mapping[str, str]] = None
    auth: Any = None
    #: Origins besides the backend's own that may receive ``auth`` and ``headers``.
    trusted_origins: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "trusted_origins", trusted_origins(self.trusted_origins))
        if not isinstance(self.part_size, int) or self.part_size < 1:
            raise BadInput(f"part_size must be a positive number of bytes, not {self.part_size!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise BadInput(f"concurrency must be at least 1, not {self.concurrency!r}")
        if not isinstance(self.max_files, int) or self.max_files < 1:
            raise BadInput(f"max_files must be at least 1, not {self.max_files!r}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise BadInput("timeouts must be positive")
        if not isinstance(self.retry, RetryPolicy):
            raise BadInput("retry must be an upclient.RetryPolicy")

    def __repr__(self) -> str:  # auth and headers may hold secrets
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in ("auth", "headers")
        )
        hidden = [n for n in ("auth", "headers") if getattr(self, n)]
        return f"Settings({shown}{', ' if hidden else ''}{', '.join(n + '=<hidden>' for n in hidden)})"
