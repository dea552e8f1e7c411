"""An NCA-shaped test PKI for staging systems (``esam eds test-pki``), issue 16 item 6.

Makes a root and an intermediate CA named and profiled like the National Certification
Authority of Kazakhstan (НУЦ РК / ҰКО) and issues end-entity certificates for individuals
(IIN in ``serialNumber``) and legal entities (BIN in ``OU``, a role in the subject and the
role policy OID), for signing (keyUsage nonRepudiation, EKU emailProtection) or for
authentication.  Identity numbers are checked (structure and check digit, domain.md section 1),
so a staging system runs with ``eds.test_ca_mode = true`` and the real checksum rules.

Keys are written unencrypted (PKCS#8 PEM) with mode 0600, plus a PKCS#12 bundle for NCALayer
or a browser: **a test PKI, never for production**.  The same builders back the test suite's
helper (``tests/eds_testing.py``: CMS signing, CRLs, a cached demo PKI).
"""


from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from esam_mail import fsio

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
    "Issued",
    "PrivateKey",
    "TestPki",
    "cached_key",
    "generate_key",
    "individual_cert",
    "init_test_pki",
    "intermediate_ca",
    "issue_test_certificate",
    "legal_entity_cert",
    "load_test_pki",
    "nca_subject",
    "root_ca",
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




# --------------------------------------------------------------------------- the operator tool

ROLES = {
    "first_head": "1.2.398.3.3.4.1.2.1",  # первый руководитель
    "signer": "1.2.398.3.3.4.1.2.2",  # лицо с правом подписи
    "employee": "1.2.398.3.3.4.1.2.5",  # сотрудник (no signing right for the entity)
}
ROOT_NAME = "TEST ҚР ТҮБІРЛІК КУО (RSA)"  # at most 64 bytes of UTF-8 (RFC 5280 ub-common-name)
INTERMEDIATE_NAME = "TEST ҰЛТТЫҚ КУӘЛАНДЫРУШЫ ОРТАЛЫҚ"


@dataclass(frozen=True, slots=True)
class TestPki:
    """A test PKI on disk: ``root.pem``, ``intermediate.pem`` and their keys (0600)."""

    folder: Path
    root: Issued
    intermediate: Issued

    @property
    def root_path(self) -> Path:
        return self.folder / "root.pem"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fsio.atomic_write(path, data, mode=mode)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def init_test_pki(folder: Path, *, force: bool = False) -> TestPki:
    """Make a root and an intermediate CA shaped like the NCA's (RSA 2048, 10 and 5 years).

    Raises:
        FileExistsError: the folder already holds a test PKI and ``force`` is not given.
    """
    folder = Path(folder)
    if (folder / "root.pem").exists() and not force:
        raise FileExistsError(f"{folder} already holds a test PKI (root.pem); give --force to replace it")
    now = _now()
    root = root_ca(ROOT_NAME, key=generate_key("rsa"), not_before=now - timedelta(days=1),
                   not_after=now + timedelta(days=3650))
    inter = intermediate_ca(root, INTERMEDIATE_NAME, key=generate_key("rsa"), not_before=now - timedelta(days=1),
                            not_after=now + timedelta(days=1825))
    _write(folder / "root.key", _key_pem(root.key), 0o600)
    _write(folder / "intermediate.key", _key_pem(inter.key), 0o600)
    _write(folder / "root.pem", root.pem)
    _write(folder / "intermediate.pem", inter.pem)
    return TestPki(folder, root, inter)


def load_test_pki(folder: Path) -> TestPki:
    """The test PKI made by :func:`init_test_pki` in *folder*.

    Raises:
        FileNotFoundError: no test PKI there (run ``esam eds test-pki init``).
    """
    folder = Path(folder)

    def issued(name: str) -> Issued:
        cert = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / f"{name}.key").read_bytes(), password=None)
        assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        return Issued(cert, key)

    return TestPki(folder, issued("root"), issued("intermediate"))


def issue_test_certificate(
    pki: TestPki,
    out: Path,
    *,
    iin: str,
    surname: str,
    given_name: str,
    patronymic: str | None = None,
    bin: str | None = None,
    organization: str | None = None,
    role: str = "first_head",
    usage: Literal["sign", "auth"] = "sign",
    days: int = 365,
    password: bytes = b"test",
) -> dict[str, Path]:
    """Issue an end-entity certificate of an individual (``bin`` None) or of a legal entity's
    employee with ``role`` (first_head, signer, employee); write ``<name>.pem`` (the
    certificate), ``<name>.key`` (0600), ``<name>-chain.pem`` and ``<name>.p12`` (for NCALayer;
    password *password*).

    Raises:
        ValidationError: an IIN/BIN that is not valid (checksum, structure), or an unknown role.
    """
    from esam_mail.errors import ValidationError
    from esam_mail.services.accounts.identity import M_, validate_bin, validate_iin

    iin = validate_iin(iin, field="iin").value
    if bin is not None:
        bin = validate_bin(bin, field="bin").value
        if role not in ROLES:
            raise ValidationError("role", M_("one of {choices}", choices=", ".join(ROLES)))
    now = _now()
    common = {"key": generate_key("rsa"), "iin": iin, "surname": surname.upper(), "first_name": given_name.upper(),
              "patronymic": patronymic.upper() if patronymic else None, "sign": usage == "sign",
              "not_before": now - timedelta(minutes=5), "not_after": now + timedelta(days=days)}
    if bin is None:
        issued = individual_cert(pki.intermediate, **common)  # type: ignore[arg-type]
        name = f"{usage}-iin{iin}"
    else:
        issued = legal_entity_cert(pki.intermediate, bin=bin, organization=organization or f"BIN {bin}",
                                   roles=(ROLES[role],), **common)  # type: ignore[arg-type]
        name = f"{usage}-bin{bin}-iin{iin}-{role}"
    from cryptography.hazmat.primitives.serialization import pkcs12

    out = Path(out)
    files = {
        "cert": out / f"{name}.pem",
        "key": out / f"{name}.key",
        "chain": out / f"{name}-chain.pem",
        "p12": out / f"{name}.p12",
    }
    _write(files["key"], _key_pem(issued.key), 0o600)
    _write(files["cert"], issued.pem)
    _write(files["chain"], issued.pem + pki.intermediate.pem + pki.root.pem)
    _write(files["p12"], pkcs12.serialize_key_and_certificates(
        name.encode(), issued.key, issued.cert, [pki.intermediate.cert, pki.root.cert],
        serialization.BestAvailableEncryption(password)), 0o600)
    return files
