"""What a Django storage name means on each backend: :class:`Dialect` and its kinds.

A Django ``Storage`` deals in names; the backends differ in who chooses them:

* UPYUN stores files under the keys the client gives (``uploads/a.pdf``):
  the name is the key, below the storage's ``location``.
* The community API, FastDFS and tus choose the name themselves: the name is
  the id the server handed out.  A FastDFS id (``group1/M00/00/00/<27
  characters>.ext``) is about 50 characters; a tus name is the upload URL's
  last part when the URL lies below the endpoint (32 characters on
  ``@tus/server``), else the whole URL; a community id is the server's.  Each
  fits ``FileField``'s default ``max_length`` of 100, except a whole tus URL,
  which needs ``max_length=255``.

A dialect also says how a name becomes a URL and what a listing looks like.
"""

from __future__ import annotations

import datetime
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

from ...result import FileInfo, UploadResult

__all__ = ["Dialect", "dialect_for"]


class Dialect:
    """A backend as a Django storage sees it; see the module docstring."""

    #: Whether the client chooses the names (True) or the server does (False).
    keyed = False
    #: Whether :meth:`listdir` can list what is stored.
    lists = False
    #: Put options that send a stream's parts one at a time, in order: a browser
    #: sends a file in order anyway, and each part in flight is held in memory.
    serial_options: Dict[str, Any] = {}

    def __init__(self, client: Any, location: str = "") -> None:
        self.client = client
        self.backend = client.backend
        self.location = location.strip("/") + "/" if location.strip("/") else ""

    # -- names -----------------------------------------------------------------------

    def key_for(self, name: str) -> str:
        """The ``key`` to put a file named ``name`` under (a name for a server that names)."""
        return self.location + name

    def name_of(self, result: UploadResult) -> str:
        """The storage name of a finished upload."""
        return result.id

    def id_of(self, name: str) -> str:
        """The id the client's verbs take for a storage name."""
        return name

    # -- what the server says ----------------------------------------------------------

    def url(self, name: str) -> str:
        raise NotImplementedError(
            f"the {self.backend.name} backend has no public URL for a file: give the storage a base_url"
        )

    def modified(self, info: FileInfo) -> Optional[float]:
        return info.modified

    def listdir(self, path: str) -> Tuple[List[str], List[str]]:
        raise NotImplementedError(f"the {self.backend.name} backend cannot list the files it stores")


class UpyunDialect(Dialect):
    """Keys chosen by the client; URLs on the service's CDN domain; folders listed."""

    keyed = True
    lists = True
    serial_options = {"serial": True}

    def name_of(self, result: UploadResult) -> str:
        key = result.key or result.id
        return key[len(self.location):] if self.location and key.startswith(self.location) else key

    def id_of(self, name: str) -> str:
        return self.location + name

    def url(self, name: str) -> str:
        return f"https://{self.backend.domain}/{urllib.parse.quote(self.id_of(name))}"

    def listdir(self, path: str) -> Tuple[List[str], List[str]]:
        folder = self.location + path.strip("/")
        dirs: List[str] = []
        files: List[str] = []
        for entry in self.client.iter(folder.rstrip("/")):
            name = entry.extra.get("name") or entry.id.rstrip("/").rsplit("/", 1)[-1]
            (dirs if entry.extra.get("type") == "folder" else files).append(name)
        return dirs, files


class CommunityDialect(Dialect):
    """Server ids; the URL is the file's ``cdn_url``; one flat listing."""

    lists = True

    def url(self, name: str) -> str:
        info = self.client.info(name)
        f = info.extra.get("file")
        url = getattr(f, "cdn_url", None) or getattr(f, "oss_url", None)
        if not url:
            raise NotImplementedError(f"the community server gave file {name} no URL: give the storage a base_url")
        return str(url)

    def modified(self, info: FileInfo) -> Optional[float]:
        f = info.extra.get("file")
        raw: Dict[str, Any] = dict(getattr(f, "raw", None) or {})
        for field in ("updated_at", "confirmed_at", "created_at"):
            when = _timestamp(raw.get(field))
            if when is not None:
                return when
        return None

    def listdir(self, path: str) -> Tuple[List[str], List[str]]:
        if path.strip("/"):
            return [], []  # the community API has no folders
        return [], [info.id for info in self.client.iter()]


class FdfsDialect(Dialect):
    """FastDFS file ids; no URL of its own (an nginx in front serves ``base_url`` + id)."""

    def url(self, name: str) -> str:
        raise NotImplementedError(
            "FastDFS serves no HTTP itself: give the storage a base_url (the nginx that serves its files)"
        )


class TusDialect(Dialect):
    """Upload URLs, kept short when they lie below the endpoint; the URL is the upload's own."""

    def name_of(self, result: UploadResult) -> str:
        url = result.id
        endpoint = self.backend.endpoint
        base = endpoint if endpoint.endswith("/") else endpoint + "/"
        rest = url[len(base):] if url.startswith(base) else ""
        if rest and "/" not in rest and "?" not in rest:
            return rest
        return url

    def url(self, name: str) -> str:
        return str(self.backend.resolve(name, "url"))

    def modified(self, info: FileInfo) -> Optional[float]:
        return None  # tus says when an upload expires, not when it was made


def dialect_for(client: Any, location: str = "") -> Dialect:
    """The dialect of ``client``'s backend; a backend not known here is treated as naming its files."""
    kinds = {"upyun": UpyunDialect, "community": CommunityDialect, "fdfs": FdfsDialect, "tus": TusDialect}
    return kinds.get(client.backend.name, Dialect)(client, location)


def _timestamp(value: Any) -> Optional[float]:
    """Epoch seconds from a number or an ISO 8601 string (``Z`` allowed); None if neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        return when.timestamp()
    return None
