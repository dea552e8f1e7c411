"""Signed, hash-chained evidence of official deliveries (ETSI EN 319 522 in spirit).

Every step of an official document produces one **evidence record**, signed with the
operator's key and chained to the record before it::

    SUBMITTED  -> DELIVERED -> RETRIEVED         (the normal path)
    SUBMITTED  -> REJECTED                       (no EDS-confirmed mailbox, ...)
    SUBMITTED  -> DELIVERED -> EXPIRED           (not opened before the deadline)

Event names map onto EN 319 522-2 events (``etsi_event``): SubmissionAcceptance,
SubmissionRejection / ContentConsignmentFailure, ContentConsignment, ContentHandover,
ContentHandoverFailure.

A record is a JSON object of strings, integers and nulls only (no floats, so the
canonical form is unambiguous).  Its **canonical form** is UTF-8 JSON with sorted keys
and no insignificant white space.  The signature covers the canonical form of the record
*without* its ``signature`` member; ``record_hash`` is SHA-256 over the canonical form of
the whole signed record, and the next record carries it as ``prev_hash``.  Changing,
dropping, inserting or reordering any record therefore breaks a signature or a link.

The signature member::

    "signature": {"alg": "ES256" | "RS256" | "EdDSA", "cert_sha256": "<hex>", "value": "<base64>"}

ES256 is ECDSA P-256 with SHA-256 (DER-encoded signature value, as X.509 uses), RS256
RSASSA-PKCS1-v1_5 with SHA-256, EdDSA Ed25519.  Verification needs nothing but the
operator's X.509 certificate: :func:`verify_chain` is pure and offline (``esam evidence
verify FILE --cert operator-cert.pem``).

An exported chain file (``esam evidence show ID --export``, the API, the e-mail to the
sender) is::

    {"format": "esam-evidence-chain/1", "message_id": "...", "records": [ ... ]}

No database, no network, no event loop here; callers run signing through
``asyncio.to_thread`` when they are on the loop.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from esam_mail.errors import ConfigError, EsamError

__all__ = [
    "CHAIN_FORMAT",
    "ETSI_EVENTS",
    "EVENTS",
    "EvidenceInvalid",
    "OperatorKey",
    "canonical",
    "chain_document",
    "ensure_operator_key",
    "make_record",
    "record_hash",
    "verify_chain",
]

CHAIN_FORMAT = "esam-evidence-chain/1"
POLICY = "esam-official-1"

EVENTS = ("SUBMITTED", "DELIVERED", "RETRIEVED", "REJECTED", "EXPIRED")
ETSI_EVENTS = {
    "SUBMITTED": "SubmissionAcceptance",
    "DELIVERED": "ContentConsignment",
    "RETRIEVED": "ContentHandover",
    "REJECTED": "SubmissionRejection",
    "EXPIRED": "ContentHandoverFailure",
}
#: Which event may follow which (None: the first record).
_NEXT: dict[str | None, frozenset[str]] = {
    None: frozenset({"SUBMITTED"}),
    "SUBMITTED": frozenset({"DELIVERED", "REJECTED"}),
    "DELIVERED": frozenset({"RETRIEVED", "EXPIRED"}),
    "RETRIEVED": frozenset(),
    "REJECTED": frozenset(),
    "EXPIRED": frozenset(),
}


class EvidenceInvalid(EsamError):
    """An evidence chain does not verify; ``str()`` says which record and why."""


def canonical(obj: Any) -> bytes:
    """The canonical JSON bytes of ``obj`` (sorted keys, no spaces, UTF-8)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) over the canonical form of a signed record: the next ``prev_hash``."""
    return hashlib.sha256(canonical(record)).hexdigest()


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cert_fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# --------------------------------------------------------------------------- the key


@dataclass(frozen=True)
class OperatorKey:
    """The operator's signing key and its X.509 certificate."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    cert: x509.Certificate

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> OperatorKey:
        """Read the PEM pair.

        Raises:
            ConfigError: a file is missing, unreadable, or the key does not match the cert.
        """
        try:
            cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                [f"official.operator_key: cannot load the operator key pair ({type(exc).__name__}; "
                 "hint: run `esam init`)"]
            ) from None
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            raise ConfigError(["official.operator_key: only EC, RSA or Ed25519 keys sign evidence"])
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(
            serialization.Encoding.DER, pub
        ):
            raise ConfigError(["official.operator_cert: the certificate is not the key's"])
        return cls(key, cert)

    @property
    def fingerprint(self) -> str:
        return cert_fingerprint(self.cert)

    @property
    def alg(self) -> str:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return "ES256"
        if isinstance(self.key, rsa.RSAPrivateKey):
            return "RS256"
        return "EdDSA"

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(data)

    def sign_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` plus its ``signature`` member."""
        body = {k: v for k, v in record.items() if k != "signature"}
        value = self.sign(canonical(body))
        return {**body, "signature": {"alg": self.alg, "cert_sha256": self.fingerprint,
                                      "value": base64.b64encode(value).decode("ascii")}}

    def sign_document(self, document: bytes) -> bytes:
        """A detached CMS SignedData (DER) over ``document``: the gateway signs on a
        sender's behalf.  Built by ``cryptography``'s PKCS#7 builder (signed attributes,
        SHA-256); any CMS verifier (``openssl cms -verify -binary``) checks it."""
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            raise EsamError("an Ed25519 operator key cannot sign CMS documents")
        return (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(document)
            .add_signer(self.cert, self.key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature,
                                               pkcs7.PKCS7Options.Binary])
        )


def ensure_operator_key(cert_path: Path, key_path: Path, *, hostname: str, domain: str,
                        years: int = 10) -> bool:
    """Make a self-signed ECDSA P-256 evidence certificate when none exists.

    Production replaces it with a certificate issued to the operator (``official.*``);
    anyone who verifies evidence needs only this certificate.  Returns whether one was made.
    """
    if cert_path.exists() and key_path.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname} evidence signer"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, domain),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return True


# --------------------------------------------------------------------------- records


def make_record(
    *,
    message_id: str,
    seq: int,
    event: str,
    at: dt.datetime,
    prev_hash: str | None,
    sender: Mapping[str, Any],
    recipient: Mapping[str, Any],
    document: Mapping[str, Any],
    reason: str | None = None,
) -> dict[str, Any]:
    """An unsigned evidence record (see the module docstring for the fields)."""
    if event not in ETSI_EVENTS:
        raise ValueError(f"unknown evidence event {event!r}")
    return {
        "version": 1,
        "policy": POLICY,
        "evidence_id": f"{message_id}-{seq}",
        "message_id": message_id,
        "seq": seq,
        "event": event,
        "etsi_event": ETSI_EVENTS[event],
        "time": _rfc3339(at),
        "prev_hash": prev_hash,
        "sender": dict(sender),
        "recipient": dict(recipient),
        "document": dict(document),
        "reason": reason,
    }


def chain_document(message_id: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The exported chain file's object."""
    return {"format": CHAIN_FORMAT, "message_id": message_id, "records": [dict(r) for r in records]}


def _verify_signature(cert: x509.Certificate, alg: str, data: bytes, value: bytes) -> None:
    pub = cert.public_key()
    if alg == "ES256" and isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(value, data, ec.ECDSA(hashes.SHA256()))
    elif alg == "RS256" and isinstance(pub, rsa.RSAPublicKey):
        pub.verify(value, data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "EdDSA" and isinstance(pub, ed25519.Ed25519PublicKey):
        pub.verify(value, data)
    else:
        raise InvalidSignature


def verify_chain(doc: Any, cert: x509.Certificate) -> list[dict[str, Any]]:
    """Verify an exported chain against the operator's certificate; return its records.

    Checks: the format; every record signed by ``cert`` over its canonical form; ``seq``
    counting 1, 2, 3 ...; one message id throughout; every ``prev_hash`` equal to the
    hash of the record before it (null for the first); the events in an allowed order.

    Raises:
        EvidenceInvalid: naming the first record that fails and why.
    """
    if not isinstance(doc, dict) or doc.get("format") != CHAIN_FORMAT:
        raise EvidenceInvalid(f"not an evidence chain (format is not {CHAIN_FORMAT!r})")
    records = doc.get("records")
    if not isinstance(records, list) or not records:
        raise EvidenceInvalid("the chain has no records")
    fp = cert_fingerprint(cert)
    message_id = doc.get("message_id")
    prev: str | None = None
    last_event: str | None = None
    for i, rec in enumerate(records, start=1):
        where = f"record {i}"
        if not isinstance(rec, dict):
            raise EvidenceInvalid(f"{where}: not an object")
        sig = rec.get("signature")
        if not isinstance(sig, dict):
            raise EvidenceInvalid(f"{where}: unsigned")
        if sig.get("cert_sha256") != fp:
            raise EvidenceInvalid(f"{where}: signed with another certificate than the one given")
        try:
            value = base64.b64decode(str(sig.get("value", "")), validate=True)
            body = {k: v for k, v in rec.items() if k != "signature"}
            _verify_signature(cert, str(sig.get("alg")), canonical(body), value)
        except (InvalidSignature, ValueError, TypeError):
            raise EvidenceInvalid(f"{where}: the signature does not verify (the record was changed)") from None
        if rec.get("seq") != i:
            raise EvidenceInvalid(f"{where}: sequence number {rec.get('seq')!r}, expected {i}")
        if rec.get("message_id") != message_id:
            raise EvidenceInvalid(f"{where}: belongs to message {rec.get('message_id')!r}, not {message_id!r}")
        if rec.get("prev_hash") != prev:
            raise EvidenceInvalid(f"{where}: does not link to the record before it (prev_hash)")
        event = rec.get("event")
        if event not in _NEXT.get(last_event, frozenset()):
            raise EvidenceInvalid(f"{where}: event {event!r} cannot follow {last_event or 'the start'}")
        prev, last_event = record_hash(rec), str(event)
    return [dict(r) for r in records]
