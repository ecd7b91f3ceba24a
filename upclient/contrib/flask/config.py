"""The ``UPCLIENT_*`` keys of ``app.config``: what the extension reads, and the ``Client`` they make.

=========================  ==================================================  ===========
Key                        What                                                Default
=========================  ==================================================  ===========
``UPCLIENT_URL``           where uploads go (``tus+https://...``,              required
                           ``upyun://op@svc``, ``community+https://...``,
                           ``fdfs://tracker:22122``)
``UPCLIENT_TIMEOUT``       seconds one request's uploads may take in all       300
                           (``put(timeout=...)``); ``None``: no deadline
``UPCLIENT_MAX_SIZE``      largest file a request may upload, in bytes         None
                           (413 above it); ``MAX_CONTENT_LENGTH`` still
                           limits whole request bodies
``UPCLIENT_STORE``         resume points: a ``BaseStore``; a request body      None
                           can never be resumed, so by default they stay
                           in memory (``MemoryStore``)
``UPCLIENT_PART_SIZE``     a ``Client`` setting, as ``Client(...)`` takes      as Client
                           it: ``UPCLIENT_CONCURRENCY``, ``_MAX_FILES``,
                           ``_RETRY``, ``_CONNECT_TIMEOUT``,
                           ``_READ_TIMEOUT``, ``_CHECKSUM``, ``_HEADERS``,
                           ``_AUTH``, ``_VERIFY``, ``_CERT``,
                           ``_TRUSTED_ORIGINS`` the same way
``UPCLIENT_<OPTION>``      a backend option, lowercased: ``UPCLIENT_TOKEN``
                           (community), ``UPCLIENT_PASSWORD`` and
                           ``UPCLIENT_ENDPOINT`` (UPYUN), ...; an option the
                           backend does not know is an error at start-up
``UPCLIENT_OPTIONS``       a dict of more ``Client`` keyword arguments         {}
=========================  ==================================================  ===========

Numbers may be given as strings (``"8388608"``), so settings read from the
environment with ``app.config.from_prefixed_env()`` or ``from_mapping``
work as they are.  Error messages name the key, never its value: a value
may be a password.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

from upclient.errors import BadInput

__all__ = ["PREFIX", "FlaskSettings", "client_arguments", "request_settings", "DEFAULT_TIMEOUT"]

PREFIX = "UPCLIENT_"

#: Seconds a request's uploads may take unless ``UPCLIENT_TIMEOUT`` says otherwise.
DEFAULT_TIMEOUT = 300.0

#: Keys the extension itself reads; every other ``UPCLIENT_*`` key goes to ``Client``.
OWN_KEYS = frozenset({"URL", "TIMEOUT", "MAX_SIZE", "OPTIONS"})

_INTEGERS = frozenset({"part_size", "concurrency", "max_files", "max_conns"})
_NUMBERS = frozenset({"connect_timeout", "read_timeout", "network_timeout", "idle_timeout"})
_BOOLEANS = frozenset({"checksum", "concat", "method_override"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise BadInput(f"{key} must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise BadInput(f"{key} must be a whole number")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise BadInput(f"{key} must be a number of seconds")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BadInput(f"{key} must be a number of seconds")


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadInput(f"{key} must be true or false")


def _typed(key: str, name: str, value: Any) -> Any:
    if name in _INTEGERS:
        return _integer(key, value)
    if name in _NUMBERS:
        return _number(key, value)
    if name in _BOOLEANS:
        return _boolean(key, value)
    return value


def client_arguments(config: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
    """``(url, keyword arguments)`` for ``Client`` from ``app.config``; BadInput naming the key at fault."""
    url = config.get(PREFIX + "URL")
    if not isinstance(url, str) or not url.strip():
        raise BadInput(f"set {PREFIX}URL in app.config: where uploads go, e.g. tus+https://host/files/")
    kwargs: Dict[str, Any] = {"store": None}
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        suffix = key[len(PREFIX):]
        if suffix in OWN_KEYS:
            continue
        if not suffix or suffix != suffix.upper():
            raise BadInput(f"{key}: app.config keys of upclient are upper case (UPCLIENT_PART_SIZE)")
        name = suffix.lower()
        kwargs[name] = _typed(key, name, value)
    extra = config.get(PREFIX + "OPTIONS") or {}
    if not isinstance(extra, Mapping):
        raise BadInput(f"{PREFIX}OPTIONS must be a dict of Client keyword arguments")
    for name, value in extra.items():
        kwargs[str(name)] = _typed(f"{PREFIX}OPTIONS[{name!r}]", str(name), value)
    return url.strip(), kwargs


class FlaskSettings:
    """What a request's uploads are held to: the deadline and the largest file."""

    __slots__ = ("timeout", "max_size")

    def __init__(self, timeout: Optional[float], max_size: Optional[int]) -> None:
        self.timeout = timeout
        self.max_size = max_size

    def __repr__(self) -> str:
        return f"FlaskSettings(timeout={self.timeout!r}, max_size={self.max_size!r})"


def request_settings(config: Mapping[str, Any]) -> FlaskSettings:
    """``UPCLIENT_TIMEOUT`` and ``UPCLIENT_MAX_SIZE``, checked."""
    timeout: Optional[float] = DEFAULT_TIMEOUT
    if PREFIX + "TIMEOUT" in config:
        raw = config[PREFIX + "TIMEOUT"]
        timeout = None if raw is None else _number(PREFIX + "TIMEOUT", raw)
        if timeout is not None and not timeout > 0:
            raise BadInput(f"{PREFIX}TIMEOUT must be a positive number of seconds, or None")
    max_size = config.get(PREFIX + "MAX_SIZE")
    if max_size is not None:
        max_size = _integer(PREFIX + "MAX_SIZE", max_size)
    return FlaskSettings(timeout, max_size)
