"""Backends, found by URL scheme.

A backend lives in its own module; the registry maps URL schemes to
``"module:Class"`` strings and imports a module only when a URL needs it.
:func:`register` adds a scheme (third-party backends too).  Every URL
passes :func:`~upclient.backends.urls.check_url` before its backend is made,
so a malformed one is :class:`~upclient.errors.BadInput` at construction.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Mapping, Optional, Type

from ..errors import BadInput
from ..settings import Settings
from .base import Backend
from .urls import check_url, shown

__all__ = ["Backend", "register", "backend_class", "backend_for_url", "schemes"]

_REGISTRY: Dict[str, str] = {
    "tus+http": "upclient.backends.tus:TusBackend",
    "tus+https": "upclient.backends.tus:TusBackend",
    "community+http": "upclient.backends.community:CommunityBackend",
    "community+https": "upclient.backends.community:CommunityBackend",
    "upyun": "upclient.backends.upyun:UpyunBackend",
    "fdfs": "upclient.backends.fdfs:FdfsBackend",
}

#: Schemes whose URL names several hosts, comma-separated (``fdfs://a:22122,b:22122``).
_MANY_HOSTS = {"fdfs"}


def register(scheme: str, target: str, *, many_hosts: bool = False) -> None:
    """Map a URL scheme to a backend class given as ``"package.module:Class"``.

    ``many_hosts``: the scheme's URLs may list several ``host:port``, comma-separated.
    """
    if ":" not in target:
        raise ValueError("target must look like 'package.module:Class'")
    _REGISTRY[scheme.lower()] = target
    if many_hosts:
        _MANY_HOSTS.add(scheme.lower())
    else:
        _MANY_HOSTS.discard(scheme.lower())


def schemes() -> list:
    """The URL schemes a Client understands."""
    return sorted(_REGISTRY)


def backend_class(url: str) -> Optional[Type[Backend]]:
    """The backend class that serves ``url``'s scheme (imported now), or None for an unknown scheme."""
    target = _REGISTRY.get(str(url).partition("://")[0].lower())
    if target is None:
        return None
    module_name, _, class_name = target.partition(":")
    cls: Type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def backend_for_url(url: str, settings: Settings, options: Mapping[str, Any]) -> Backend:
    """Make the backend that serves ``url``; BadInput for an unknown scheme or a malformed URL."""
    if not isinstance(url, str) or "://" not in url:
        raise BadInput(f"{shown(str(url))!r} is not a URL; expected e.g. tus+https://host/files/")
    scheme = url.partition("://")[0]
    target = _REGISTRY.get(scheme.lower())
    if target is None:
        hint = ""
        guesses = [k for k in _REGISTRY if k.endswith("+" + scheme.lower())]
        if guesses:
            hint = f" (did you mean {guesses[0]}://{shown(url).partition('://')[2]} ?)"
        raise BadInput(f"unknown URL scheme {scheme!r}{hint}; known schemes: {', '.join(schemes())}")
    check_url(url, many_hosts=scheme.lower() in _MANY_HOSTS)
    cls = backend_class(url)
    assert cls is not None
    return cls(url, settings, **dict(options))
