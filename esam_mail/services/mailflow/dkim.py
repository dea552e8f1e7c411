"""DKIM signing of outgoing mail (RFC 6376) with RSA and Ed25519 keys (RFC 8463).

``DkimSigner`` dual-signs: one ``DKIM-Signature`` per configured key, RSA first
and the others stacked on top, so verifiers that do not know Ed25519 still find
a valid RSA signature (RFC 8463 section 6).  Canonicalisation is
``relaxed/relaxed`` (RFC 6376 3.4.2 and 3.4.4).

Header selection (RFC 6376 5.4 and 8.15): every header from
``SIGN_HEADERS`` that is present in the message is listed once per occurrence
plus once more ("over-signing"), so a header of that name added in transit
breaks the signature.  Absent headers are not listed.

Keys: ``generate_key`` writes a key in the format dkimpy expects (RSA 2048 as a
PKCS#1 PEM; Ed25519 as the base64 of the raw 32-byte seed) and returns the DNS
TXT value for ``<selector>._domainkey.<domain>`` (RFC 6376 3.6.1; RFC 8463 4
for ``k=ed25519``).  No external ``openssl`` is needed.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from esam_mail import fsio

__all__ = [
    "SIGN_HEADERS",
    "DkimKey",
    "DkimSigner",
    "dns_name",
    "dns_record",
    "generate_key",
    "txt_chunks",
]

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")

#: Headers we sign when present, each over-signed once (RFC 6376 5.4.2).
SIGN_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
)

RSA_BITS = 2048


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One signing key: ``selector``, ``algorithm`` and the private key bytes."""

    selector: str
    algorithm: Algorithm
    private_key: bytes


def _check_algorithm(algorithm: str) -> Algorithm:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported DKIM algorithm {algorithm!r}")
    return algorithm


class DkimSigner:
    """Sign messages for one domain with one or more keys.

    Args:
        domain: the signing domain (``d=``).
        keys: ``(selector, algorithm, private key bytes)`` tuples or ``DkimKey``;
            ``algorithm`` is ``"rsa-sha256"`` or ``"ed25519-sha256"``.
        sign_headers: override ``SIGN_HEADERS`` (``from`` is always included).

    Raises:
        ValueError: no keys or an unknown algorithm.
    """

    def __init__(
        self,
        domain: str,
        keys: Sequence[tuple[str, str, bytes] | DkimKey],
        *,
        sign_headers: Sequence[str] = SIGN_HEADERS,
    ) -> None:
        if not keys:
            raise ValueError("at least one DKIM key is required")
        self.domain = domain.lower().rstrip(".")
        parsed = [k if isinstance(k, DkimKey) else DkimKey(k[0], _check_algorithm(k[1]), k[2]) for k in keys]
        # RSA first so the Ed25519 signature ends up on top (RFC 8463 6).
        self.keys = sorted(parsed, key=lambda k: k.algorithm != "rsa-sha256")
        names = [h.lower() for h in sign_headers]
        if "from" not in names:
            names.insert(0, "from")
        self.sign_headers = tuple(names)

    @classmethod
    def from_files(cls, domain: str, keys: Sequence[tuple[str, str, str | os.PathLike[str]]]) -> DkimSigner:
        """Build a signer from ``(selector, algorithm, key file path)`` tuples."""
        loaded = []
        for selector, algorithm, path in keys:
            with open(path, "rb") as f:
                loaded.append((selector, algorithm, f.read()))
        return cls(domain, loaded)

    def header_list(self, message: bytes) -> list[bytes]:
        """The ``h=`` list for ``message``: present headers, each once extra.

        Raises:
            ValueError: the message has no From header (RFC 6376 5.4).
        """
        headers, _ = dkim.rfc822_parse(message)
        counts: dict[bytes, int] = {}
        for name, _value in headers:
            low = bytes(name).lower()
            counts[low] = counts.get(low, 0) + 1
        if not counts.get(b"from"):
            raise ValueError("message has no From header")
        out: list[bytes] = []
        for h in self.sign_headers:
            n = counts.get(h.encode(), 0)
            if n:
                out.extend([h.encode()] * (n + 1))
        return out

    def signatures(self, message: bytes) -> list[bytes]:
        """``DKIM-Signature`` header fields (CRLF-terminated), outermost first."""
        linesep = b"\r\n" if b"\r\n" in message else b"\n"
        include = self.header_list(message)
        sigs: list[bytes] = []
        for key in self.keys:
            sig = dkim.sign(
                message,
                key.selector.encode(),
                self.domain.encode(),
                key.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=key.algorithm.encode(),
                include_headers=include,
                linesep=linesep,
            )
            sigs.insert(0, sig)
        return sigs

    def sign(self, message: bytes) -> bytes:
        """Return ``message`` with one ``DKIM-Signature`` per key prepended.

        CPU only (a few ms per RSA key); call ``sign_async`` from the loop for
        large messages.

        Raises:
            ValueError: no From header.
            dkim.DKIMException: malformed message or key.
        """
        return b"".join(self.signatures(message)) + message

    async def sign_async(self, message: bytes) -> bytes:
        """``sign`` in a worker thread."""
        return await asyncio.to_thread(self.sign, message)

    def dns_records(self) -> dict[str, str]:
        """``{"<selector>._domainkey.<domain>": TXT value}`` for every key."""
        return {dns_name(k.selector, self.domain): dns_record(k.private_key, k.algorithm) for k in self.keys}


def dns_name(selector: str, domain: str) -> str:
    """The owner name of a DKIM key record (RFC 6376 3.6.2.1)."""
    return f"{selector}._domainkey.{domain.rstrip('.')}"


def dns_record(private_key: bytes, algorithm: str) -> str:
    """The TXT value publishing the public half of ``private_key``.

    RSA: ``p=`` is the base64 DER SubjectPublicKeyInfo (RFC 6376 3.6.1).
    Ed25519: ``p=`` is the base64 raw 32-byte public key (RFC 8463 4).

    The value may exceed 255 octets; split it with ``txt_chunks`` for zone files.
    """
    algorithm = _check_algorithm(algorithm)
    if algorithm == "rsa-sha256":
        key = serialization.load_pem_private_key(private_key, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    seed = base64.b64decode(private_key.strip(), validate=True)
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def txt_chunks(value: str, size: int = 255) -> list[str]:
    """Split a TXT value into character-strings of at most ``size`` octets
    (RFC 1035 3.3.14; the verifier concatenates them, RFC 6376 3.6.2.2)."""
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def generate_key(
    directory: str | os.PathLike[str], selector: str, algorithm: str = "rsa-sha256"
) -> tuple[str, str]:
    """Create a new private key file ``<directory>/<selector>.<kind>.key`` (0600).

    Args:
        directory: created 0700 if missing.
        selector: DKIM selector (``s=``); letters, digits, ``-``, ``.``.
        algorithm: ``"rsa-sha256"`` (2048-bit) or ``"ed25519-sha256"``.

    Returns:
        ``(key_path, dns_txt_value)``.

    Raises:
        ValueError: bad selector or algorithm.
        FileExistsError: the key file already exists (never overwritten).
    """
    algorithm = _check_algorithm(algorithm)
    if not selector or not all(c.isalnum() or c in "-." for c in selector):
        raise ValueError(f"bad DKIM selector {selector!r}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if algorithm == "rsa-sha256":
        rkey = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = rkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as dkimpy parses
            serialization.NoEncryption(),
        )
        kind = "rsa"
    else:
        ekey = ed25519.Ed25519PrivateKey.generate()
        seed = ekey.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        pem = base64.b64encode(seed) + b"\n"
        kind = "ed25519"
    path = os.path.join(os.fspath(directory), f"{selector}.{kind}.key")
    fsio.write_file(path, pem, mode=0o600, sync_dir=True)
    return path, dns_record(pem, algorithm)
