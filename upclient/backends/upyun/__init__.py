"""UPYUN storage (``upyun://operator@service`` URLs): REST and FORM uploads,
resumable multipart, the other REST verbs, CDN purge, processing tasks and
callback signatures.  See :class:`UpyunBackend`."""

from .backend import DEFAULT_ENDPOINT, LIST_END, UpyunBackend
from .names import check_key
from .signing import (
    LocalSigner,
    RemoteSigner,
    Signer,
    authorization,
    http_date,
    password_md5,
    purge_authorization,
    signature,
    verify_callback,
)

__all__ = [
    "UpyunBackend",
    "DEFAULT_ENDPOINT",
    "LIST_END",
    "check_key",
    "Signer",
    "LocalSigner",
    "RemoteSigner",
    "authorization",
    "http_date",
    "password_md5",
    "purge_authorization",
    "signature",
    "verify_callback",
]
