"""Secrets (header values, tokens, URL passwords) kept out of everything the command prints."""

from __future__ import annotations

import logging
import re
from typing import List, Optional

__all__ = ["Redactor", "RedactingFormatter"]

_AUTH_SCHEMES = {"bearer", "basic", "digest", "token", "negotiate", "hmac"}
_SENSITIVE_HEADER_RE = re.compile(r"auth|token|key|secret|cookie|pass|session|signature", re.IGNORECASE)

class Redactor:
    """Replaces secrets (header values, URL passwords) in text the CLI prints."""

    def __init__(self) -> None:
        self._secrets: List[str] = []

    def add(self, secret: Optional[str], *, always: bool = False) -> None:
        if not secret:
            return
        candidates = [secret] + [w for w in secret.split() if w.lower() not in _AUTH_SCHEMES]
        for c in candidates:
            # Short values of harmless headers would garble messages; sensitive ones go anyway.
            if (always and len(c) >= 3) or len(c) >= 8:
                if c not in self._secrets:
                    self._secrets.append(c)
        self._secrets.sort(key=len, reverse=True)

    def add_header(self, name: str, value: str) -> None:
        self.add(value, always=bool(_SENSITIVE_HEADER_RE.search(name)))

    def add_url(self, url: Optional[str]) -> None:
        if not url:
            return
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url.split("+", 1)[-1] if "+" in url.split("://", 1)[0] else url)
            password = parts.password
        except ValueError:
            return
        self.add(password, always=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text


class RedactingFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("upclient: %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))
