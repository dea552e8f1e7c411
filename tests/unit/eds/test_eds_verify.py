"""BuiltinVerifier: signatures, content, algorithms, input forms, identity."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from esam_mail.errors import EsamError
from esam_mail.services.accounts import eds
from tests import eds_testing as t

NONCE = b"esam-challenge:7f3a9c0e4b1d2a6f8e5c3b1a09d7e6f5"


def _sign(who: t.Issued, pki: t.DemoPki, content: bytes = NONCE, **kw: object) -> bytes:
    return t.sign_cms(content, who.cert, who.key, [pki.intermediate.cert], **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- valid signatures


def test_detached_rsa_individual_fields(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    signer = verifier.verify(_sign(pki.individual, pki, signing_time=when), NONCE)
    cert = pki.individual.cert
    assert signer.iin == t.DEFAULT_IIN
    assert signer.bin is None
    assert signer.common_name == "ТЕСТОВ ТЕСТ"
    assert signer.surname == "ТЕСТОВ"
    assert signer.given_name == "ТЕСТОВИЧ"
    assert signer.organization is None
    assert signer.content == NONCE
    assert signer.signing_time == when
    assert signer.signature_algorithm == "rsa_pkcs1v15_sha256"
    assert signer.key_usage == {"digital_signature", "key_encipherment"}
    assert signer.ext_key_usage == (t.CLIENT_AUTH, eds.ROLE_INDIVIDUAL)
    assert set(signer.role_oids) == {t.CLIENT_AUTH, eds.ROLE_INDIVIDUAL, t.POLICY_INDIVIDUAL_AUTH}
    der = cert.public_bytes(serialization.Encoding.DER)
    assert signer.certificate == der
    assert signer.fingerprint == hashlib.sha256(der).hexdigest()
    assert int(signer.serial, 16) == cert.serial_number and len(signer.serial) % 2 == 0
    assert "ҰЛТТЫҚ" in signer.issuer and "C=KZ" in signer.issuer
    assert "SERIALNUMBER=IIN900101300811" in signer.subject
    assert signer.not_before == cert.not_valid_before_utc
    assert signer.not_after == cert.not_valid_after_utc
    assert not eds.is_sign_certificate(signer)
    assert not eds.role_allows_entity_signing(signer)


def test_attached_rsa(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    signer = verifier.verify(_sign(pki.individual, pki, detached=False))
    assert signer.content == NONCE and signer.iin == t.DEFAULT_IIN


def test_attached_with_same_content_given(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    assert verifier.verify(_sign(pki.individual, pki, detached=False), NONCE).content == NONCE


@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_rsa_pss(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier, detached: bool, digest: str
) -> None:
    cms = _sign(pki.individual, pki, detached=detached, pss=True, digest=digest)
    signer = verifier.verify(cms, NONCE if detached else None)
    assert signer.signature_algorithm == f"rsa_pss_{digest}"


@pytest.mark.parametrize(("kind", "digest"), [("ec-p256", "sha256"), ("ec-p384", "sha384")])
@pytest.mark.parametrize("detached", [True, False])
def test_ecdsa(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier, kind: str, digest: str, detached: bool
) -> None:
    who = t.individual_cert(pki.intermediate, key=t.cached_key(kind, 0))  # type: ignore[arg-type,unused-ignore]
    cms = _sign(who, pki, detached=detached, digest=digest)
    signer = verifier.verify(cms, NONCE if detached else None)
    assert signer.signature_algorithm == f"ecdsa_{digest}"
    assert signer.iin == t.DEFAULT_IIN


def test_all_ec_chain() -> None:
    root = t.root_ca("EC ROOT", key=t.cached_key("ec-p384", 900))
    inter = t.intermediate_ca(root, "EC NCA", key=t.cached_key("ec-p256", 901))
    who = t.individual_cert(inter, key=t.cached_key("ec-p256", 0))
    cms = t.sign_cms(NONCE, who.cert, who.key, [inter.cert])
    assert eds.BuiltinVerifier([root.cert]).verify(cms, NONCE).iin == t.DEFAULT_IIN


def test_cms_made_by_cryptography_pkcs7_builder(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    """Interop: a SignedData we did not build ourselves (S/MIME-style signed attributes)."""
    who = pki.individual_sign
    cms = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(NONCE)
        .add_signer(who.cert, who.key, hashes.SHA256())
        .add_certificate(pki.intermediate.cert)
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature])
    )
    signer = verifier.verify(cms, NONCE)
    assert signer.iin == t.DEFAULT_IIN
    assert eds.is_sign_certificate(signer)


def test_no_signed_attributes(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    signer = verifier.verify(_sign(pki.individual, pki, signed_attributes=False), NONCE)
    assert signer.signing_time is None


def test_signer_identified_by_subject_key_id(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    signer = verifier.verify(_sign(pki.individual, pki, use_subject_key_id=True), NONCE)
    assert signer.iin == t.DEFAULT_IIN


def test_without_signing_time(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    assert verifier.verify(_sign(pki.individual, pki, signing_time=None), NONCE).signing_time is None


# --------------------------------------------------------------------------- input forms


def test_input_forms(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    der = _sign(pki.individual, pki)
    b64 = base64.b64encode(der).decode()
    wrapped = "\r\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    pem = f"-----BEGIN CMS-----\n{wrapped}\n-----END CMS-----\n"
    pkcs7_pem = pem.replace("CMS", "PKCS7")
    for form in (der, b64, b64.encode(), f"  {wrapped}\n", pem, pem.encode(), pkcs7_pem):
        assert verifier.verify(form, NONCE).iin == t.DEFAULT_IIN
    assert eds.decode_cms(b64.rstrip("=")) == der


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"   ",
        b"hello world",
        "не base64 вовсе",
        b"\x30\x03\x02\x01\x01",
        b"\x30\x82\xff\xff" + b"\x00" * 20,
        b"\xff\xfe\x00garbage",
        base64.b64encode(b"\x30\x00"),
        base64.b64encode(b"garbage that is not DER"),
        "-----BEGIN CMS-----\n!!!!\n-----END CMS-----",
    ],
)
def test_garbage_is_malformed(verifier: eds.BuiltinVerifier, garbage: bytes | str) -> None:
    with pytest.raises(eds.MalformedCms) as info:
        verifier.verify(garbage, NONCE)
    assert info.value.code == "malformed_cms"


def test_certificate_instead_of_cms(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    with pytest.raises(eds.MalformedCms):
        verifier.verify(pki.individual.cert.public_bytes(serialization.Encoding.DER), NONCE)


def test_truncated_cms(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    der = _sign(pki.individual, pki)
    with pytest.raises(eds.MalformedCms):
        verifier.verify(der[: len(der) // 2], NONCE)


def test_detached_without_content(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    with pytest.raises(eds.MalformedCms, match="detached"):
        verifier.verify(_sign(pki.individual, pki))


def test_signer_certificate_missing(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    with pytest.raises(eds.MalformedCms, match="signer certificate"):
        verifier.verify(_sign(pki.individual, pki, include_signer_cert=False), NONCE)


def test_two_signers_refused(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    with pytest.raises(eds.MalformedCms, match="exactly one signer"):
        verifier.verify(_sign(pki.individual, pki, extra_signers=1), NONCE)


# --------------------------------------------------------------------------- bad signatures


def test_tampered_detached_content(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    with pytest.raises(eds.BadSignature) as info:
        verifier.verify(_sign(pki.individual, pki), NONCE + b"x")
    assert info.value.code == "bad_signature"


def test_tampered_attached_content(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    der = _sign(pki.individual, pki, detached=False)
    assert der.count(NONCE) == 1
    forged = der.replace(NONCE, NONCE.upper())
    with pytest.raises(eds.BadSignature):
        verifier.verify(forged)


def test_attached_content_differs_from_given(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    with pytest.raises(eds.BadSignature):
        verifier.verify(_sign(pki.individual, pki, detached=False), b"other challenge")


def test_forged_message_digest(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    cms = _sign(pki.individual, pki, message_digest=hashlib.sha256(b"other").digest())
    with pytest.raises(eds.BadSignature):
        verifier.verify(cms, NONCE)


def test_tampered_signature_value(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    der = bytearray(_sign(pki.individual, pki, signed_attributes=False))
    der[-5] ^= 0x01  # the signature is the last element of the DER
    with pytest.raises(eds.BadSignature):
        verifier.verify(bytes(der), NONCE)


def test_signed_by_a_key_of_another_certificate(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    """The CMS names (and carries) the individual's cert but was signed with another key."""
    cms = t.sign_cms(
        NONCE, pki.individual.cert, pki.legal_entity.key, [pki.intermediate.cert]
    )
    with pytest.raises(eds.BadSignature):
        verifier.verify(cms, NONCE)


def test_ecdsa_signature_with_rsa_certificate(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    cms = t.sign_cms(NONCE, pki.individual.cert, t.cached_key("ec-p256", 0), [pki.intermediate.cert])
    with pytest.raises(eds.BadSignature):
        verifier.verify(cms, NONCE)


def test_signing_time_in_the_future(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    future = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(eds.BadSignature, match="future"):
        verifier.verify(_sign(pki.individual, pki, signing_time=future), NONCE)


# --------------------------------------------------------------------------- algorithms


def test_gost_2015_512_signature_is_unsupported_with_its_name(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    cms = _sign(pki.individual, pki, signature_algorithm_oid="1.2.398.3.10.1.1.2.3.2")
    with pytest.raises(eds.UnsupportedAlgorithm) as info:
        verifier.verify(cms, NONCE)
    assert info.value.public == (
        "unsupported signature algorithm GOST R 34.10-2015 512 (1.2.398.3.10.1.1.2.3.2); "
        "configure a GOST-capable verifier"
    )
    assert info.value.code == "unsupported_algorithm"
    assert info.value.oid == "1.2.398.3.10.1.1.2.3.2"


@pytest.mark.parametrize(
    ("field", "oid", "name"),
    [
        ("signature_algorithm_oid", "1.2.398.3.10.1.1.1.2", "GOST 34.310-2004"),
        ("signature_algorithm_oid", "1.2.398.3.10.1.1.2.3.1", "GOST R 34.10-2015 256"),
        ("digest_algorithm_oid", "1.2.398.3.10.1.3.3", "Streebog-512"),
        ("digest_algorithm_oid", "1.2.398.3.10.1.3.1", "GOST 34.311-95"),
    ],
)
def test_other_gost_oids(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier, field: str, oid: str, name: str
) -> None:
    cms = _sign(pki.individual, pki, **{field: oid})  # type: ignore[arg-type]
    with pytest.raises(eds.UnsupportedAlgorithm, match="GOST-capable") as info:
        verifier.verify(cms, NONCE)
    assert name in info.value.public and oid in info.value.public


def test_unknown_signature_algorithm(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    cms = _sign(pki.individual, pki, signature_algorithm_oid="1.2.3.4.5")
    with pytest.raises(eds.UnsupportedAlgorithm, match=r"1\.2\.3\.4\.5"):
        verifier.verify(cms, NONCE)


def test_md5_digest_unsupported(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    cms = _sign(pki.individual, pki, digest_algorithm_oid="1.2.840.113549.2.5")
    with pytest.raises(eds.UnsupportedAlgorithm, match="md5"):
        verifier.verify(cms, NONCE)


# --------------------------------------------------------------------------- identity


def test_legal_entity_bin_and_roles(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    employee = verifier.verify(_sign(pki.legal_entity, pki), NONCE)
    assert employee.bin == t.DEFAULT_BIN
    assert employee.iin == t.DEFAULT_IIN
    assert employee.organization == 'ТОО "ТЕСТ"'
    assert eds.ROLE_EMPLOYEE in employee.role_oids
    assert not eds.role_allows_entity_signing(employee)

    head = verifier.verify(_sign(pki.head, pki), NONCE)
    assert head.bin == t.DEFAULT_BIN
    assert eds.role_allows_entity_signing(head)
    assert eds.is_sign_certificate(head)
    assert "non_repudiation" in head.key_usage


def test_signing_right_role_allows(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    who = t.legal_entity_cert(pki.intermediate, roles=(eds.ROLE_SIGNING_RIGHT,))
    assert eds.role_allows_entity_signing(verifier.verify(_sign(who, pki), NONCE))


def test_role_without_bin_does_not_allow(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    who = t.individual_cert(pki.intermediate, ext_key_usage=(t.CLIENT_AUTH, eds.ROLE_FIRST_HEAD))
    assert not eds.role_allows_entity_signing(verifier.verify(_sign(who, pki), NONCE))


def test_nca_test_iin_needs_test_ca_mode(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    who = t.legal_entity_cert(pki.intermediate, iin=t.TEST_IIN, bin=t.TEST_BIN)
    cms = _sign(who, pki)
    with pytest.raises(eds.NoIdentity) as info:
        verifier.verify(cms, NONCE)
    assert info.value.code == "no_identity"
    signer = eds.BuiltinVerifier([pki.root.cert], test_ca_mode=True).verify(cms, NONCE)
    assert (signer.iin, signer.bin) == (t.TEST_IIN, t.TEST_BIN)


def test_bad_bin_checksum_rejected(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    who = t.legal_entity_cert(pki.intermediate, bin="940140000386")
    with pytest.raises(eds.NoIdentity, match="BIN"):
        verifier.verify(_sign(who, pki), NONCE)


def test_no_iin_in_subject(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    who = t.individual_cert(pki.intermediate, iin=None)
    with pytest.raises(eds.NoIdentity):
        verifier.verify(_sign(who, pki), NONCE)


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("791028302728", True),
        ("900101300811", True),
        ("940140000385", True),
        ("011140001654", True),
        ("791028302729", False),
        ("123456789012", False),
        ("123456789011", False),
        ("900101300800", False),
        ("90010130081", False),
        ("９００１０１３００８１１", False),
    ],
)
def test_kz_checksum(number: str, ok: bool) -> None:
    assert eds.kz_checksum_ok(number) is ok


# --------------------------------------------------------------------------- key usage


def test_key_usage_without_digital_signature(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    who = t.individual_cert(pki.intermediate, key_usage={"key_encipherment"})
    with pytest.raises(eds.KeyUsageNotAllowed) as info:
        verifier.verify(_sign(who, pki), NONCE)
    assert info.value.code == "key_usage_not_allowed"


def test_require_eku(pki: t.DemoPki) -> None:
    auth_only = eds.BuiltinVerifier([pki.root.cert], require_eku={t.CLIENT_AUTH})
    assert auth_only.verify(_sign(pki.individual, pki), NONCE)
    with pytest.raises(eds.KeyUsageNotAllowed, match=t.CLIENT_AUTH):
        auth_only.verify(_sign(pki.individual_sign, pki), NONCE)

    legal = eds.BuiltinVerifier(
        [pki.root.cert], require_eku={t.EMAIL_PROTECTION, eds.ROLE_LEGAL_ENTITY}
    )
    assert legal.verify(_sign(pki.head, pki), NONCE).bin == t.DEFAULT_BIN  # prefix match
    with pytest.raises(eds.KeyUsageNotAllowed):
        legal.verify(_sign(pki.individual_sign, pki), NONCE)


# --------------------------------------------------------------------------- errors


def test_error_tree() -> None:
    classes: list[type[eds.EdsError]] = [
        eds.MalformedCms,
        eds.UnsupportedAlgorithm,
        eds.BadSignature,
        eds.CertificateExpired,
        eds.KeyUsageNotAllowed,
        eds.UntrustedCertificate,
        eds.Revoked,
        eds.RevocationUnavailable,
        eds.NoIdentity,
    ]
    codes = {cls.code for cls in classes}
    assert len(codes) == len(classes)
    for cls in classes:
        err = cls(detail="internal detail")
        assert isinstance(err, eds.EdsError) and isinstance(err, EsamError)
        assert err.public and "internal detail" not in err.public
        assert err.detail == "internal detail"


# --------------------------------------------------------------------------- encodings


def _to_indefinite_length(der: bytes) -> bytes:
    """Re-encode ContentInfo and its [0] wrapper with BER indefinite lengths (Bouncy Castle)."""
    from asn1crypto import parser

    _, _, _, _, outer, _ = parser.parse(der)
    oid_len = 2 + outer[1]
    oid, wrapped = outer[:oid_len], outer[oid_len:]
    _, _, _, _, signed_data, _ = parser.parse(wrapped)
    return b"\x30\x80" + oid + b"\xa0\x80" + signed_data + b"\x00\x00" + b"\x00\x00"


def test_ber_indefinite_length_outer(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    der = _sign(pki.individual, pki, detached=False)
    ber = _to_indefinite_length(der)
    assert ber != der
    assert verifier.verify(ber).content == NONCE
    assert verifier.verify(base64.b64encode(ber)).content == NONCE


def _tlvs(data: bytes) -> list[bytes]:
    from asn1crypto import parser

    out = []
    while data:
        _, _, _, header, contents, trailer = parser.parse(data, strict=False)
        size = len(header) + len(contents) + len(trailer)
        out.append(data[:size])
        data = data[size:]
    return out


def _contents(tlv: bytes) -> bytes:
    from asn1crypto import parser

    return parser.parse(tlv)[4]


def _bouncy_castle_style(der: bytes) -> bytes:
    """Attached CMS with every wrapper indefinite and eContent as a chunked OCTET STRING."""
    oid, wrapped = _tlvs(_contents(der))
    version, digests, encap, *rest = _tlvs(_contents(_contents(wrapped)))
    e_type, e_wrapped = _tlvs(_contents(encap))
    octets = _contents(_contents(e_wrapped))
    chunks = b"".join(
        b"\x04" + bytes([len(octets[i : i + 7])]) + octets[i : i + 7]
        for i in range(0, len(octets), 7)
    )
    eoc = b"\x00\x00"
    new_encap = b"\x30\x80" + e_type + b"\xa0\x80\x24\x80" + chunks + eoc + eoc + eoc
    signed_data = b"\x30\x80" + version + digests + new_encap + b"".join(rest) + eoc
    return b"\x30\x80" + oid + b"\xa0\x80" + signed_data + eoc + eoc


def test_ber_chunked_econtent(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    ber = _bouncy_castle_style(_sign(pki.individual, pki, detached=False))
    assert NONCE not in ber  # really split into chunks
    assert verifier.verify(ber).content == NONCE
    assert verifier.verify(ber, NONCE).content == NONCE


def test_sha256_with_rsa_signature_oid(pki: t.DemoPki, verifier: eds.BuiltinVerifier) -> None:
    cms = _sign(pki.individual, pki, signature_algorithm_oid="1.2.840.113549.1.1.11")
    assert verifier.verify(cms, NONCE).signature_algorithm == "rsa_pkcs1v15_sha256"


def test_signature_oid_hash_differs_from_digest(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier
) -> None:
    cms = _sign(pki.individual, pki, signature_algorithm_oid="1.2.840.113549.1.1.5")  # sha1RSA
    with pytest.raises(eds.MalformedCms):
        verifier.verify(cms, NONCE)


@pytest.mark.parametrize("content", [b"", b"\x30\x03\x02\x01\x05", bytes(range(256)) * 64])
def test_binary_and_empty_content(
    pki: t.DemoPki, verifier: eds.BuiltinVerifier, content: bytes
) -> None:
    attached = t.sign_cms(content, pki.individual.cert, pki.individual.key, [pki.intermediate.cert], detached=False)
    assert verifier.verify(attached).content == content
    detached = t.sign_cms(content, pki.individual.cert, pki.individual.key, [pki.intermediate.cert])
    assert verifier.verify(detached, content).content == content
