"""TEST ONLY: a throw-away PKI with NCA-style certificates and real CMS signatures.

Never use this in production code paths: keys are generated without protection and
cached in process memory.  It exists so that unit tests (ours and other engineers')
can build roots, intermediates, NCA-like end-entity certificates, CMS SignedData as
NCALayer returns it, and CRLs, without network access or fixture files.

Typical use::

    from esam_mail.services import eds, eds_testing as t

    pki = t.default_pki()                      # cached: root -> intermediate -> people
    cms = t.sign_cms(b"nonce", pki.individual.cert, pki.individual.key, [pki.intermediate.cert])
    signer = eds.BuiltinVerifier([pki.root.cert]).verify(cms, b"nonce")
    assert signer.iin == t.DEFAULT_IIN

Key kinds: ``"rsa"`` (2048 bit), ``"rsa3072"``, ``"ec-p256"``, ``"ec-p384"``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "AUTH_KEY_USAGE",
    "CA_KEY_USAGE",
    "CLIENT_AUTH",
    "DEFAULT_BIN",
    "DEFAULT_IIN",
    "EMAIL_PROTECTION",
    "POLICY_INDIVIDUAL_AUTH",
    "POLICY_INDIVIDUAL_SIGN",
    "POLICY_LEGAL_AUTH",
    "POLICY_LEGAL_SIGN",
    "SIGN_KEY_USAGE",
    "TEST_BIN",
    "TEST_IIN",
    "DemoPki",
    "Issued",
    "PrivateKey",
    "cached_key",
    "crl",
    "default_pki",
    "generate_key",
    "individual_cert",
    "intermediate_ca",
    "legal_entity_cert",
    "nca_subject",
    "root_ca",
    "sign_cms",
    "to_pem",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyKind = Literal["rsa", "rsa3072", "ec-p256", "ec-p384"]

#: Valid checksums (domain.md §1).
DEFAULT_IIN = "900101300811"
DEFAULT_BIN = "940140000385"
#: The dummy numbers of the NCA test certificates: both FAIL the checksum.
TEST_IIN = "123456789011"
TEST_BIN = "123456789021"

CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
POLICY_INDIVIDUAL_SIGN = "1.2.398.3.3.2.3"
POLICY_INDIVIDUAL_AUTH = "1.2.398.3.3.2.4"
POLICY_LEGAL_SIGN = "1.2.398.3.3.2.1"
POLICY_LEGAL_AUTH = "1.2.398.3.3.2.2"

AUTH_KEY_USAGE = frozenset({"digital_signature", "key_encipherment"})
SIGN_KEY_USAGE = frozenset({"digital_signature", "non_repudiation"})
CA_KEY_USAGE = frozenset({"key_cert_sign", "crl_sign"})

_KU_FIELDS = {
    "digital_signature": "digital_signature",
    "non_repudiation": "content_commitment",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "key_cert_sign": "key_cert_sign",
    "crl_sign": "crl_sign",
}
_HASHES: dict[str, type[hashes.SHA1 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# A fixed "now" is NOT used: certificates are valid around the real clock by default,
# so that verification without ``at`` works.  Pass explicit times for time-travel tests.


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> bytes:
        """The certificate as PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)


def generate_key(kind: KeyKind = "rsa") -> PrivateKey:
    """A fresh private key (slow for RSA: prefer :func:`cached_key` in tests)."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "rsa3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key kind {kind!r}")


@functools.cache
def cached_key(kind: KeyKind = "rsa", slot: int = 0) -> PrivateKey:
    """The same key for the same (kind, slot) during the whole test session."""
    return generate_key(kind)


def to_pem(obj: Issued | x509.Certificate | x509.CertificateRevocationList) -> bytes:
    """PEM encoding of a certificate (or an :class:`Issued`'s certificate) or a CRL."""
    if isinstance(obj, Issued):
        obj = obj.cert
    return obj.public_bytes(serialization.Encoding.PEM)


def nca_subject(
    *,
    surname: str = "ТЕСТОВ",
    first_name: str = "ТЕСТ",
    patronymic: str | None = "ТЕСТОВИЧ",
    iin: str | None = DEFAULT_IIN,
    organization: str | None = None,
    bin: str | None = None,
    email: str | None = None,
    locality: str | None = "АСТАНА",
) -> x509.Name:
    """An NCA-style subject: CN "SURNAME FIRSTNAME", SURNAME, SERIALNUMBER=IIN…, C=KZ,
    G=patronymic (NCA puts the patronymic into GIVENNAME), and for legal entities
    O=organisation and OU=BIN….  ``iin=None`` leaves SERIALNUMBER out.
    """
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, f"{surname} {first_name}"),
        x509.NameAttribute(NameOID.SURNAME, surname),
    ]
    if iin is not None:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, f"IIN{iin}"))
    attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ"))
    if locality:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, locality))
        attrs.append(x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, locality))
    if organization is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if bin is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"BIN{bin}"))
    if patronymic:
        attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, patronymic))
    if email:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attrs)


def _key_usage_ext(names: Iterable[str]) -> x509.KeyUsage:
    fields = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    for name in names:
        fields[_KU_FIELDS[name]] = True
    return x509.KeyUsage(**fields)


def _sign_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _build(
    subject: x509.Name,
    key: PrivateKey,
    issuer: Issued | None,
    *,
    ca: bool,
    path_length: int | None = None,
    not_before: datetime | None,
    not_after: datetime | None,
    key_usage: Iterable[str] | None,
    ext_key_usage: Sequence[str] = (),
    policies: Sequence[str] = (),
    serial: int | None = None,
    basic_constraints: bool = True,
) -> Issued:
    now = _now()
    nb = not_before or (now - timedelta(days=1))
    na = not_after or (now + timedelta(days=365 * (10 if ca else 1)))
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(public)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(nb)
        .not_valid_after(na)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if key_usage is not None:
        builder = builder.add_extension(_key_usage_ext(key_usage), critical=True)
    if ext_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in ext_key_usage]),
            critical=False,
        )
    if policies:
        builder = builder.add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(o), None) for o in policies]
            ),
            critical=False,
        )
    signing_key = issuer.key if issuer else key
    return Issued(builder.sign(signing_key, _sign_hash(signing_key)), key)


def root_ca(
    name: str = "ESAM TEST ROOT CA",
    *,
    key: PrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A self-signed root CA (CN=name, C=KZ), valid 10 years around now by default."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ"),
        ]
    )
    return _build(
        subject,
        key or cached_key("rsa", 900),
        None,
        ca=True,
        not_before=not_before,
        not_after=not_after,
        key_usage=CA_KEY_USAGE,
    )


def intermediate_ca(
    issuer: Issued,
    name: str = "ҰЛТТЫҚ КУӘЛАНДЫРУШЫ ОРТАЛЫҚ (TEST)",
    *,
    key: PrivateKey | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    path_length: int | None = 0,
    ca: bool = True,
    key_usage: Iterable[str] | None = CA_KEY_USAGE,
) -> Issued:
    """An issuing CA signed by ``issuer`` (``ca=False`` makes a broken "CA" for tests)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ"),
        ]
    )
    return _build(
        subject,
        key or cached_key("rsa", 901),
        issuer,
        ca=ca,
        path_length=path_length,
        not_before=not_before,
        not_after=not_after,
        key_usage=key_usage,
    )


def individual_cert(
    issuer: Issued,
    *,
    key: PrivateKey | None = None,
    iin: str | None = DEFAULT_IIN,
    surname: str = "ТЕСТОВ",
    first_name: str = "ТЕСТ",
    patronymic: str | None = "ТЕСТОВИЧ",
    email: str | None = None,
    sign: bool = False,
    key_usage: Iterable[str] | None = None,
    ext_key_usage: Sequence[str] | None = None,
    policies: Sequence[str] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
    subject: x509.Name | None = None,
) -> Issued:
    """An NCA-style individual certificate.

    ``sign=False`` makes an AUTH certificate (digitalSignature+keyEncipherment, EKU
    clientAuth + 1.2.398.3.3.4.1.1, policy 1.2.398.3.3.2.4); ``sign=True`` a SIGN one
    (digitalSignature+nonRepudiation, EKU emailProtection + 1.2.398.3.3.4.1.1, policy
    1.2.398.3.3.2.3).  Any of key_usage / ext_key_usage / policies / subject overrides.
    """
    return _build(
        subject
        or nca_subject(
            surname=surname, first_name=first_name, patronymic=patronymic, iin=iin, email=email
        ),
        key or cached_key("rsa", 0),
        issuer,
        ca=False,
        not_before=not_before,
        not_after=not_after,
        key_usage=(SIGN_KEY_USAGE if sign else AUTH_KEY_USAGE) if key_usage is None else key_usage,
        ext_key_usage=(
            ((EMAIL_PROTECTION if sign else CLIENT_AUTH), "1.2.398.3.3.4.1.1")
            if ext_key_usage is None
            else ext_key_usage
        ),
        policies=(
            ((POLICY_INDIVIDUAL_SIGN if sign else POLICY_INDIVIDUAL_AUTH),)
            if policies is None
            else policies
        ),
        serial=serial,
    )


def legal_entity_cert(
    issuer: Issued,
    *,
    key: PrivateKey | None = None,
    iin: str | None = DEFAULT_IIN,
    bin: str = DEFAULT_BIN,
    organization: str = 'ТОО "ТЕСТ"',
    roles: Sequence[str] = ("1.2.398.3.3.4.1.2.5",),
    surname: str = "ТЕСТОВ",
    first_name: str = "ТЕСТ",
    patronymic: str | None = "ТЕСТОВИЧ",
    sign: bool = False,
    key_usage: Iterable[str] | None = None,
    ext_key_usage: Sequence[str] | None = None,
    policies: Sequence[str] | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
) -> Issued:
    """An NCA-style legal-entity certificate: the individual subject plus O and OU=BIN….

    ``roles`` go into the EKU next to clientAuth/emailProtection (default: employee
    1.2.398.3.3.4.1.2.5; first head is …2.1, signing right …2.2).
    """
    return _build(
        nca_subject(
            surname=surname,
            first_name=first_name,
            patronymic=patronymic,
            iin=iin,
            organization=organization,
            bin=bin,
        ),
        key or cached_key("rsa", 1),
        issuer,
        ca=False,
        not_before=not_before,
        not_after=not_after,
        key_usage=(SIGN_KEY_USAGE if sign else AUTH_KEY_USAGE) if key_usage is None else key_usage,
        ext_key_usage=(
            ((EMAIL_PROTECTION if sign else CLIENT_AUTH), *roles)
            if ext_key_usage is None
            else ext_key_usage
        ),
        policies=(
            ((POLICY_LEGAL_SIGN if sign else POLICY_LEGAL_AUTH),) if policies is None else policies
        ),
        serial=serial,
    )


def _signing_time_value(when: datetime) -> asn1_cms.Time:
    when = when.astimezone(UTC)
    if 1950 <= when.year < 2050:
        return asn1_cms.Time({"utc_time": when})
    return asn1_cms.Time({"generalized_time": when})


_DEFAULT = object()


def sign_cms(
    content: bytes,
    cert: x509.Certificate,
    key: PrivateKey,
    chain: Sequence[x509.Certificate] = (),
    *,
    detached: bool = True,
    pss: bool = False,
    digest: str = "sha256",
    signing_time: datetime | object | None = _DEFAULT,
    signed_attributes: bool = True,
    include_signer_cert: bool = True,
    use_subject_key_id: bool = False,
    message_digest: bytes | None = None,
    signature_algorithm_oid: str | None = None,
    digest_algorithm_oid: str | None = None,
    extra_signers: int = 0,
) -> bytes:
    """A real CMS ``ContentInfo``/``SignedData`` (DER), shaped like NCALayer's CAdES-BES.

    Args:
        content: the signed bytes (e.g. the server's challenge).
        cert, key: the signer; ``key`` need not belong to ``cert`` (for negative tests).
        chain: further certificates to include (intermediates, or anything).
        detached: leave eContent out (NCALayer ``encapsulate: false``).
        pss: RSA-PSS (MGF1 with the same hash, salt = hash length) instead of PKCS#1 v1.5.
        digest: sha1, sha256, sha384 or sha512.
        signing_time: the signing-time attribute; default now, ``None`` leaves it out.
        signed_attributes: ``False`` signs the content directly (no signed attributes).
        include_signer_cert: ``False`` leaves the signer certificate out.
        use_subject_key_id: identify the signer by SKI instead of issuer+serial.
        message_digest: override the messageDigest attribute (tamper tests).
        signature_algorithm_oid, digest_algorithm_oid: write these OIDs instead of the
            real ones (e.g. GOST OIDs); the signature bytes are still RSA/ECDSA.
        extra_signers: duplicate the signer info this many times (multi-signer CMS).
    """
    if signing_time is _DEFAULT:
        signing_time = _now()
    hash_algo = _HASHES[digest]()
    digest_value = hashlib.new(digest, content).digest()
    cert_asn1 = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))

    if isinstance(key, rsa.RSAPrivateKey):
        if pss:
            sig_alg = asn1_algos.SignedDigestAlgorithm(
                {
                    "algorithm": "rsassa_pss",
                    "parameters": asn1_algos.RSASSAPSSParams(
                        {
                            "hash_algorithm": {"algorithm": digest},
                            "mask_gen_algorithm": {
                                "algorithm": "mgf1",
                                "parameters": {"algorithm": digest},
                            },
                            "salt_length": hash_algo.digest_size,
                        }
                    ),
                }
            )
            pad: padding.AsymmetricPadding = padding.PSS(
                mgf=padding.MGF1(hash_algo), salt_length=hash_algo.digest_size
            )
        else:
            sig_alg = asn1_algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"})
            pad = padding.PKCS1v15()

        def do_sign(data: bytes) -> bytes:
            assert isinstance(key, rsa.RSAPrivateKey)
            return key.sign(data, pad, hash_algo)

    else:
        sig_alg = asn1_algos.SignedDigestAlgorithm({"algorithm": f"{digest}_ecdsa"})

        def do_sign(data: bytes) -> bytes:
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return key.sign(data, ec.ECDSA(hash_algo))

    if signature_algorithm_oid is not None:
        sig_alg = asn1_algos.SignedDigestAlgorithm({"algorithm": signature_algorithm_oid})
    digest_alg = asn1_algos.DigestAlgorithm({"algorithm": digest_algorithm_oid or digest})

    if use_subject_key_id:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        sid = asn1_cms.SignerIdentifier({"subject_key_identifier": ski})
        version = "v3"
    else:
        sid = asn1_cms.SignerIdentifier(
            {
                "issuer_and_serial_number": {
                    "issuer": cert_asn1.issuer,
                    "serial_number": cert_asn1.serial_number,
                }
            }
        )
        version = "v1"

    signer: dict[str, object] = {
        "version": version,
        "sid": sid,
        "digest_algorithm": digest_alg,
        "signature_algorithm": sig_alg,
        "signature": b"",
    }
    if signed_attributes:
        attrs: list[dict[str, object]] = [
            {"type": "content_type", "values": ["data"]},
        ]
        if signing_time is not None:
            assert isinstance(signing_time, datetime)
            attrs.append(
                {"type": "signing_time", "values": [_signing_time_value(signing_time)]}
            )
        attrs.append(
            {"type": "message_digest", "values": [message_digest or digest_value]}
        )
        signer["signed_attrs"] = asn1_cms.CMSAttributes(attrs)
    signer_info = asn1_cms.SignerInfo(signer)
    if signed_attributes:
        raw = signer_info["signed_attrs"].dump()
        to_sign = b"\x31" + raw[1:]
    else:
        to_sign = content
    signer_info["signature"] = do_sign(to_sign)

    certs = [cert_asn1] if include_signer_cert else []
    certs += [
        asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER)) for c in chain
    ]
    signed_data = asn1_cms.SignedData(
        {
            "version": "v3" if use_subject_key_id else "v1",
            "digest_algorithms": [digest_alg],
            "encap_content_info": {
                "content_type": "data",
                "content": None if detached else content,
            },
            "certificates": [asn1_cms.CertificateChoices({"certificate": c}) for c in certs],
            "signer_infos": [signer_info] * (1 + extra_signers),
        }
    )
    info = asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
    return info.dump()


def crl(
    issuer: Issued,
    revoked: Iterable[x509.Certificate | int] = (),
    *,
    revocation_date: datetime | None = None,
    last_update: datetime | None = None,
    next_update: datetime | None = None,
    signing_key: PrivateKey | None = None,
) -> x509.CertificateRevocationList:
    """A CRL from ``issuer`` revoking the given certificates (or serial numbers).

    Defaults: issued an hour ago, next update in 7 days.  ``signing_key`` signs with another
    key (a forged CRL).
    """
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(last_update or now - timedelta(hours=1))
        .next_update(next_update or now + timedelta(days=7))
    )
    for item in revoked:
        serial = item.serial_number if isinstance(item, x509.Certificate) else int(item)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revocation_date or now - timedelta(hours=2))
            .build()
        )
    key = signing_key or issuer.key
    return builder.sign(key, _sign_hash(key))


@dataclass(frozen=True, slots=True)
class DemoPki:
    """root -> intermediate -> {individual (AUTH), individual_sign, legal_entity, head}."""

    root: Issued
    intermediate: Issued
    individual: Issued
    individual_sign: Issued
    legal_entity: Issued
    head: Issued


@functools.cache
def default_pki() -> DemoPki:
    """A ready-made RSA PKI (cached for the process), valid around the real clock."""
    root = root_ca()
    inter = intermediate_ca(root)
    return DemoPki(
        root=root,
        intermediate=inter,
        individual=individual_cert(inter, key=cached_key("rsa", 0)),
        individual_sign=individual_cert(inter, key=cached_key("rsa", 2), sign=True),
        legal_entity=legal_entity_cert(inter, key=cached_key("rsa", 1)),
        head=legal_entity_cert(
            inter, key=cached_key("rsa", 3), roles=("1.2.398.3.3.4.1.2.1",), sign=True
        ),
    )



