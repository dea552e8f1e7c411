"""IMAP TLS: the listeners' certificate options, swappable at run time (SIGHUP).

:func:`tls_options` builds the Twisted ``CertificateOptions`` from PEM files.

``start_imap`` wraps the listeners' Twisted ``CertificateOptions`` in a
:class:`ReloadableTLS`: an old-style context factory whose ``getContext()`` is
asked for every new connection, both by the implicit-TLS port (its
``TLSMemoryBIOFactory`` calls it per accepted connection) and by STARTTLS.
Reloading builds fresh ``CertificateOptions`` and swaps them in: new handshakes
present the new certificate, open sessions keep theirs.  (pyOpenSSL forbids
changing a context that has already made connections, so the swap is the way.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.ssl import TLSVersion
from zope.interface import implementer


def tls_options(cert_file: str, key_file: str) -> Any:
    """A Twisted ``CertificateOptions`` (TLS >= 1.2) from PEM files (chain allowed)."""
    with open(cert_file, "rb") as f:
        pem = f.read()
    with open(key_file, "rb") as f:
        key_pem = f.read()
    certs = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    if not certs:
        raise ValueError(f"{cert_file}: no PEM certificate")
    # cryptography objects, not pyOpenSSL's X509/PKey (deprecated by pyOpenSSL, a warning on
    # every start); Twisted hands them to pyOpenSSL's Context as they are.
    # (Twisted's hints still say X509/PKey; pyOpenSSL >= 24.3 takes these at run time.)
    pair: dict[str, Any] = {
        "privateKey": serialization.load_pem_private_key(key_pem, password=None),
        "certificate": x509.load_pem_x509_certificate(certs[0]),
        "extraCertChain": [x509.load_pem_x509_certificate(c) for c in certs[1:]] or None,
    }
    return ssl.CertificateOptions(**pair, raiseMinimumTo=TLSVersion.TLSv1_2)


@implementer(IOpenSSLContextFactory)
class ReloadableTLS:
    """A context factory delegating to ``current`` (a ``CertificateOptions``)."""

    def __init__(self, current: Any) -> None:
        self.current = current

    def getContext(self) -> Any:  # Twisted's interface name
        return self.current.getContext()


def reload_certificates(listeners: Iterable[Any], cert: str, key: str) -> int:
    """Serve ``cert`` (chain) and ``key`` on every listener's next handshakes.

    The pair is loaded and checked before anything is swapped, so a bad pair
    raises and leaves the running listeners untouched.

    Returns:
        How many distinct TLS configurations were swapped.

    Raises:
        OSError, OpenSSL.SSL.Error, ValueError: unreadable or mismatched files.
    """
    fresh = tls_options(cert, key)
    fresh.getContext()  # raises on a bad or mismatched pair
    seen: set[int] = set()
    for listener in listeners:
        holder = getattr(listener.factory, "tls_context_factory", None)
        if isinstance(holder, ReloadableTLS) and id(holder) not in seen:
            seen.add(id(holder))
            holder.current = fresh
    return len(seen)
