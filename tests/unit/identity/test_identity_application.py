"""Application validation (appendix forms; para. 6, 13) and the canonical form."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from typing import Any

import pytest

from esam_mail.errors import ValidationError
from esam_mail.services.accounts.application import (
    IndividualApplication,
    LegalEntityApplication,
    ValidationErrors,
    canonical_json,
    validate_application,
    validate_individual,
    validate_legal_entity,
)
from esam_mail.services.accounts.identity import kz_check_digit

TODAY = date(2026, 11, 26)  # the same "today" as conftest's fixtures assume


def _errors(fn: Any, raw: Any, **kw: Any) -> dict[str, str]:
    with pytest.raises(ValidationErrors) as exc:
        fn(raw, today=TODAY, **kw)
    assert isinstance(exc.value, ValidationError)
    return exc.value.as_dict()


def test_valid_individual(individual: dict[str, Any]) -> None:
    app = validate_individual(individual, reserved=set(), today=TODAY)
    assert isinstance(app, IndividualApplication)
    assert app.iin == "850525400017"
    assert app.birth_date == date(1985, 5, 25)
    assert app.sex == "F"
    assert app.mobile_phone == "+77011234567"
    assert app.home_phone == "+77272500000"
    assert app.username == "asem.akhmetova"
    assert app.id_document.type == "id_card"
    assert app.residence_address.postcode == "B01P3K4"
    assert app.full_name == "Ахметова Әсем Серікқызы"
    with pytest.raises(dataclasses.FrozenInstanceError):
        app.username = "x"  # type: ignore[misc]


def test_individual_minimal_derives_birth_date_and_sex(individual: dict[str, Any]) -> None:
    for key in ("patronymic", "birth_date", "sex", "home_phone"):
        del individual[key]
    individual["residence_address"] = {
        "locality": "г. Алматы", "street": "Абая", "house": "1", "postcode": "050012"
    }  # fmt: skip
    app = validate_individual(individual, today=TODAY)
    assert (app.birth_date, app.sex, app.patronymic, app.home_phone) == (
        date(1985, 5, 25), "F", None, None
    )  # fmt: skip
    assert app.residence_address.region is None


def test_empty_individual_names_every_required_field() -> None:
    errors = _errors(validate_individual, {})
    assert set(errors) == {
        "surname", "given_name", "iin", "id_document", "residence_address", "mobile_phone",
        "username",
    }  # fmt: skip
    assert all("required" in m for m in errors.values())


def test_nested_required_fields(individual: dict[str, Any]) -> None:
    individual["id_document"] = {}
    individual["residence_address"] = {"locality": "Қонаев"}
    errors = _errors(validate_individual, individual)
    assert set(errors) == {
        "id_document.type", "id_document.number", "id_document.issuer",
        "id_document.issue_date", "residence_address.region", "residence_address.street",
        "residence_address.house", "residence_address.postcode",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "field", "match"),
    [
        (("surname",), "Ахметова2", "surname", "letters"),
        (("given_name",), "   ", "given_name", "required"),
        (("patronymic",), "<script>", "patronymic", "letters"),
        (("iin",), "850525400018", "iin", "check digit"),
        (("birth_date",), "1985-05-26", "birth_date", "does not match the IIN"),
        (("birth_date",), "25.05.1985", "birth_date", "YYYY-MM-DD"),
        (("sex",), "M", "sex", "does not match the IIN"),
        (("sex",), "X", "sex", "M or F"),
        (("id_document", "type"), "driving_licence", "id_document.type", "one of"),
        (("id_document", "number"), "12", "id_document.number", "5-20"),
        (("id_document", "issuer"), "", "id_document.issuer", "required"),
        (("id_document", "issue_date"), "2027-01-01", "id_document.issue_date", "future"),
        (("id_document", "issue_date"), "1980-01-01", "id_document.issue_date", "birth date"),
        (("id_document", "expiry_date"), "2017-01-01", "id_document.expiry_date", "before"),
        (("id_document", "expiry_date"), "2026-11-25", "id_document.expiry_date", "expired"),
        (("residence_address", "postcode"), "ABC", "residence_address.postcode", "postcode"),
        (("residence_address", "house"), "1" * 21, "residence_address.house", "at most"),
        (("residence_address", "region"), None, "residence_address.region", "region"),
        (("home_phone",), "home", "home_phone", "phone"),
        (("mobile_phone",), "123", "mobile_phone", "phone"),
        (("username",), "webmaster", "username", "reserved"),
        (("username",), "айгүл", "username", "Latin"),
        (("id_document",), "passport", "id_document", "object"),
    ],
)
def test_individual_field_errors(
    individual: dict[str, Any], path: tuple[str, ...], value: Any, field: str, match: str
) -> None:
    target = individual
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = _errors(validate_individual, individual)
    assert list(errors) == [field], errors
    assert match in errors[field]


def test_all_problems_are_collected(individual: dict[str, Any]) -> None:
    individual["iin"] = "123"
    individual["mobile_phone"] = "nope"
    individual["username"] = "root"
    with pytest.raises(ValidationErrors) as exc:
        validate_individual(individual, today=TODAY)
    e = exc.value
    assert e.fields == ("iin", "mobile_phone", "username")
    assert e.field == "iin"  # the first problem, for callers that know ValidationError only
    assert "2 more" in e.message
    assert "mobile_phone: " in str(e) and "username: " in str(e)


def test_operator_reserved_names(individual: dict[str, Any]) -> None:
    individual["username"] = "kazpost-ceo"
    errors = _errors(validate_individual, individual, reserved={"kazpost-ceo"})
    assert list(errors) == ["username"]


def test_unknown_and_kind_keys(individual: dict[str, Any]) -> None:
    individual["patronimic"] = "typo"
    individual["kind"] = "legal_entity"
    errors = _errors(validate_individual, individual)
    assert set(errors) == {"patronimic", "kind"}


def test_unusual_iin_allowed_by_option(individual: dict[str, Any]) -> None:
    # 7th digit 0: no century, no sex; declared values are kept as given
    prefixes = (f"8505250{serial:04d}" for serial in range(100))
    individual["iin"] = next(p + str(c) for p in prefixes if (c := kz_check_digit(p)) is not None)
    assert "iin" in _errors(validate_individual, individual)
    app = validate_individual(individual, today=TODAY, allow_unusual_iin=True)
    assert app.birth_date == date(1985, 5, 25) and app.sex == "F"


def test_not_a_dict() -> None:
    with pytest.raises(ValidationError) as exc:
        validate_individual(["not", "a", "dict"], today=TODAY)  # type: ignore[arg-type]
    assert exc.value.field == "application"


def test_valid_legal_entity(legal_entity: dict[str, Any]) -> None:
    app = validate_legal_entity(legal_entity, reserved={"akimat"}, today=TODAY)
    assert isinstance(app, LegalEntityApplication)
    assert app.bin == "150340001236"
    assert app.registration.date == date(2015, 3, 10)
    assert app.legal_address.region is None  # Astana needs no region
    assert app.actual_address.apartment == "офис 3"
    assert app.work_phone == "+77172555555"
    assert app.representative is not None and app.representative.iin == "751111300031"


def test_legal_entity_without_representative(legal_entity: dict[str, Any]) -> None:
    del legal_entity["representative"]
    assert validate_legal_entity(legal_entity, today=TODAY).representative is None


def test_empty_legal_entity_names_every_required_field() -> None:
    errors = _errors(validate_legal_entity, {})
    assert set(errors) == {
        "name", "bin", "registration", "legal_address", "actual_address", "work_phone",
        "mobile_phone", "username",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("bin",), "949940000385", "bin"),
        (("bin",), "000000000000", "bin"),
        (("name",), "", "name"),
        (("registration", "number"), "", "registration.number"),
        (("registration", "date"), "2030-01-01", "registration.date"),
        (("registration", "date"), "10.03.2015", "registration.date"),
        (("legal_address", "postcode"), "01000", "legal_address.postcode"),
        (("actual_address", "street"), None, "actual_address.street"),
        (("work_phone",), "", "work_phone"),
        (("mobile_phone",), "+7 777", "mobile_phone"),
        (("username",), "admin", "username"),
        (("representative", "iin"), "751111300032", "representative.iin"),
        (("representative", "surname"), "", "representative.surname"),
        (("representative", "role"), "CEO", "representative.role"),
    ],
)
def test_legal_entity_field_errors(
    legal_entity: dict[str, Any], path: tuple[str, ...], value: Any, field: str
) -> None:
    target = legal_entity
    for key in path[:-1]:
        target[key] = dict(target[key])
        target = target[key]
    target[path[-1]] = value
    errors = _errors(validate_legal_entity, legal_entity)
    assert list(errors) == [field], errors


def test_canonical_json_is_sorted_compact_utf8(individual: dict[str, Any]) -> None:
    app = validate_individual(individual, today=TODAY)
    blob = canonical_json(app)
    assert blob == app.canonical_json()
    text = blob.decode("utf-8")
    assert "Әсем" in text  # not \\u-escaped
    assert " " not in text.replace("МВД РК", "").replace("ул. Абая", "").replace(
        "Алматинская область", ""
    )
    obj = json.loads(blob)
    assert blob == json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    assert obj["kind"] == "individual" and obj["schema"] == 1
    assert obj["birth_date"] == "1985-05-25"


def test_canonical_form_round_trips(individual: dict[str, Any], legal_entity: dict[str, Any]) -> None:
    for raw, fn in ((individual, validate_individual), (legal_entity, validate_legal_entity)):
        app = fn(raw, today=TODAY)
        again = validate_application(json.loads(canonical_json(app)), today=TODAY)
        assert again == app
        assert canonical_json(again) == canonical_json(app)


def test_equivalent_inputs_give_identical_bytes(individual: dict[str, Any]) -> None:
    a = validate_individual(individual, today=TODAY)
    individual["surname"] = "  Ахметова "
    individual["mobile_phone"] = "+77011234567"
    individual["username"] = "ASEM.AKHMETOVA"
    individual["residence_address"]["postcode"] = "b01 p3k4"
    b = validate_individual(individual, today=TODAY)
    assert canonical_json(a) == canonical_json(b)


def test_validate_application_needs_kind() -> None:
    with pytest.raises(ValidationError) as exc:
        validate_application({"kind": "robot"})
    assert exc.value.field == "kind"


# --------------------------------------------------------------------------- signer's role (issue 18.4)


def test_signer_role_defaults_to_head(legal_entity: dict[str, Any]) -> None:
    app = validate_legal_entity(legal_entity, today=TODAY)
    assert (app.signer_role, app.poa_number, app.poa_date) == ("head", None, None)
    doc = json.loads(canonical_json(app))
    assert (doc["signer_role"], doc["poa_number"], doc["poa_date"]) == ("head", None, None)


def test_representative_with_power_of_attorney(legal_entity: dict[str, Any]) -> None:
    raw = {**legal_entity, "signer_role": " Representative ", "poa_number": " Д-17 / 2026 ", "poa_date": "2026-01-15"}
    app = validate_legal_entity(raw, today=TODAY)
    assert (app.signer_role, app.poa_number, app.poa_date) == ("representative", "Д-17 / 2026", date(2026, 1, 15))
    doc = json.loads(canonical_json(app))  # what the applicant signs names the capacity and the POA
    assert (doc["signer_role"], doc["poa_number"], doc["poa_date"]) == ("representative", "Д-17 / 2026", "2026-01-15")
    assert validate_legal_entity(doc, today=TODAY) == app  # the canonical form round-trips
    head = validate_legal_entity({**legal_entity, "signer_role": "head"}, today=TODAY)
    assert canonical_json(head) != canonical_json(app)


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ({"signer_role": "director"}, {"signer_role": "signer role must be one of head, representative"}),
        ({"signer_role": 1}, {"signer_role": "signer role must be one of head, representative"}),
        ({"signer_role": "representative"},
         {"poa_number": "power of attorney number is required", "poa_date": "power of attorney date is required"}),
        ({"signer_role": "representative", "poa_number": "7", "poa_date": "2026-11-27"}, {"poa_date": None}),
        ({"signer_role": "representative", "poa_number": "7", "poa_date": "15.01.2026"}, {"poa_date": None}),
        ({"signer_role": "representative", "poa_number": "x" * 51, "poa_date": "2026-01-15"}, {"poa_number": None}),
        ({"signer_role": "head", "poa_number": "7"}, {"poa_number": None}),
        ({"poa_date": "2026-01-15"}, {"poa_date": None}),
    ],
)  # fmt: skip
def test_signer_role_errors_name_the_field(
    legal_entity: dict[str, Any], extra: dict[str, Any], want: dict[str, str | None]
) -> None:
    got = _errors(validate_legal_entity, {**legal_entity, **extra})
    assert set(got) == set(want)
    for field, message in want.items():
        if message is not None:
            assert got[field] == message


def test_signer_role_is_not_a_field_of_individuals(individual: dict[str, Any]) -> None:
    assert "signer_role" in _errors(validate_individual, {**individual, "signer_role": "head"})
