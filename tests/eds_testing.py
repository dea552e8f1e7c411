"""TEST ONLY: CMS SignedData as NCALayer returns it, CRLs and a cached demo PKI.

The certificate builders (roots, intermediates, NCA-like end-entity certificates, keys)
are the runtime module :mod:`esam_mail.services.accounts.test_pki` (also behind
``esam eds test-pki``); this helper adds what only tests need.  Keys are cached in process
memory.

Typical use::

    from esam_mail.services.accounts import eds
    from tests import eds_testing as t

    pki = t.default_pki()                      # cached: root -> intermediate -> people
    cms = t.sign_cms(b"nonce", pki.individual.cert, pki.individual.key, [pki.intermediate.cert])
    signer = eds.BuiltinVerifier([pki.root.cert]).verify(cms, b"nonce")
    assert signer.iin == t.DEFAULT_IIN
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import algos as asn1_algos
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization  # noqa: F401  (t.hashes in tests)
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from esam_mail.services.accounts.test_pki import (  # noqa: F401  (re-exported: tests use t.<builder>)
    _HASHES,
    AUTH_KEY_USAGE,
    CA_KEY_USAGE,
    CLIENT_AUTH,
    DEFAULT_BIN,
    DEFAULT_IIN,
    EMAIL_PROTECTION,
    POLICY_INDIVIDUAL_AUTH,
    POLICY_INDIVIDUAL_SIGN,
    POLICY_LEGAL_AUTH,
    POLICY_LEGAL_SIGN,
    SIGN_KEY_USAGE,
    TEST_BIN,
    TEST_IIN,
    Issued,
    PrivateKey,
    _now,
    _sign_hash,
    cached_key,
    generate_key,
    individual_cert,
    intermediate_ca,
    legal_entity_cert,
    nca_subject,
    root_ca,
    to_pem,
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



