"""Certificates for HTTPS test servers on 127.0.0.1, made with ``trustme``.

:class:`TLSCertificates` makes one throwaway certificate authority, a server
certificate it signed for ``127.0.0.1``, ``::1`` and ``localhost``, and a
client certificate for mutual TLS, and writes them as PEM files into a
directory (temporary unless given), so that a client can be told to trust
the CA (``verify=certs.ca_pem``) and a server process can load its key::

    with TLSCertificates() as certs, CommunityServer(tls=certs) as server:
        client = upclient.Client("community+" + server.url, verify=str(certs.ca_pem))

    strict = certs.server_context(require_client_cert=True)  # mutual TLS
    with UpyunServer(tls=strict) as server:
        client = upclient.Client(..., verify=str(certs.ca_pem), cert=certs.client_cert_pair)

Nothing here is secret: the keys exist only for a test run. ``trustme`` is
in upclient's ``testing`` extra.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any, Optional, Tuple, Union

__all__ = ["TLSCertificates", "SERVER_NAMES", "ServerTLS", "server_context_of"]

#: The names the server certificate is valid for: every way a test reaches loopback.
SERVER_NAMES = ("127.0.0.1", "::1", "localhost")

PathLike = Union[str, "os.PathLike[str]"]

#: What a server's ``tls=`` takes: certificates (served with
#: :meth:`TLSCertificates.server_context`) or a ready context; None: plain HTTP.
ServerTLS = Union["TLSCertificates", ssl.SSLContext, None]


class TLSCertificates:
    """A test CA, a loopback server certificate and a client certificate, as PEM files.

    :param directory: where the PEM files go (created if needed); ``None``
        makes a temporary directory that :meth:`close` removes.

    Paths (:class:`~pathlib.Path`): :attr:`ca_pem` (the CA certificate, what
    a client trusts), :attr:`server_cert` / :attr:`server_key`,
    :attr:`client_cert` / :attr:`client_key`. The client certificate names
    ``client@upclient.test`` and is signed by the same CA, so a server that
    trusts :attr:`ca_pem` for client certificates accepts it.
    """

    def __init__(self, directory: Optional[PathLike] = None) -> None:
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - the test extra installs it
            raise RuntimeError("TLSCertificates needs trustme: pip install 'upclient[testing]'") from exc
        self._owns_directory = directory is None
        self.directory = Path(directory if directory is not None else tempfile.mkdtemp(prefix="upclient-tls-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="upclient test CA")
        server = ca.issue_cert(*SERVER_NAMES)
        client = ca.issue_cert("client@upclient.test", common_name="upclient test client")

        self.ca_pem = self.directory / "ca.pem"
        self.server_cert = self.directory / "server.pem"
        self.server_key = self.directory / "server.key"
        self.client_cert = self.directory / "client.pem"
        self.client_key = self.directory / "client.key"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        _write_chain(server, self.server_cert)
        server.private_key_pem.write_to_path(str(self.server_key))
        _write_chain(client, self.client_cert)
        client.private_key_pem.write_to_path(str(self.client_key))
        for key in (self.server_key, self.client_key):
            key.chmod(0o600)

    @property
    def client_cert_pair(self) -> Tuple[str, str]:
        """``(certificate path, key path)`` of the client: what ``cert=`` takes."""
        return str(self.client_cert), str(self.client_key)

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """The context a server terminates TLS with.

        ``require_client_cert=True``: a client must present a certificate
        signed by this CA, or the handshake fails.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.server_cert), str(self.server_key))
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self.ca_pem))
        return context

    def client_context(self, *, with_client_cert: bool = False) -> ssl.SSLContext:
        """A client context that trusts this CA (for probes and raw sockets in tests)."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        if with_client_cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def close(self) -> None:
        """Remove the directory if this object made it."""
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "TLSCertificates":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TLSCertificates {self.directory}>"


def _write_chain(cert: Any, path: Path) -> None:
    """A leaf certificate followed by its chain (trustme's leaf comes first)."""
    path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))


def server_context_of(tls: ServerTLS) -> Optional[ssl.SSLContext]:
    """The server context for a ``tls=`` argument (None stays None)."""
    if tls is None or isinstance(tls, ssl.SSLContext):
        return tls
    if isinstance(tls, TLSCertificates):
        return tls.server_context()
    raise TypeError(f"tls must be TLSCertificates, an ssl.SSLContext or None, not {type(tls).__name__}")
