"""EDS (electronic digital signature) verification: CMS/PKCS#7 SignedData from NCALayer.

Pure and synchronous: no database, no network, no event loop.  Callers that run on the
event loop should call :meth:`SignatureVerifier.verify` through ``asyncio.to_thread``
(RSA verification is cheap, but path building over many certificates is not free).

What :class:`BuiltinVerifier` checks, in this order (each failure raises one
:class:`EdsError` subclass, see the tree below):

1. the input decodes (DER, PEM, or the Base64 text NCALayer returns) to a CMS
   ``ContentInfo`` holding ``SignedData`` with exactly one signer
   (:class:`MalformedCms`);
2. the signature, digest and key algorithms are supported: RSA PKCS#1 v1.5, RSA-PSS,
   ECDSA (P-256, P-384, P-521) with SHA-1/SHA-2 digests.  GOST (KZ 34.310-2004 and
   GOST R 34.10-2015) is recognised and refused with :class:`UnsupportedAlgorithm` naming
   the algorithm, so that operators know to configure a GOST-capable verifier (e.g. one
   backed by NCANode);
3. the signed attributes: ``content-type`` equals the encapsulated content type,
   ``messageDigest`` equals the digest of the content (:class:`BadSignature`), the
   optional ``signing-time`` is read and may not lie in the future;
4. the signature over the DER of the signed attributes re-tagged as a SET (RFC 5652
   §5.4), or over the content itself when there are no signed attributes
   (:class:`BadSignature`);
5. the validity period of every certificate at the check time, which is ``at`` when
   given, else the signing-time attribute, else now (:class:`CertificateExpired`).
   The signing-time attribute is asserted by the signer, not by a time-stamp authority:
   callers that verify a fresh challenge should pass ``at=now``;
6. ``keyUsage`` of the signer (digitalSignature or nonRepudiation) and, when
   configured, the required EKU OIDs (:class:`KeyUsageNotAllowed`);
7. a path from the signer through the certificates in the CMS (plus configured
   ``intermediates``) to a configured trust anchor: issuer names, signatures,
   ``basicConstraints`` CA and path length, ``keyUsage`` keyCertSign of every issuer
   (:class:`UntrustedCertificate`);
8. with ``revocation="crl"``: the configured CRLs (:class:`Revoked`,
   :class:`RevocationUnavailable`);
9. the identity: ``SERIALNUMBER=IIN<12 digits>`` is required and its checksum must
   hold, unless ``test_ca_mode`` is on (the NCA test certificates carry the dummy IIN
   ``123456789011``); ``OU=BIN<12 digits>`` is optional (:class:`NoIdentity`).

The result is a :class:`SignerInfo`.  Policy decisions on top of it (may this person
sign for that company? is this an AUTH or a SIGN certificate?) are the small helpers
:func:`role_allows_entity_signing` and :func:`is_sign_certificate`.

Errors::

    EsamError
     +-- EdsError                 code "eds_error"; ``public`` is safe to show
          +-- MalformedCms        "malformed_cms"
          +-- UnsupportedAlgorithm "unsupported_algorithm" (names the algorithm and OID)
          +-- BadSignature        "bad_signature"
          +-- CertificateExpired  "certificate_expired" (also: not yet valid)
          +-- KeyUsageNotAllowed  "key_usage_not_allowed"
          +-- UntrustedCertificate "untrusted_certificate"
          +-- Revoked             "revoked"
          +-- RevocationUnavailable "revocation_unavailable" (no fresh CRL; temporary)
          +-- NoIdentity          "no_identity"
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from esam_mail.errors import ConfigError, EsamError
from esam_mail.services.accounts.identity import checksum_ok

__all__ = [
    "CLIENT_AUTH_OID",
    "EMAIL_PROTECTION_OID",
    "ENTITY_SIGNING_ROLE_OIDS",
    "GOST_ALGORITHMS",
    "ROLE_EMPLOYEE",
    "ROLE_FIRST_HEAD",
    "ROLE_INDIVIDUAL",
    "ROLE_LEGAL_ENTITY",
    "ROLE_SIGNING_RIGHT",
    "BadSignature",
    "BuiltinVerifier",
    "CertificateExpired",
    "EdsError",
    "KeyUsageNotAllowed",
    "MalformedCms",
    "NoIdentity",
    "RevocationUnavailable",
    "Revoked",
    "SignatureVerifier",
    "SignerInfo",
    "UnsupportedAlgorithm",
    "UntrustedCertificate",
    "decode_cms",
    "is_sign_certificate",
    "kz_checksum_ok",
    "role_allows_entity_signing",
    "role_allows_representative_signing",
]

# --------------------------------------------------------------------------- OIDs

CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2"
EMAIL_PROTECTION_OID = "1.3.6.1.5.5.7.3.4"

#: Role OIDs of Order No. 383/НҚ (domain.md §2).
ROLE_INDIVIDUAL = "1.2.398.3.3.4.1.1"
ROLE_LEGAL_ENTITY = "1.2.398.3.3.4.1.2"
ROLE_FIRST_HEAD = "1.2.398.3.3.4.1.2.1"
ROLE_SIGNING_RIGHT = "1.2.398.3.3.4.1.2.2"
ROLE_EMPLOYEE = "1.2.398.3.3.4.1.2.5"

#: Roles whose holder may sign on behalf of the legal entity (first head, signing right).
ENTITY_SIGNING_ROLE_OIDS: frozenset[str] = frozenset({ROLE_FIRST_HEAD, ROLE_SIGNING_RIGHT})

#: Roles of an employee's certificate that may sign as the entity's representative under a
#: power of attorney (employee, person with signing right).
REPRESENTATIVE_ROLE_OIDS: frozenset[str] = frozenset({ROLE_EMPLOYEE, ROLE_SIGNING_RIGHT})

#: GOST algorithm OIDs we recognise (and refuse) -> human name.
GOST_ALGORITHMS: dict[str, str] = {
    "1.2.398.3.10.1.1.1.2": "GOST 34.310-2004",
    "1.3.6.1.4.1.6801.1.5.8": "GOST 34.310-2004 (Kalkan)",
    "1.2.398.3.10.1.1.1.1": "GOST 34.310-2004 public key",
    "1.2.398.3.10.1.3.1": "GOST 34.311-95",
    "1.2.398.3.10.1.1.2.3.1": "GOST R 34.10-2015 256",
    "1.2.398.3.10.1.1.2.3.2": "GOST R 34.10-2015 512",
    "1.2.398.3.10.1.1.2.2": "GOST R 34.10-2015 public key",
    "1.2.398.3.10.1.1.2.2.1": "GOST R 34.10-2015 TC26-512-A parameters",
    "1.2.398.3.10.1.3.2": "GOST R 34.11-2015 (Streebog-256)",
    "1.2.398.3.10.1.3.3": "GOST R 34.11-2015 (Streebog-512)",
    "1.2.643.7.1.1.1.1": "GOST R 34.10-2012 256 public key",
    "1.2.643.7.1.1.1.2": "GOST R 34.10-2012 512 public key",
    "1.2.643.7.1.1.2.2": "GOST R 34.11-2012 (Streebog-256)",
    "1.2.643.7.1.1.2.3": "GOST R 34.11-2012 (Streebog-512)",
    "1.2.643.7.1.1.3.2": "GOST R 34.10-2012 256",
    "1.2.643.7.1.1.3.3": "GOST R 34.10-2012 512",
    "1.2.643.2.2.3": "GOST R 34.10-2001",
    "1.2.643.2.2.9": "GOST R 34.11-94",
    "1.2.643.2.2.19": "GOST R 34.10-2001 public key",
}

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: Signature algorithm OIDs that fix a hash; CMS also allows plain ``rsaEncryption``.
_RSA_PKCS1_WITH_HASH = {
    "sha1_rsa": "sha1",
    "sha224_rsa": "sha224",
    "sha256_rsa": "sha256",
    "sha384_rsa": "sha384",
    "sha512_rsa": "sha512",
}
_ECDSA_WITH_HASH = {
    "sha1_ecdsa": "sha1",
    "sha224_ecdsa": "sha224",
    "sha256_ecdsa": "sha256",
    "sha384_ecdsa": "sha384",
    "sha512_ecdsa": "sha512",
}
_EC_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)

_KEY_USAGE_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
# cryptography calls nonRepudiation "content_commitment"; we expose the X.509 name.
_KEY_USAGE_PUBLIC = {"content_commitment": "non_repudiation"}

#: RFC 4514 labels for attributes cryptography would print as dotted OIDs.
_NAME_LABELS = {
    NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.SURNAME: "SURNAME",
    NameOID.GIVEN_NAME: "GIVENNAME",
    NameOID.EMAIL_ADDRESS: "E",
}
_IIN_RE = re.compile(r"^IIN(\d{12})$", re.IGNORECASE)
_BIN_RE = re.compile(r"^BIN(\d{12})$", re.IGNORECASE)
_MAX_CHAIN = 8
_FUTURE_SKEW = timedelta(minutes=5)

# --------------------------------------------------------------------------- errors


class EdsError(EsamError):
    """The signature was not accepted.

    ``public`` is safe to show to the applicant (it never contains paths or config
    values); ``code`` is a stable machine code for the API and the audit log;
    ``detail`` is extra context for the server log only.
    """

    code: str = "eds_error"
    default_public: str = "the electronic signature could not be verified"

    def __init__(self, public: str | None = None, *, detail: str | None = None) -> None:
        self.public = public or self.default_public
        self.detail = detail
        super().__init__(self.public if detail is None else f"{self.public} [{detail}]")


class MalformedCms(EdsError):
    """Not a CMS SignedData we can read (garbage, wrong content type, missing parts)."""

    code = "malformed_cms"
    default_public = "the signature is not a valid CMS/PKCS#7 signed message"


class UnsupportedAlgorithm(EdsError):
    """The algorithm is recognised or not, but this verifier cannot check it."""

    code = "unsupported_algorithm"
    default_public = "unsupported signature algorithm"

    def __init__(
        self, public: str | None = None, *, oid: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(public, detail=detail)
        self.oid = oid


class BadSignature(EdsError):
    """The signature does not match the content or the signer's key."""

    code = "bad_signature"
    default_public = "the signature does not match the signed content"


class CertificateExpired(EdsError):
    """A certificate was expired or not yet valid at the check time."""

    code = "certificate_expired"
    default_public = "the certificate was not valid at the time of signing"


class KeyUsageNotAllowed(EdsError):
    """The signer certificate may not be used for this kind of signature."""

    code = "key_usage_not_allowed"
    default_public = "the certificate may not be used for this signature"


class UntrustedCertificate(EdsError):
    """No valid path from the signer certificate to a configured trust anchor."""

    code = "untrusted_certificate"
    default_public = "the certificate was not issued by a trusted certification authority"


class Revoked(EdsError):
    """A certificate in the path is listed in a CRL."""

    code = "revoked"
    default_public = "the certificate has been revoked"


class RevocationUnavailable(EdsError):
    """Revocation checking is on, but no fresh, correctly signed CRL covers a certificate."""

    code = "revocation_unavailable"
    default_public = "the revocation status of the certificate cannot be checked now"
    temporary = True


class NoIdentity(EdsError):
    """The certificate subject carries no (valid) IIN."""

    code = "no_identity"
    default_public = "the certificate does not identify a person by a valid IIN"


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, slots=True)
class SignerInfo:
    """What a verified signature tells about its signer.

    Subject strings are as in the certificate (NCA: Cyrillic, upper case).  NCA puts the
    *patronymic* into ``GIVENNAME``; it is returned as ``given_name`` unchanged.
    """

    iin: str
    bin: str | None
    common_name: str | None
    surname: str | None
    given_name: str | None
    organization: str | None
    #: EKU and certificatePolicies OIDs of the signer certificate (sorted, unique).
    role_oids: tuple[str, ...]
    #: X.509 keyUsage names: digital_signature, non_repudiation, key_encipherment, ...
    key_usage: frozenset[str]
    ext_key_usage: tuple[str, ...]
    fingerprint: str  # SHA-256 of the certificate DER, lower-case hex
    serial: str  # lower-case hex, even length
    issuer: str  # RFC 4514
    not_before: datetime
    not_after: datetime
    signing_time: datetime | None
    signature_algorithm: str  # e.g. "rsa_pkcs1v15_sha256", "rsa_pss_sha256", "ecdsa_sha384"
    content: bytes
    certificate: bytes = field(repr=False)  # signer certificate, DER
    subject: str = ""  # RFC 4514
    issuer_certificate: bytes = field(default=b"", repr=False)  # the signer's issuer, DER


class SignatureVerifier(Protocol):
    """Verifies a CMS signature and tells who signed."""

    def verify(
        self, cms: bytes | str, content: bytes | None = None, *, at: datetime | None = None
    ) -> SignerInfo:
        """Verify ``cms`` and return the signer.

        Args:
            cms: SignedData as DER, PEM, or Base64 text (what NCALayer returns).
            content: the signed bytes for a detached signature; ``None`` when the content
                is encapsulated in the CMS.
            at: check certificate validity at this instant instead of the signing time.

        Raises:
            EdsError: a subclass saying why the signature is not accepted.
        """
        ...


# --------------------------------------------------------------------------- helpers


def kz_checksum_ok(number: str) -> bool:
    """IIN/BIN check digit only (delegates to :func:`esam_mail.services.accounts.identity.checksum_ok`)."""
    return checksum_ok(number)


def role_allows_entity_signing(signer: SignerInfo) -> bool:
    """May this signer sign on behalf of their legal entity?

    True for legal-entity certificates (a BIN in the subject) carrying the role
    "first head" (1.2.398.3.3.4.1.2.1) or "person with signing right"
    (1.2.398.3.3.4.1.2.2).  Employees (…2.5), HR officers and individuals are refused.
    """
    return signer.bin is not None and bool(ENTITY_SIGNING_ROLE_OIDS & set(signer.role_oids))


def role_allows_representative_signing(signer: SignerInfo) -> bool:
    """May this signer sign for their legal entity as a representative under a power of attorney?

    True for legal-entity certificates (a BIN in the subject) of an employee (…4.1.2.5) or a
    person with signing right (…4.1.2.2).  The power of attorney itself is on paper; its number
    and date are part of the signed application.
    """
    return signer.bin is not None and bool(REPRESENTATIVE_ROLE_OIDS & set(signer.role_oids))


def is_sign_certificate(signer: SignerInfo) -> bool:
    """Is this a SIGN (e-document) certificate rather than an AUTH one?

    NCA SIGN certificates have keyUsage nonRepudiation and EKU emailProtection; AUTH
    certificates have keyEncipherment and clientAuth.
    """
    return "non_repudiation" in signer.key_usage or EMAIL_PROTECTION_OID in signer.ext_key_usage


def decode_cms(data: bytes | str) -> bytes:
    """Turn DER, PEM (any label) or Base64 text into DER bytes.

    Raises:
        MalformedCms: when the input is none of these.
    """
    if isinstance(data, bytes) and data[:1] == b"\x30":
        return data
    try:
        text = data.decode("ascii") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise MalformedCms(detail="neither DER nor ASCII text") from None
    text = text.strip()
    if text.startswith("-----BEGIN"):
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
        text = "".join(ln for ln in lines if ":" not in ln)  # drop RFC 1421 headers
    text = "".join(text.split())
    if not text:
        raise MalformedCms(detail="empty input")
    try:
        der = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        try:
            der = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise MalformedCms(detail="not DER, PEM or Base64") from None
    if der[:1] != b"\x30":
        raise MalformedCms(detail="decoded input is not a DER SEQUENCE")
    return der


def _algorithm_error(kind: str, oid: str, name: str | None = None) -> UnsupportedAlgorithm:
    gost = GOST_ALGORITHMS.get(oid)
    if gost is not None:
        return UnsupportedAlgorithm(
            f"unsupported {kind} algorithm {gost} ({oid}); configure a GOST-capable verifier",
            oid=oid,
        )
    label = f"{name} ({oid})" if name and name != oid else oid
    return UnsupportedAlgorithm(f"unsupported {kind} algorithm {label}", oid=oid)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _load_certificates(source: object) -> list[x509.Certificate]:
    """Certificates from a cert object, PEM/DER bytes, or a path to a PEM/DER file."""
    if isinstance(source, x509.Certificate):
        return [source]
    if isinstance(source, str | Path):
        data = Path(source).read_bytes()
    elif isinstance(source, bytes):
        data = source
    else:
        raise TypeError(f"not a certificate source: {type(source).__name__}")
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def _load_crl(source: object) -> x509.CertificateRevocationList:
    if isinstance(source, x509.CertificateRevocationList):
        return source
    if isinstance(source, str | Path):
        data = Path(source).read_bytes()
    elif isinstance(source, bytes):
        data = source
    else:
        raise TypeError(f"not a CRL source: {type(source).__name__}")
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _key_usage(cert: x509.Certificate) -> frozenset[str] | None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    names = set()
    for name in _KEY_USAGE_NAMES:
        if getattr(ku, name):
            names.add(_KEY_USAGE_PUBLIC.get(name, name))
    if ku.key_agreement:
        if ku.encipher_only:
            names.add("encipher_only")
        if ku.decipher_only:
            names.add("decipher_only")
    return frozenset(names)


def _eku(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(oid.dotted_string for oid in eku)


def _policies(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        pols = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(p.policy_identifier.dotted_string for p in pols)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _fmt(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------- verifier


@dataclass(frozen=True, slots=True)
class _ParsedSigner:
    signer_info: asn1_cms.SignerInfo
    certificates: list[x509.Certificate]
    signer_cert: x509.Certificate
    encap_type: str
    encap_content: bytes | None


class BuiltinVerifier:
    """RSA/ECDSA CMS verifier on asn1crypto + cryptography (see the module docstring).

    Args:
        trust_anchors: CA certificates to trust: paths to PEM or DER files (a PEM file may
            hold several), PEM/DER bytes, or ``cryptography`` certificates.  Pin the NCA
            root *and* the issuing NCA certificate, or list the issuing one in
            ``intermediates``: NCALayer usually puts only the signer certificate in the CMS.
        revocation: ``"off"`` or ``"crl"`` (CRLs from ``crl_paths``; an end-entity
            certificate without a fresh CRL from its issuer is refused; CA certificates
            are checked when a CRL from their issuer is configured).
        crl_paths: CRL files (PEM or DER), bytes or ``cryptography`` CRL objects.
        test_ca_mode: accept IINs/BINs that fail the checksum (NCA test certificates).
        require_eku: OIDs that must all be in the signer's EKU; an OID also matches the
            OIDs below it (``1.2.398.3.3.4.1.2`` matches ``1.2.398.3.3.4.1.2.5``).
        intermediates: extra untrusted CA certificates for path building.
        clock: returns "now" (aware UTC); tests inject a fixed clock.

    Raises:
        ConfigError: no trust anchors, or an anchor/CRL file that cannot be read.
    """

    def __init__(
        self,
        trust_anchors: Iterable[str | Path | bytes | x509.Certificate],
        *,
        revocation: Literal["off", "crl"] = "off",
        crl_paths: Iterable[str | Path | bytes | x509.CertificateRevocationList] = (),
        test_ca_mode: bool = False,
        require_eku: set[str] | frozenset[str] | None = None,
        intermediates: Iterable[str | Path | bytes | x509.Certificate] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        problems: list[str] = []
        self._anchors = self._load_certs(trust_anchors, "trust_anchors", problems)
        self._intermediates = self._load_certs(intermediates, "intermediates", problems)
        if not self._anchors and not problems:
            problems.append("trust_anchors: no trust anchor certificates configured")
        if revocation not in ("off", "crl"):
            problems.append(f"revocation: must be 'off' or 'crl', not {revocation!r}")
        self._crls: list[x509.CertificateRevocationList] = []
        self._load_crls(crl_paths, problems)
        if problems:
            raise ConfigError(problems)
        self.revocation = revocation
        self.test_ca_mode = test_ca_mode
        self.require_eku = frozenset(require_eku) if require_eku else frozenset()
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- configuration -------------------------------------------------------

    @staticmethod
    def _load_certs(
        sources: Iterable[object], key: str, problems: list[str]
    ) -> list[x509.Certificate]:
        out: list[x509.Certificate] = []
        for i, src in enumerate(sources):
            try:
                out.extend(_load_certificates(src))
            except (OSError, ValueError, TypeError) as exc:
                label = str(src) if isinstance(src, str | Path) else f"item {i}"
                problems.append(f"{key}: cannot load certificate {label} ({type(exc).__name__})")
        return out

    def _load_crls(self, sources: Iterable[object], problems: list[str]) -> None:
        for i, src in enumerate(sources):
            try:
                self._crls.append(_load_crl(src))
            except (OSError, ValueError, TypeError) as exc:
                label = str(src) if isinstance(src, str | Path) else f"item {i}"
                problems.append(f"crl_paths: cannot load CRL {label} ({type(exc).__name__})")

    def update_crls(
        self, crls: Iterable[str | Path | bytes | x509.CertificateRevocationList]
    ) -> None:
        """Replace the CRL set (e.g. after a periodic download).

        Raises:
            ConfigError: a CRL cannot be read; the old set stays in place.
        """
        old, self._crls = self._crls, []
        problems: list[str] = []
        self._load_crls(crls, problems)
        if problems:
            self._crls = old
            raise ConfigError(problems)

    # -- verification --------------------------------------------------------

    def verify(
        self, cms: bytes | str, content: bytes | None = None, *, at: datetime | None = None
    ) -> SignerInfo:
        """See :meth:`SignatureVerifier.verify`."""
        der = decode_cms(cms)
        parsed = self._parse(der)
        si = parsed.signer_info
        cert = parsed.signer_cert

        sig_name, verify_sig, digest_name = self._algorithms(si, cert)

        if content is None:
            if parsed.encap_content is None:
                raise MalformedCms(
                    "the signature is detached: the signed content must be supplied",
                    detail="no eContent and no content given",
                )
            signed_content = parsed.encap_content
        else:
            if parsed.encap_content is not None and parsed.encap_content != content:
                raise BadSignature(detail="encapsulated content differs from the given content")
            signed_content = content

        signing_time = self._check_signed_attrs(si, parsed.encap_type, signed_content, digest_name)
        if signing_time is not None and signing_time > self._clock() + _FUTURE_SKEW:
            raise BadSignature(
                "the signing time lies in the future", detail=f"signing-time {signing_time}"
            )

        signed_attrs = si["signed_attrs"]
        if len(signed_attrs):
            raw = signed_attrs.dump()
            to_verify = b"\x31" + raw[1:]  # [0] IMPLICIT -> SET OF (RFC 5652 §5.4)
        else:
            to_verify = signed_content
        try:
            verify_sig(si["signature"].native, to_verify)
        except InvalidSignature:
            raise BadSignature(
                "the signature does not match the signer's certificate",
                detail="signature check failed",
            ) from None

        check_time = _as_utc(at) if at is not None else (signing_time or self._clock())
        self._check_validity(cert, check_time, "signer certificate")
        ku = self._check_key_usage(cert)
        chain = self._build_chain(cert, parsed.certificates, check_time)
        if self.revocation == "crl":
            self._check_revocation(chain)

        info = self._signer_info(
            cert, ku, signing_time, sig_name, signed_content
        )
        if len(chain) > 1:  # kept for later revocation re-checks (OCSP needs the issuer)
            info = replace(info, issuer_certificate=chain[1].public_bytes(Encoding.DER))
        return info

    # -- steps ---------------------------------------------------------------

    def _parse(self, der: bytes) -> _ParsedSigner:
        try:
            info = asn1_cms.ContentInfo.load(der, strict=True)
            ctype = info["content_type"].native
            if ctype != "signed_data":
                raise MalformedCms(detail=f"content type {ctype}, not signed_data")
            sd = info["content"]
            signer_infos = sd["signer_infos"]
            if len(signer_infos) != 1:
                raise MalformedCms(
                    "the signature must have exactly one signer",
                    detail=f"{len(signer_infos)} signer infos",
                )
            si = signer_infos[0]
            encap = sd["encap_content_info"]
            encap_type = encap["content_type"].dotted
            econtent = encap["content"]
            encap_content: bytes | None = None
            if not isinstance(econtent, asn1_core.Void):
                encap_content = bytes(econtent)  # joins BER constructed chunks too
            asn1_certs: list[asn1_x509.Certificate] = []
            for choice in sd["certificates"] or []:
                if choice.name == "certificate":
                    asn1_certs.append(choice.chosen)
            signer_asn1 = self._find_signer(si, asn1_certs)
            # force the lazy parser over the parts we read later
            _ = si["signed_attrs"].native, si["signature"].native
            certificates = [x509.load_der_x509_certificate(c.dump()) for c in asn1_certs]
            signer_cert = x509.load_der_x509_certificate(signer_asn1.dump())
        except EdsError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as exc:
            raise MalformedCms(detail=f"{type(exc).__name__}: {exc}") from None
        return _ParsedSigner(si, certificates, signer_cert, encap_type, encap_content)

    @staticmethod
    def _find_signer(
        si: asn1_cms.SignerInfo, certs: Sequence[asn1_x509.Certificate]
    ) -> asn1_x509.Certificate:
        sid = si["sid"]
        for c in certs:
            if sid.name == "issuer_and_serial_number":
                ias = sid.chosen
                if (
                    c.serial_number == ias["serial_number"].native
                    and c.issuer == ias["issuer"]
                ):
                    return c
            elif (
                sid.name == "subject_key_identifier"
                and c.key_identifier is not None
                and c.key_identifier == sid.chosen.native
            ):
                return c
        raise MalformedCms(
            "the signer certificate is not included in the signature",
            detail=f"no certificate matches sid {sid.name}",
        )

    def _algorithms(
        self, si: asn1_cms.SignerInfo, cert: x509.Certificate
    ) -> tuple[str, Callable[[bytes, bytes], None], str]:
        """Return (name, verify(signature, data), digest name) or raise UnsupportedAlgorithm."""
        sig_alg = si["signature_algorithm"]
        sig_oid = sig_alg["algorithm"].dotted
        sig_native = sig_alg["algorithm"].native
        if sig_oid in GOST_ALGORITHMS:
            raise _algorithm_error("signature", sig_oid)
        dig_oid = si["digest_algorithm"]["algorithm"].dotted
        dig_name = si["digest_algorithm"]["algorithm"].native
        if dig_oid in GOST_ALGORITHMS or dig_name not in _HASHES:
            raise _algorithm_error("digest", dig_oid, dig_name)
        key_oid = cert.public_key_algorithm_oid.dotted_string
        if key_oid in GOST_ALGORITHMS:
            raise _algorithm_error("public key", key_oid)
        try:
            key = cert.public_key()
        except Exception as exc:  # cryptography raises several types here
            raise _algorithm_error("public key", key_oid) from exc
        digest = _HASHES[dig_name]()

        if sig_native in ("rsassa_pkcs1v15", "rsa") or sig_native in _RSA_PKCS1_WITH_HASH:
            fixed = _RSA_PKCS1_WITH_HASH.get(sig_native)
            if fixed is not None and fixed != dig_name:
                raise MalformedCms(detail=f"signature hash {fixed} != digest {dig_name}")
            if not isinstance(key, rsa.RSAPublicKey):
                raise BadSignature(detail="RSA signature but the certificate key is not RSA")
            rsa_key = key

            def verify_pkcs1(sig: bytes, data: bytes) -> None:
                rsa_key.verify(sig, data, padding.PKCS1v15(), digest)

            return f"rsa_pkcs1v15_{dig_name}", verify_pkcs1, dig_name

        if sig_native == "rsassa_pss":
            if not isinstance(key, rsa.RSAPublicKey):
                raise BadSignature(detail="RSA-PSS signature but the certificate key is not RSA")
            pss_key = key
            pss, pss_hash = self._pss_params(sig_alg)

            def verify_pss(sig: bytes, data: bytes) -> None:
                pss_key.verify(sig, data, pss, pss_hash)

            return f"rsa_pss_{pss_hash.name.replace('-', '')}", verify_pss, dig_name

        if sig_native in ("ecdsa", "ec") or sig_native in _ECDSA_WITH_HASH:
            fixed = _ECDSA_WITH_HASH.get(sig_native)
            if fixed is not None and fixed != dig_name:
                raise MalformedCms(detail=f"signature hash {fixed} != digest {dig_name}")
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise BadSignature(detail="ECDSA signature but the certificate key is not EC")
            if not isinstance(key.curve, _EC_CURVES):
                raise UnsupportedAlgorithm(
                    f"unsupported elliptic curve {key.curve.name}", detail=key.curve.name
                )
            ec_key = key
            ecdsa = ec.ECDSA(digest)

            def verify_ecdsa(sig: bytes, data: bytes) -> None:
                ec_key.verify(sig, data, ecdsa)

            return f"ecdsa_{dig_name}", verify_ecdsa, dig_name

        raise _algorithm_error("signature", sig_oid, str(sig_native))

    @staticmethod
    def _pss_params(sig_alg: asn1_cms.SignedDigestAlgorithm) -> tuple[padding.PSS, hashes.HashAlgorithm]:
        params = sig_alg["parameters"]
        if isinstance(params, asn1_core.Void) or params.native is None:
            raise MalformedCms(detail="RSA-PSS without parameters")
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            raise _algorithm_error("mask generation", mgf["algorithm"].dotted)
        mgf_hash_name = mgf["parameters"]["algorithm"].native
        if hash_name not in _HASHES or mgf_hash_name not in _HASHES:
            raise _algorithm_error("digest", params["hash_algorithm"]["algorithm"].dotted)
        salt = int(params["salt_length"].native)
        return (
            padding.PSS(mgf=padding.MGF1(_HASHES[mgf_hash_name]()), salt_length=salt),
            _HASHES[hash_name](),
        )

    @staticmethod
    def _check_signed_attrs(
        si: asn1_cms.SignerInfo, encap_type: str, content: bytes, digest_name: str
    ) -> datetime | None:
        """Check content-type and messageDigest; return the signing time (if any)."""
        attrs = si["signed_attrs"]
        if not len(attrs):
            return None
        found: dict[str, list[object]] = {}
        try:
            for attr in attrs:
                name = attr["type"].native
                if name in found:
                    raise MalformedCms(detail=f"duplicate signed attribute {name}")
                found[name] = list(attr["values"])
        except (ValueError, TypeError) as exc:
            raise MalformedCms(detail=f"signed attributes: {exc}") from None
        for required in ("content_type", "message_digest"):
            if len(found.get(required, ())) != 1:
                raise MalformedCms(detail=f"signed attribute {required} missing or repeated")
        ctype = found["content_type"][0]
        if getattr(ctype, "dotted", None) != encap_type:
            raise BadSignature(detail="content-type attribute differs from eContentType")
        expected = hashlib.new(digest_name, content).digest()
        md = found["message_digest"][0]
        if getattr(md, "native", None) != expected:
            raise BadSignature(detail="messageDigest does not match the content")
        times = found.get("signing_time")
        if not times:
            return None
        if len(times) != 1:
            raise MalformedCms(detail="signing-time has several values")
        try:
            value = times[0].native  # type: ignore[attr-defined]
        except (ValueError, TypeError) as exc:
            raise MalformedCms(detail=f"signing-time: {exc}") from None
        if not isinstance(value, datetime):
            raise MalformedCms(detail="signing-time is not a time")
        return _as_utc(value)

    @staticmethod
    def _check_validity(cert: x509.Certificate, when: datetime, what: str) -> None:
        if when < cert.not_valid_before_utc:
            raise CertificateExpired(
                f"the {what} was not yet valid at {_fmt(when)} "
                f"(valid from {_fmt(cert.not_valid_before_utc)})"
            )
        if when > cert.not_valid_after_utc:
            raise CertificateExpired(
                f"the {what} had expired at {_fmt(when)} "
                f"(valid until {_fmt(cert.not_valid_after_utc)})"
            )

    def _check_key_usage(self, cert: x509.Certificate) -> frozenset[str]:
        try:
            ku = _key_usage(cert)
        except ValueError as exc:
            raise MalformedCms(detail=f"signer keyUsage: {exc}") from None
        if ku is None or not ({"digital_signature", "non_repudiation"} & ku):
            raise KeyUsageNotAllowed(
                "the certificate is not allowed to make digital signatures",
                detail=f"keyUsage {sorted(ku or ())}",
            )
        if self.require_eku:
            have = _eku(cert)
            for need in self.require_eku:
                if not any(o == need or o.startswith(need + ".") for o in have):
                    raise KeyUsageNotAllowed(
                        f"the certificate lacks the required extended key usage {need}",
                        detail=f"EKU {list(have)}",
                    )
        return ku

    def _build_chain(
        self, leaf: x509.Certificate, cms_certs: Sequence[x509.Certificate], when: datetime
    ) -> list[x509.Certificate]:
        """Return [leaf, intermediates..., anchor]; raise UntrustedCertificate otherwise."""
        pool = [c for c in (*cms_certs, *self._intermediates) if c != leaf]
        chain = [leaf]
        current = leaf
        for depth in range(_MAX_CHAIN):
            # A trust anchor that issued the current certificate ends the path.
            for anchor in self._anchors:
                if anchor.subject == current.issuer and self._issued_by(current, anchor):
                    self._check_issuer(anchor, depth, None)
                    chain.append(anchor)
                    return chain
            candidates = [
                c for c in pool if c.subject == current.issuer and c not in chain
            ]
            nxt = None
            for cand in candidates:
                if self._issued_by(current, cand):
                    nxt = cand
                    break
            if nxt is None:
                if current.issuer == current.subject:
                    raise UntrustedCertificate(
                        detail=f"self-signed {current.subject.rfc4514_string()} is not a trust anchor"
                    )
                if candidates:
                    raise UntrustedCertificate(
                        detail=f"bad signature on {current.subject.rfc4514_string()}"
                    )
                raise UntrustedCertificate(
                    "the certificate chain is incomplete: issuer not found",
                    detail=f"issuer {current.issuer.rfc4514_string()} not found",
                )
            self._check_issuer(nxt, depth, when)
            chain.append(nxt)
            current = nxt
        raise UntrustedCertificate(detail="certificate chain too long")

    @staticmethod
    def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        sig_oid = cert.signature_algorithm_oid.dotted_string
        if sig_oid in GOST_ALGORITHMS:
            raise _algorithm_error("certificate signature", sig_oid)
        try:
            cert.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError):
            return False
        except Exception as exc:  # UnsupportedAlgorithm et al.
            raise _algorithm_error("certificate signature", sig_oid) from exc
        return True

    def _check_issuer(
        self, issuer: x509.Certificate, below: int, when: datetime | None
    ) -> None:
        """``below`` = number of intermediate CA certificates between issuer and leaf."""
        name = issuer.subject.rfc4514_string()
        try:
            bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        except ValueError as exc:
            raise UntrustedCertificate(detail=f"{name}: bad extensions ({exc})") from None
        if bc is None or not bc.ca:
            raise UntrustedCertificate(detail=f"issuer {name} is not a CA")
        if bc.path_length is not None and below > bc.path_length:
            raise UntrustedCertificate(detail=f"path length constraint of {name} exceeded")
        ku = _key_usage(issuer)
        if ku is not None and "key_cert_sign" not in ku:
            raise UntrustedCertificate(detail=f"issuer {name} may not sign certificates")
        if when is not None:
            self._check_validity(issuer, when, "issuing CA certificate")

    def _check_revocation(self, chain: Sequence[x509.Certificate]) -> None:
        now = self._clock()
        for i, cert in enumerate(chain[:-1]):
            issuer = chain[i + 1]
            fresh = False
            for crl in self._crls:
                if crl.issuer != issuer.subject:
                    continue
                try:
                    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                        continue
                except (TypeError, ValueError):
                    continue
                if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                    what = "signer certificate" if i == 0 else "issuing CA certificate"
                    raise Revoked(
                        f"the {what} has been revoked",
                        detail=f"serial {cert.serial_number:x}",
                    )
                nxt = crl.next_update_utc
                if crl.last_update_utc <= now + _FUTURE_SKEW and (nxt is None or nxt >= now):
                    fresh = True
            if i == 0 and not fresh:
                raise RevocationUnavailable(
                    detail=f"no fresh CRL from {issuer.subject.rfc4514_string()}"
                )

    def _signer_info(
        self,
        cert: x509.Certificate,
        key_usage: frozenset[str],
        signing_time: datetime | None,
        sig_name: str,
        content: bytes,
    ) -> SignerInfo:
        subject = cert.subject
        iin = None
        for value in _attr(subject, NameOID.SERIAL_NUMBER):
            m = _IIN_RE.match(value.strip())
            if m:
                iin = m.group(1)
                break
        if iin is None:
            raise NoIdentity(detail="no SERIALNUMBER=IIN... in the subject")
        if not self.test_ca_mode and not kz_checksum_ok(iin):
            raise NoIdentity(detail="IIN checksum fails (test certificate?)")
        bin_ = None
        for value in _attr(subject, NameOID.ORGANIZATIONAL_UNIT_NAME):
            m = _BIN_RE.match(value.strip())
            if m:
                bin_ = m.group(1)
                break
        if bin_ is not None and not self.test_ca_mode and not kz_checksum_ok(bin_):
            raise NoIdentity(
                "the certificate does not identify the organisation by a valid BIN",
                detail="BIN checksum fails",
            )
        try:
            eku = _eku(cert)
            policies = _policies(cert)
        except ValueError as exc:
            raise MalformedCms(detail=f"signer extensions: {exc}") from None
        serial = f"{cert.serial_number:x}"
        return SignerInfo(
            iin=iin,
            bin=bin_,
            common_name=_first(_attr(subject, NameOID.COMMON_NAME)),
            surname=_first(_attr(subject, NameOID.SURNAME)),
            given_name=_first(_attr(subject, NameOID.GIVEN_NAME)),
            organization=_first(_attr(subject, NameOID.ORGANIZATION_NAME)),
            role_oids=tuple(sorted(set(eku) | set(policies))),
            key_usage=key_usage,
            ext_key_usage=eku,
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
            serial=serial if len(serial) % 2 == 0 else "0" + serial,
            issuer=cert.issuer.rfc4514_string(_NAME_LABELS),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            signing_time=signing_time,
            signature_algorithm=sig_name,
            content=content,
            certificate=cert.public_bytes(Encoding.DER),
            subject=subject.rfc4514_string(_NAME_LABELS),
        )

