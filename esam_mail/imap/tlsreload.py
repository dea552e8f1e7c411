"""Swap the certificate of running IMAP listeners (SIGHUP), without a restart.

Every IMAP listener of a process shares one Twisted ``CertificateOptions``
(``imap.server.tls_options``), which caches one OpenSSL context; both the
STARTTLS path and the implicit-TLS port (``listenSSL`` wraps the factory once,
at listen time) take their per-connection state from that context.  So the
certificate is replaced *inside* that context: new handshakes present the new
certificate, sessions already open keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from esam_mail.imap.server import tls_options


def reload_certificates(listeners: Iterable[Any], cert: str, key: str) -> int:
    """Load ``cert`` (chain) and ``key`` into every listener's TLS context.

    The pair is validated on a scratch context first, so a bad pair raises and
    leaves the running listeners untouched.

    Returns:
        How many distinct TLS contexts were updated.

    Raises:
        OSError, OpenSSL.SSL.Error, ValueError: unreadable or mismatched files.
    """
    tls_options(cert, key).getContext()  # raises on a bad or mismatched pair
    seen: set[int] = set()
    for listener in listeners:
        opts = getattr(listener.factory, "tls_context_factory", None)
        if opts is None or id(opts) in seen:
            continue
        seen.add(id(opts))
        ctx = opts.getContext()
        ctx.use_certificate_chain_file(cert)
        ctx.use_privatekey_file(key)
        ctx.check_privatekey()
    return len(seen)
