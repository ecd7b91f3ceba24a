"""Who may call the community emulator: API credentials, owners, presigned part URLs.

API routes take ``Authorization: Bearer <token>`` or ``X-API-Key: <key>``
(:class:`Credentials`); storage routes take a part URL signed with the
server's secret (:class:`PartUrls`).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Mapping, NamedTuple, Optional, Tuple, Union
from urllib.parse import quote

from upclient.testing.community.protocol import (
    CODE_USER_REQUIRED,
    UPLOAD_PREFIX,
    StoreError,
    business,
    http_error,
)

if TYPE_CHECKING:
    from upclient.testing.community.state import Upload


class Caller(NamedTuple):
    """Who sent an API request."""

    kind: str  # "token" or "api_key"
    user_id: Optional[str]  # the token's user; None for an API key


def user_for_token(token: str) -> str:
    """The user id of a bearer token given as a plain iterable: ``user-<12 hex>``."""
    return "user-" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:12]


class Credentials:
    """The accepted bearer tokens (each with its user) and API keys."""

    def __init__(self, tokens: Union[Iterable[str], Mapping[str, str]], api_keys: Iterable[str]) -> None:
        if isinstance(tokens, str):
            tokens = [tokens]
        if isinstance(api_keys, str):
            api_keys = [api_keys]
        if isinstance(tokens, Mapping):
            self.tokens: Dict[str, str] = {str(t): str(u) for t, u in tokens.items()}
        else:
            self.tokens = {str(t): user_for_token(str(t)) for t in tokens}
        self.api_keys = {str(k) for k in api_keys}
        if not self.tokens and not self.api_keys:
            raise ValueError("give at least one bearer token or API key")

    def authenticate(self, headers: Any) -> Caller:
        """The caller a request's headers name; HTTP 401 if none."""
        authorization = headers.get("Authorization")
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            user = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
            if user is not None:
                return Caller("token", user)
        key = headers.get("X-API-Key")
        if key and key in self.api_keys:
            return Caller("api_key", None)
        raise http_error(401, "authentication failed: unknown bearer token or API key")


def identity(caller: Caller, body: Mapping[str, Any]) -> Tuple[str, Optional[str]]:
    """``(user_id, org_id)`` a request acts as: the token's user, or the body's with an API key."""
    org_id = body.get("org_id")
    org = None if org_id is None else str(org_id)
    if caller.kind == "token":
        assert caller.user_id is not None
        return caller.user_id, org
    user_id = body.get("user_id")
    if user_id is None or user_id == "":
        raise business(CODE_USER_REQUIRED, "user_id is required with API-key authentication")
    return str(user_id), org


def check_owner(caller: Caller, record: "Upload", user_id: Optional[str] = None) -> None:
    """HTTP 403 unless the caller (or, with an API key, ``user_id`` if given) owns ``record``."""
    acting = caller.user_id if caller.kind == "token" else user_id
    if acting is not None and acting != record.user_id:
        raise http_error(403, f"file {record.id} belongs to another user")


class PartUrls:
    """Presigned part URLs: HMAC-SHA256 of method, path, expiry and generation.

    :meth:`expire_all` starts a new generation: URLs of an older one are refused.
    """

    def __init__(self, secret: bytes, clock: Callable[[], float]) -> None:
        self._secret = secret
        self._clock = clock
        self._lock = threading.Lock()
        self._generation = 0

    def expire_all(self) -> int:
        """Expire every URL issued so far; returns the new generation."""
        with self._lock:
            self._generation += 1
            return self._generation

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    def _signature(self, method: str, path: str, expires: str, generation: str) -> str:
        message = f"{method}\n{path}\n{expires}\n{generation}".encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, base: str, file_id: str, part_number: int, expires: int) -> str:
        """The presigned PUT URL of one part, valid until ``expires`` (epoch seconds)."""
        path = f"{UPLOAD_PREFIX}{quote(file_id)}/{part_number}"
        gen = str(self.generation)
        signature = self._signature("PUT", path, str(expires), gen)
        return f"{base}{path}?Expires={expires}&Gen={gen}&Signature={signature}"

    def check_signature(self, method: str, path: str, query: Mapping[str, str]) -> None:
        """403 ``SignatureDoesNotMatch`` (or ``AccessDenied`` without the fields) unless signed by us."""
        expires, gen, signature = query.get("Expires"), query.get("Gen"), query.get("Signature")
        if not expires or gen is None or not signature:
            raise StoreError(403, "AccessDenied", "Expires, Gen and Signature are required")
        expected = self._signature(method, path, expires, gen)
        if not hmac.compare_digest(expected, signature):
            raise StoreError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )

    def check_expiry(self, query: Mapping[str, str]) -> None:
        """403 ``AccessDenied`` once the URL's time has passed or its generation was expired."""
        try:
            expires = int(query["Expires"])
            generation = int(query["Gen"])
        except (KeyError, ValueError):
            raise StoreError(403, "AccessDenied", "bad Expires or Gen") from None
        if self._clock() > expires or generation < self.generation:
            raise StoreError(403, "AccessDenied", "Request has expired.")
