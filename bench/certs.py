"""Certificates for the HTTPS scenario: a throwaway CA from ``trustme`` and a server certificate it signed.

The sink serves with ``server.pem`` (certificate chain and key in one file,
issued for ``127.0.0.1`` and ``localhost``); every client trusts ``ca.pem``
and nothing else it is not told about: upclient ``verify=ca.pem``, curl
``--cacert ca.pem``, tuspy (requests) ``REQUESTS_CA_BUNDLE=ca.pem``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate, PEM: what clients trust
    server: Path  # the server's key and certificate chain, PEM


def make_certificates(folder: Path) -> Certificates:
    """A new CA and a server certificate for 127.0.0.1, written under ``folder`` (created)."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    certs = Certificates(ca=folder / "ca.pem", server=folder / "server.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    issued.private_key_and_cert_chain_pem.write_to_path(str(certs.server))
    certs.server.chmod(0o600)
    return certs
