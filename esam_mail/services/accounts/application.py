"""Registration applications: validation and canonical form (pure: no I/O).

The appendix of the rules (seed ``000_254da2b4eae80a4d``) has two paper
forms; para. 6 lets them be submitted online (signed with EDS) or at a post
office (entered by an employee).  Both channels end up here as a plain
``dict`` (JSON body, CLI options, or the employee's form) and leave as a frozen
:class:`IndividualApplication` or :class:`LegalEntityApplication`.

Every problem is collected; the validators raise one :class:`ValidationErrors`
(a subclass of :class:`esam_mail.errors.ValidationError`, so callers catch the
usual type) whose ``errors`` lists each field error.  Nested fields are named
with dots: ``id_document.issue_date``, ``legal_address.postcode``.

Raw keys (``?`` = optional; ``None`` or an empty string count as absent):

Individual (``kind`` = ``"individual"``)::

    surname, given_name, patronymic?, iin, birth_date?, sex?,
    id_document {type, number, issuer, issue_date, expiry_date?},
    residence_address {region?, locality, street, house, apartment?, postcode},
    home_phone?, mobile_phone, username

Legal entity (``kind`` = ``"legal_entity"``)::

    name, bin,
    registration {number, date, issuer?},
    legal_address {...}, actual_address {...},
    work_phone, mobile_phone, username,
    representative? {surname, given_name, patronymic?, iin},
    signer_role?, poa_number?, poa_date?

``signer_role`` says in what capacity the person signs for the entity:
``head`` (the first head, acting without a power of attorney; the default when
absent, as before the field existed) or ``representative`` (acting under a
power of attorney, whose ``poa_number`` and ``poa_date`` are then required and
are refused for ``head``).

``kind`` and ``schema`` (= 1) may be present (they are in the canonical form);
any other key is refused, so that a typo (``patronimic``) is not silently lost.

:func:`canonical_json` gives the bytes the EDS layer signs and verifies over
(para. 6 sub-para. 1): sorted keys, UTF-8, no whitespace, every field present
(``null`` when absent), dates as ``YYYY-MM-DD``.  Feeding the parsed canonical
JSON back to the validator yields an equal application.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar, Literal, TypeVar

from esam_mail.errors import ValidationError
from esam_mail.services.accounts.identity import (
    M_,
    Sex,
    clean_person_name,
    clean_text,
    normalize_phone,
    normalize_postcode,
    normalize_username,
    parse_date,
    parse_sex,
    validate_bin,
    validate_iin,
)

__all__ = [
    "CITIES_OF_REPUBLICAN_SIGNIFICANCE",
    "ID_DOCUMENT_TYPES",
    "SCHEMA_VERSION",
    "SIGNER_ROLES",
    "Address",
    "Application",
    "IdDocument",
    "IndividualApplication",
    "LegalEntityApplication",
    "RegistrationCertificate",
    "Representative",
    "ValidationErrors",
    "canonical_json",
    "signed_document",
    "validate_application",
    "validate_individual",
    "validate_legal_entity",
]

#: Version of the canonical form; bump when fields change (old signatures
#: stay verifiable against the version they were made for).
SCHEMA_VERSION = 1

#: Identity documents accepted on the individual form (appendix).
ID_DOCUMENT_TYPES: tuple[str, ...] = (
    "id_card",
    "passport",
    "residence_permit",
    "stateless_certificate",
)

#: Capacities in which a person signs for a legal entity (``signer_role``).
SIGNER_ROLES: tuple[str, ...] = ("head", "representative")

#: Localities that need no region (domain.md section 5), case-folded.
CITIES_OF_REPUBLICAN_SIGNIFICANCE: frozenset[str] = frozenset(
    {"астана", "astana", "нур-султан", "nur-sultan", "алматы", "almaty", "алма-ата",
     "шымкент", "shymkent"}
)  # fmt: skip

T = TypeVar("T")


class ValidationErrors(ValidationError):
    """Several field errors at once.

    ``field`` and ``message`` are those of the first problem (with a count of
    the others), so code that only knows :class:`ValidationError` still shows
    something sensible; ``errors`` has them all and ``as_dict()`` maps each
    field to its message (an HTTP 422 body).
    """

    def __init__(self, errors: Iterable[ValidationError]) -> None:
        self.errors: tuple[ValidationError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("ValidationErrors needs at least one error")
        first = self.errors[0]
        message = first.message
        if len(self.errors) > 1:
            message += f" (and {len(self.errors) - 1} more problem(s))"
        super().__init__(first.field, message)
        # str(): every problem, one "field: message" each.
        self.args = ("; ".join(f"{e.field}: {e.message}" for e in self.errors),)

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names, in the order found."""
        return tuple(e.field for e in self.errors)

    def as_dict(self) -> dict[str, str]:
        """``{field: message}``; the first message wins for a repeated field."""
        out: dict[str, str] = {}
        for e in self.errors:
            out.setdefault(e.field, e.message)
        return out


# --------------------------------------------------------------------------
# Value objects
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """A Kazakh postal address (domain.md section 5; appendix)."""

    region: str | None
    locality: str
    street: str
    house: str
    apartment: str | None
    postcode: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "locality": self.locality,
            "street": self.street,
            "house": self.house,
            "apartment": self.apartment,
            "postcode": self.postcode,
        }


@dataclass(frozen=True, slots=True)
class IdDocument:
    """The identity document shown by an individual (appendix)."""

    type: str  # one of ID_DOCUMENT_TYPES
    number: str
    issuer: str
    issue_date: date
    expiry_date: date | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "number": self.number,
            "issuer": self.issuer,
            "issue_date": self.issue_date.isoformat(),
            "expiry_date": _iso(self.expiry_date),
        }


@dataclass(frozen=True, slots=True)
class RegistrationCertificate:
    """Certificate of state registration of a legal entity (appendix)."""

    number: str
    date: date
    issuer: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "date": self.date.isoformat(), "issuer": self.issuer}


@dataclass(frozen=True, slots=True)
class Representative:
    """The person acting for a legal entity (optional)."""

    surname: str
    given_name: str
    patronymic: str | None
    iin: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "surname": self.surname,
            "given_name": self.given_name,
            "patronymic": self.patronymic,
            "iin": self.iin,
        }


@dataclass(frozen=True, slots=True)
class IndividualApplication:
    """A validated application of an individual (appendix, first form).

    ``birth_date`` and ``sex`` are taken from the IIN when it encodes them
    (the declared values, if any, were checked to agree).
    """

    kind: ClassVar[Literal["individual"]] = "individual"

    surname: str
    given_name: str
    patronymic: str | None
    iin: str
    birth_date: date | None
    sex: Sex | None
    id_document: IdDocument
    residence_address: Address
    home_phone: str | None
    mobile_phone: str
    username: str

    @property
    def full_name(self) -> str:
        """``Surname Given Patronymic``, as on the paper form."""
        return " ".join(p for p in (self.surname, self.given_name, self.patronymic) if p)

    @property
    def identifier(self) -> str:
        """The IIN (para. 13)."""
        return self.iin

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "surname": self.surname,
            "given_name": self.given_name,
            "patronymic": self.patronymic,
            "iin": self.iin,
            "birth_date": _iso(self.birth_date),
            "sex": self.sex,
            "id_document": self.id_document.to_dict(),
            "residence_address": self.residence_address.to_dict(),
            "home_phone": self.home_phone,
            "mobile_phone": self.mobile_phone,
            "username": self.username,
        }

    def canonical_json(self) -> bytes:
        return canonical_json(self)


@dataclass(frozen=True, slots=True)
class LegalEntityApplication:
    """A validated application of a legal entity (appendix, second form)."""

    kind: ClassVar[Literal["legal_entity"]] = "legal_entity"

    name: str
    bin: str
    registration: RegistrationCertificate
    legal_address: Address
    actual_address: Address
    work_phone: str
    mobile_phone: str
    username: str
    representative: Representative | None
    signer_role: str = "head"  # one of SIGNER_ROLES
    poa_number: str | None = None  # power of attorney, for a representative
    poa_date: date | None = None

    @property
    def full_name(self) -> str:
        return self.name

    @property
    def identifier(self) -> str:
        """The BIN (para. 13)."""
        return self.bin

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": self.kind,
            "name": self.name,
            "bin": self.bin,
            "registration": self.registration.to_dict(),
            "legal_address": self.legal_address.to_dict(),
            "actual_address": self.actual_address.to_dict(),
            "work_phone": self.work_phone,
            "mobile_phone": self.mobile_phone,
            "username": self.username,
            "representative": self.representative.to_dict() if self.representative else None,
            "signer_role": self.signer_role,
            "poa_number": self.poa_number,
            "poa_date": _iso(self.poa_date),
        }

    def canonical_json(self) -> bytes:
        return canonical_json(self)


Application = IndividualApplication | LegalEntityApplication


def canonical_json(app: Application) -> bytes:
    """The canonical bytes of an application, for EDS signing (para. 6).

    ``json.dumps`` with sorted keys, ``(",", ":")`` separators, no ASCII
    escaping, encoded as UTF-8.  Strings are already NFC-normalised by the
    validators, so equal applications give equal bytes.
    """
    return json.dumps(
        app.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


#: Version of the signed online document (application + consent); 1 was the bare application.
SIGNED_SCHEMA_VERSION = 2


def signed_document(
    app: Application, *, agreement_version: str, agreement_sha256: str, language: str
) -> bytes:
    """The bytes an online applicant signs (para. 5, 6): the application **and** the consent.

    ``{"schema": 2, "application": <canonical application>, "consent": {"agreement_version",
    "agreement_sha256", "language"}}`` as canonical JSON.  The SHA-256 is that of the
    agreement text in ``language``, the edition the applicant read; a signature that does not
    cover these three proves no consent and is refused.
    """
    doc = {
        "schema": SIGNED_SCHEMA_VERSION,
        "application": app.to_dict(),
        "consent": {
            "agreement_version": agreement_version,
            "agreement_sha256": agreement_sha256,
            "language": language,
        },
    }
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d is not None else None


# --------------------------------------------------------------------------
# Collecting errors
# --------------------------------------------------------------------------


class _Form:
    """One level of the raw dict, with a dotted prefix for field names."""

    def __init__(self, raw: object, prefix: str, errors: list[ValidationError]) -> None:
        self.prefix = prefix
        self.errors = errors
        self.raw: Mapping[Any, Any] = raw if isinstance(raw, Mapping) else {}

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def present(self, key: str) -> bool:
        value = self.raw.get(key)
        return not (value is None or (isinstance(value, str) and not value.strip()))

    def check_keys(self, allowed: Collection[str]) -> None:
        for key in self.raw:
            if key not in allowed:
                shown = key if isinstance(key, str) else repr(key)
                self.errors.append(ValidationError(f"{self.prefix}{shown}", M_("unknown field")))

    def required(self, key: str, parse: Callable[..., T], label: str, **kw: Any) -> T | None:
        if not self.present(key):
            self.errors.append(ValidationError(self.name(key), M_("{what} is required", what=label)))
            return None
        return self.run(parse, self.raw[key], field=self.name(key), **kw)

    def optional(self, key: str, parse: Callable[..., T], **kw: Any) -> T | None:
        if not self.present(key):
            return None
        return self.run(parse, self.raw[key], field=self.name(key), **kw)

    def run(self, parse: Callable[..., T], *args: Any, **kw: Any) -> T | None:
        try:
            return parse(*args, **kw)
        except ValidationError as e:
            self.errors.append(e)
            return None

    def sub(self, key: str, what: str, *, required: bool = True) -> _Form | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.errors.append(ValidationError(self.name(key), M_("{what} is required", what=what)))
            return None
        if not isinstance(value, Mapping):
            self.errors.append(ValidationError(self.name(key), M_("{what} must be an object", what=what)))
            return None
        return _Form(value, f"{self.name(key)}.", self.errors)

    def fail(self, key: str, message: str) -> None:
        self.errors.append(ValidationError(self.name(key), message))


def _start(raw: object, kind: str) -> _Form:
    errors: list[ValidationError] = []
    if not isinstance(raw, Mapping):
        raise ValidationErrors([ValidationError("application", M_("application must be an object"))])
    form = _Form(raw, "", errors)
    if "kind" in raw and raw["kind"] != kind:
        form.fail("kind", M_("must be '{kind}' here", kind=kind))
    if "schema" in raw and (type(raw["schema"]) is not int or raw["schema"] != SCHEMA_VERSION):
        form.fail("schema", M_("unsupported schema version (expected {version})", version=SCHEMA_VERSION))
    return form


def _finish(form: _Form, allowed: Collection[str]) -> None:
    """Report unknown top-level keys (last: they are rarely the main problem), then raise."""
    form.check_keys({*allowed, "kind", "schema"})
    errors = form.errors
    if errors:
        raise ValidationErrors(errors)


def _incomplete() -> ValidationErrors:
    """Defensive: a part is missing although no field error was recorded."""
    return ValidationErrors([ValidationError("application", M_("the application is incomplete"))])


# --------------------------------------------------------------------------
# Field groups
# --------------------------------------------------------------------------

_ADDRESS_KEYS = ("region", "locality", "street", "house", "apartment", "postcode")
_CITY_PREFIX = re.compile(r"^(?:г\.|г |город |city of |city )\s*", re.IGNORECASE)
_CITY_SUFFIX = re.compile(r"\s*(?:қ\.|қаласы|city)$", re.IGNORECASE)


def _is_republican_city(locality: str) -> bool:
    name = _CITY_SUFFIX.sub("", _CITY_PREFIX.sub("", locality.casefold())).strip()
    return name in CITIES_OF_REPUBLICAN_SIGNIFICANCE


def _address(parent: _Form, key: str, what: str) -> Address | None:
    form = parent.sub(key, what)
    if form is None:
        return None
    form.check_keys(_ADDRESS_KEYS)
    locality = form.required("locality", clean_text, M_("locality"), what=M_("locality"))
    region = form.optional("region", clean_text, what=M_("region"))
    missing_region = region is None and not form.present("region")
    if missing_region and locality is not None and not _is_republican_city(locality):
        form.fail("region", M_("region is required (except for Astana, Almaty and Shymkent)"))
    street = form.required("street", clean_text, M_("street"), what=M_("street"))
    house = form.required("house", clean_text, M_("house"), what=M_("house"), max_len=20)
    apartment = form.optional("apartment", clean_text, what=M_("apartment"), max_len=20)
    postcode = form.required("postcode", normalize_postcode, M_("postcode"))
    if locality is None or street is None or house is None or postcode is None:
        return None
    if region is None and form.present("region"):
        return None
    return Address(region, locality, street, house, apartment, postcode)


def _doc_type(value: object, *, field: str) -> str:
    if isinstance(value, str):
        text = re.sub(r"[\s-]+", "_", value.strip().casefold())
        if text in ID_DOCUMENT_TYPES:
            return text
    raise ValidationError(field, M_("document type must be one of {choices}", choices=", ".join(ID_DOCUMENT_TYPES)))


def _doc_number(value: object, *, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, M_("document number must be given as text"))
    text = re.sub(r"[\s-]", "", value).upper()
    if not (text.isascii() and re.fullmatch(r"[A-Z0-9]{5,20}", text)):
        raise ValidationError(field, M_("document number must be 5-20 Latin letters and digits (e.g. N12345678)"))
    return text


def _person_names(form: _Form) -> tuple[str | None, str | None, str | None]:
    surname = form.required("surname", clean_person_name, M_("surname"), what=M_("surname"))
    given = form.required("given_name", clean_person_name, M_("given name"), what=M_("given name"))
    patronymic = form.optional("patronymic", clean_person_name, what=M_("patronymic"))
    return surname, given, patronymic


# --------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------

_INDIVIDUAL_KEYS = (
    "surname",
    "given_name",
    "patronymic",
    "iin",
    "birth_date",
    "sex",
    "id_document",
    "residence_address",
    "home_phone",
    "mobile_phone",
    "username",
)


def validate_individual(
    raw: Mapping[str, Any],
    *,
    reserved: Iterable[str] = (),
    today: date | None = None,
    allow_unusual_iin: bool = False,
) -> IndividualApplication:
    """Validate the individual's application (appendix, para. 6 and 13).

    Args:
        raw: the submitted fields (module docstring lists the keys).
        reserved: the operator's reserved user names, on top of
            :data:`~esam_mail.services.accounts.identity.DEFAULT_RESERVED_NAMES`.
        today: "today" for the not-in-the-future checks (tests pass a fixed day).
        allow_unusual_iin: accept an IIN whose 7th digit is not 1-6.

    Raises:
        ValidationErrors: every problem found (a :class:`ValidationError`).
    """
    today = today or date.today()
    reserved = tuple(reserved)
    form = _start(raw, "individual")
    surname, given, patronymic = _person_names(form)
    parsed = form.required("iin", validate_iin, M_("IIN"), allow_unusual_century=allow_unusual_iin)

    birth_date = form.optional("birth_date", parse_date, not_future=True, today=today)
    sex = form.optional("sex", parse_sex)
    if parsed is not None and parsed.birth_date is not None:
        if birth_date is not None and birth_date != parsed.birth_date:
            form.fail(
                "birth_date",
                M_("birth date does not match the IIN (the IIN gives {date})", date=parsed.birth_date.isoformat()),
            )
        if parsed.birth_date > today:
            form.fail("iin", M_("IIN is not valid: its birth date is in the future"))
        birth_date = parsed.birth_date
    if parsed is not None and parsed.sex is not None:
        if sex is not None and sex != parsed.sex:
            form.fail("sex", M_("sex does not match the IIN (the IIN gives {sex})", sex=parsed.sex))
        sex = parsed.sex

    document: IdDocument | None = None
    doc = form.sub("id_document", M_("identity document"))
    if doc is not None:
        doc.check_keys(("type", "number", "issuer", "issue_date", "expiry_date"))
        doc_type = doc.required("type", _doc_type, M_("document type"))
        number = doc.required("number", _doc_number, M_("document number"))
        issuer = doc.required("issuer", clean_text, M_("issuer"), what=M_("issuer"), max_len=100)
        issued = doc.required("issue_date", parse_date, M_("issue date"), not_future=True, today=today)
        expires = doc.optional("expiry_date", parse_date)
        if issued is not None and birth_date is not None and issued < birth_date:
            doc.fail("issue_date", M_("the document cannot be issued before the birth date"))
        if expires is not None:
            if issued is not None and expires < issued:
                doc.fail("expiry_date", M_("the expiry date is before the issue date"))
            elif expires < today:
                doc.fail("expiry_date", M_("the document has expired"))
        if doc_type and number and issuer and issued:
            document = IdDocument(doc_type, number, issuer, issued, expires)

    address = _address(form, "residence_address", M_("residence address"))
    home = form.optional("home_phone", normalize_phone)
    mobile = form.required("mobile_phone", normalize_phone, M_("mobile phone"))
    username = form.required("username", normalize_username, M_("user name"), reserved=reserved)
    _finish(form, _INDIVIDUAL_KEYS)
    if not (surname and given and parsed and document and address and mobile and username):
        raise _incomplete()
    return IndividualApplication(
        surname=surname,
        given_name=given,
        patronymic=patronymic,
        iin=parsed.value,
        birth_date=birth_date,
        sex=sex,
        id_document=document,
        residence_address=address,
        home_phone=home,
        mobile_phone=mobile,
        username=username,
    )


_ENTITY_KEYS = (
    "name",
    "bin",
    "registration",
    "legal_address",
    "actual_address",
    "work_phone",
    "mobile_phone",
    "username",
    "representative",
    "signer_role",
    "poa_number",
    "poa_date",
)


def _signer_role(value: object, *, field: str) -> str:
    if isinstance(value, str) and value.strip().casefold() in SIGNER_ROLES:
        return value.strip().casefold()
    raise ValidationError(field, M_("signer role must be one of {choices}", choices=", ".join(SIGNER_ROLES)))


def validate_legal_entity(
    raw: Mapping[str, Any],
    *,
    reserved: Iterable[str] = (),
    today: date | None = None,
    allow_unusual_iin: bool = False,
) -> LegalEntityApplication:
    """Validate a legal entity's application (appendix, para. 6 and 13).

    Args: as :func:`validate_individual`; ``allow_unusual_iin`` applies to
    the representative's IIN.

    Raises:
        ValidationErrors: every problem found (a :class:`ValidationError`).
    """
    today = today or date.today()
    reserved = tuple(reserved)
    form = _start(raw, "legal_entity")
    name = form.required("name", clean_text, M_("name"), what=M_("name"), max_len=300)
    parsed = form.required("bin", validate_bin, M_("BIN"))

    certificate: RegistrationCertificate | None = None
    reg = form.sub("registration", M_("state registration certificate"))
    if reg is not None:
        reg.check_keys(("number", "date", "issuer"))
        number = reg.required("number", clean_text, M_("number"), what=M_("number"), max_len=50)
        when = reg.required(
            "date", parse_date, M_("date"), not_future=True, today=today, earliest=date(1900, 1, 1)
        )
        issuer = reg.optional("issuer", clean_text, what=M_("issuer"), max_len=200)
        if number and when:
            certificate = RegistrationCertificate(number, when, issuer)

    legal = _address(form, "legal_address", M_("legal address"))
    actual = _address(form, "actual_address", M_("actual address"))
    work = form.required("work_phone", normalize_phone, M_("work phone"))
    mobile = form.required("mobile_phone", normalize_phone, M_("mobile phone"))
    username = form.required("username", normalize_username, M_("user name"), reserved=reserved)

    representative: Representative | None = None
    rep = form.sub("representative", M_("representative"), required=False)
    if rep is not None:
        rep.check_keys(("surname", "given_name", "patronymic", "iin"))
        surname, given, patronymic = _person_names(rep)
        rep_iin = rep.required("iin", validate_iin, M_("IIN"), allow_unusual_century=allow_unusual_iin)
        if surname and given and rep_iin:
            representative = Representative(surname, given, patronymic, rep_iin.value)

    given_role = form.optional("signer_role", _signer_role)
    role = given_role or "head"
    poa_number: str | None = None
    poa_date: date | None = None
    if role == "representative":
        poa_number = form.required(
            "poa_number", clean_text, M_("power of attorney number"), what=M_("power of attorney number"), max_len=50
        )
        poa_date = form.required(
            "poa_date",
            parse_date,
            M_("power of attorney date"),
            not_future=True,
            today=today,
            earliest=date(1900, 1, 1),
        )
    elif given_role is not None or not form.present("signer_role"):  # head (not a bad value)
        for key in ("poa_number", "poa_date"):
            if form.present(key):
                form.fail(key, M_("a power of attorney is given only when signer role is 'representative'"))

    _finish(form, _ENTITY_KEYS)
    if not (name and parsed and certificate and legal and actual and work and mobile and username):
        raise _incomplete()
    return LegalEntityApplication(
        name=name,
        bin=parsed.value,
        registration=certificate,
        legal_address=legal,
        actual_address=actual,
        work_phone=work,
        mobile_phone=mobile,
        username=username,
        representative=representative,
        signer_role=role,
        poa_number=poa_number,
        poa_date=poa_date,
    )


def validate_application(
    raw: Mapping[str, Any],
    *,
    reserved: Iterable[str] = (),
    today: date | None = None,
    allow_unusual_iin: bool = False,
) -> Application:
    """Dispatch on ``raw["kind"]`` (``individual`` or ``legal_entity``)."""
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if kind == "individual":
        return validate_individual(raw, reserved=reserved, today=today, allow_unusual_iin=allow_unusual_iin)
    if kind == "legal_entity":
        return validate_legal_entity(raw, reserved=reserved, today=today, allow_unusual_iin=allow_unusual_iin)
    raise ValidationErrors([ValidationError("kind", M_("kind must be 'individual' or 'legal_entity'"))])
