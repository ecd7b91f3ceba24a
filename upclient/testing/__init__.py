"""Test helpers: real tus servers, emulators of the other services, a fault-injecting proxy and a WAN-like proxy.

* :class:`TusNodeServer` runs the reference ``@tus/server`` (Node.js) and
  :class:`ResumableUploadServer` the ``resumable-upload`` package's server,
  each as a context manager on 127.0.0.1 with a free port, with helpers to
  look at what they stored (``stored_path``, ``stored_sha256``).
* :class:`FaultProxy` forwards HTTP/1.1 to a server and, on demand, resets a
  connection mid-request, answers with its own status (503 + Retry-After) or
  holds a response back.
* :class:`ShapingProxy` adds latency and a per-connection bandwidth cap, for
  benchmarks.
* :class:`CommunityServer` emulates the community multipart API (auth,
  dedup, server-side resume, signed part URLs, faults on demand); also
  ``python -m upclient.testing community``.
* :class:`UpyunServer` emulates the UPYUN storage APIs (REST with resumable
  multipart, FORM with notify callbacks, purge, processing tasks; signatures
  checked, files on disk, faults on demand); also
  ``python -m upclient.testing upyun``.
* :class:`FdfsServer` emulates FastDFS over its native TCP protocol: trackers
  and one storage per group on their own ports, the 6.16 wire format with its
  quirks (15- or 45-byte IP fields, 22 closes a storage connection, appender
  files, slaves, metadata, faults on demand; files on disk); also
  ``python -m upclient.testing fdfs``.
* :class:`SilentServer` accepts connections and never answers (or never
  reads), for tests of deadlines and cancellation.
* :class:`TLSCertificates` makes a throwaway CA with loopback server and
  client certificates (``trustme``), for HTTPS: ``CommunityServer``,
  ``UpyunServer`` and ``TusNodeServer`` take ``tls=`` and terminate TLS
  themselves (mutual TLS too).

* :mod:`upclient.testing.plugin`: the pytest plugin (``upclient_tus_server``,
  ``upclient_community_server``, ... fixtures), loaded by pytest once
  ``upclient[testing]`` is installed; :mod:`upclient.testing.running`: a
  server with the URL and settings a client needs.

Nothing here prints; diagnostics go to the ``upclient.testing`` loggers.
Names are imported when first used, so pytest loading the plugin does not
import every emulator.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from upclient.testing.community import CommunityServer
    from upclient.testing.faultproxy import FaultProxy
    from upclient.testing.fdfs import FdfsServer
    from upclient.testing.servers import ResumableUploadServer, ServerStartError, TusNodeServer, free_port
    from upclient.testing.shaping import ShapingProxy
    from upclient.testing.silent import SilentServer
    from upclient.testing.tls import TLSCertificates
    from upclient.testing.upyun import UpyunServer

#: Where each public name lives.
_HOMES = {
    "CommunityServer": "upclient.testing.community",
    "FaultProxy": "upclient.testing.faultproxy",
    "FdfsServer": "upclient.testing.fdfs",
    "RedisServer": "upclient.testing.redis",
    "ResumableUploadServer": "upclient.testing.servers",
    "ServerStartError": "upclient.testing.servers",
    "TusNodeServer": "upclient.testing.servers",
    "free_port": "upclient.testing.servers",
    "ShapingProxy": "upclient.testing.shaping",
    "SilentServer": "upclient.testing.silent",
    "TLSCertificates": "upclient.testing.tls",
    "UpyunServer": "upclient.testing.upyun",
}

__all__ = [
    "TusNodeServer",
    "ResumableUploadServer",
    "ServerStartError",
    "FaultProxy",
    "ShapingProxy",
    "CommunityServer",
    "UpyunServer",
    "FdfsServer",
    "free_port",
    "SilentServer",
    "TLSCertificates",
    "RedisServer",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> Any:
    return sorted(set(globals()) | set(__all__))
