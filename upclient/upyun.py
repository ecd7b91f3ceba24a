"""UPYUN helpers for application code: callback checks and signatures.

``upclient.upyun.verify_callback(headers, uri, operator, password)`` tells
whether a notify-url callback really comes from UPYUN (constant-time, within
the 30-minute Date window).  The backend itself is reached through
``upclient.Client("upyun://operator@service", password=...)``.
"""

from .backends.upyun import (  # noqa: F401 - re-exported
    DEFAULT_ENDPOINT,
    LIST_END,
    LocalSigner,
    RemoteSigner,
    Signer,
    UpyunBackend,
    authorization,
    http_date,
    password_md5,
    purge_authorization,
    signature,
    verify_callback,
)

__all__ = [
    "verify_callback",
    "signature",
    "authorization",
    "purge_authorization",
    "password_md5",
    "http_date",
    "Signer",
    "LocalSigner",
    "RemoteSigner",
    "UpyunBackend",
    "DEFAULT_ENDPOINT",
    "LIST_END",
]
