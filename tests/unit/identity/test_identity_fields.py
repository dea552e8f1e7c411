"""Phones, postcodes, dates, user names and names (appendix; para. 4, 11)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from esam_mail.errors import ValidationError
from esam_mail.services.accounts.identity import (
    DEFAULT_RESERVED_NAMES,
    clean_person_name,
    clean_text,
    is_reserved_name,
    normalize_phone,
    normalize_postcode,
    normalize_username,
    parse_date,
    parse_sex,
)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("8 (701) 123-45-67", "+77011234567"),
        ("+7 701 1234567", "+77011234567"),
        ("77011234567", "+77011234567"),
        ("87011234567", "+77011234567"),
        ("7011234567", "+77011234567"),
        ("+7(727)250-00-00", "+77272500000"),  # Almaty landline
        ("8 7172 55 55 55", "+77172555555"),  # Astana landline
        ("  +7 701 123 45 67  ", "+77011234567"),
        ("+7.701.123.45.67", "+77011234567"),
        ("+49 30 1234567", "+49301234567"),
        ("0049 30 1234567", "+49301234567"),
        ("8 10 49 30 1234567", "+49301234567"),  # Kazakh international prefix
    ],
)
def test_phone_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "call me",
        "+7 701 123 45 6",  # 9 national digits
        "+7 701 123 45 678",  # 11 national digits
        "8 (701) 123-45-67 ext 5",
        "+7 (001) 123 45 67",  # national number cannot start with 0
        "++77011234567",
        "12345",
        "+1234",
        "701-12",
        "８７０１１２３４５６７",  # full-width digits
    ],
)
def test_phone_garbage_rejected_with_field(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        normalize_phone(raw, field="home_phone")
    assert exc.value.field == "home_phone"
    assert "phone" in exc.value.message


def test_foreign_phone_can_be_refused() -> None:
    with pytest.raises(ValidationError, match=r"\+7"):
        normalize_phone("+49 30 1234567", allow_foreign=False)


def test_phone_not_text() -> None:
    with pytest.raises(ValidationError) as exc:
        normalize_phone(77011234567)
    assert exc.value.field == "mobile_phone"


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("050012", "050012"),
        ("010000", "010000"),
        ("A01P3K4", "A01P3K4"),
        ("a01p3k4", "A01P3K4"),
        (" x41 d8m0 ", "X41D8M0"),
        ("Z05T3E0", "Z05T3E0"),
    ],
)
def test_postcodes(raw: str, norm: str) -> None:
    assert normalize_postcode(raw) == norm


@pytest.mark.parametrize("raw", ["", "05001", "0500123", "A1P3K4", "AB1P3K4", "A01P3K", "Ә01P3K4",
                                 "A01-P3K4", "１２３４５６"])  # fmt: skip
def test_bad_postcodes(raw: str) -> None:
    with pytest.raises(ValidationError) as exc:
        normalize_postcode(raw, field="residence_address.postcode")
    assert exc.value.field == "residence_address.postcode"


TODAY = date(2026, 11, 26)


def test_dates() -> None:
    assert parse_date("2020-02-29", field="d") == date(2020, 2, 29)
    assert parse_date(date(2020, 1, 1), field="d") == date(2020, 1, 1)
    assert parse_date("2026-11-26", field="d", not_future=True, today=TODAY) == TODAY


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("2021-02-29", "real calendar date"),
        ("20200101", "YYYY-MM-DD"),
        ("2020-W01-1", "YYYY-MM-DD"),
        ("01.02.2020", "YYYY-MM-DD"),
        ("2020-1-1", "YYYY-MM-DD"),
        ("", "required"),
        (20200101, "YYYY-MM-DD"),
        (datetime(2020, 1, 1), "YYYY-MM-DD"),
        ("1700-01-01", "before"),
    ],
)
def test_bad_dates(raw: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as exc:
        parse_date(raw, field="id_document.issue_date")
    assert exc.value.field == "id_document.issue_date"


def test_future_date_refused_only_when_asked() -> None:
    assert parse_date("2026-11-27", field="d", today=TODAY) == date(2026, 11, 27)
    with pytest.raises(ValidationError, match="future"):
        parse_date("2026-11-27", field="d", not_future=True, today=TODAY)


def test_sex() -> None:
    assert parse_sex("m") == "M"
    assert parse_sex(" Female ") == "F"
    with pytest.raises(ValidationError):
        parse_sex("x")


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("ivan.ivanov", "ivan.ivanov"),
        ("  Ivan.Ivanov ", "ivan.ivanov"),
        ("a_b-c.d", "a_b-c.d"),
        ("abc", "abc"),
        ("x" * 64, "x" * 64),
        ("agent007", "agent007"),
        ("informatics", "informatics"),  # starts like "info" but is not reserved
    ],
)
def test_usernames_ok(raw: str, norm: str) -> None:
    assert normalize_username(raw) == norm


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("", "required"),
        ("ab", "3 to 64"),
        ("x" * 65, "3 to 64"),
        (".ivan", "start and end"),
        ("ivan.", "start and end"),
        ("-ivan", "start and end"),
        ("ivan..ivanov", "two dots"),
        ("иван", "Latin"),
        ("ivan ivanov", "Latin"),
        ("ivan+tag", "Latin"),
        ("ivan@mail", "Latin"),
        ("\u212aate", "Latin"),  # KELVIN SIGN lower-cases to ASCII "k"
        ("postmaster", "reserved"),
        ("PostMaster", "reserved"),
        ("mailer-daemon", "reserved"),
        ("mailer.daemon", "reserved"),
        ("post_master", "reserved"),
        ("abuse", "reserved"),
        ("hostmaster", "reserved"),
        ("webmaster", "reserved"),
        ("noreply", "reserved"),
        ("no-reply", "reserved"),
        ("007", "digits only"),  # looks like a number, not a name
        ("870322400007", "digits only"),  # someone's IIN
        ("8703.2240.0007", "digits only"),
        ("iin870322400007", "12 digits"),
    ],
)
def test_usernames_refused(raw: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as exc:
        normalize_username(raw)
    assert exc.value.field == "username"


@pytest.mark.parametrize("name", sorted(DEFAULT_RESERVED_NAMES))
def test_every_default_reserved_name_is_refused(name: str) -> None:
    assert is_reserved_name(name)
    if len(name) >= 3:
        with pytest.raises(ValidationError, match="reserved"):
            normalize_username(name)


def test_rfc2142_names_are_in_the_default_list() -> None:
    rfc2142 = {"info", "marketing", "sales", "support", "abuse", "noc", "security", "postmaster",
               "hostmaster", "usenet", "news", "webmaster", "www", "uucp", "ftp"}  # fmt: skip
    assert rfc2142 <= DEFAULT_RESERVED_NAMES
    assert {"mailer-daemon", "root", "admin"} <= DEFAULT_RESERVED_NAMES


def test_operator_reserved_list() -> None:
    assert normalize_username("akimat") == "akimat"
    with pytest.raises(ValidationError, match="reserved"):
        normalize_username("akimat", reserved={"Akimat "})
    with pytest.raises(ValidationError, match="reserved"):
        normalize_username("ak.imat", reserved={"akimat"})


def test_person_names() -> None:
    assert clean_person_name("  Серікқызы ", field="patronymic") == "Серікқызы"
    assert clean_person_name("Жан-Поль", field="given_name") == "Жан-Поль"
    assert clean_person_name("O'Brien", field="surname") == "O'Brien"
    # NFD input (е + combining diaeresis) becomes NFC ё
    assert clean_person_name("Фе\u0308доров", field="surname") == "Фёдоров"
    assert clean_person_name("Ivan   Ivanovich", field="given_name") == "Ivan Ivanovich"
    for bad in ("Ivan2", "---", "Ив<ан>", "Iv\u200ban", "A\x00B"):
        with pytest.raises(ValidationError) as exc:
            clean_person_name(bad, field="surname")
        assert exc.value.field == "surname"


def test_clean_text() -> None:
    assert clean_text(" ТОО  «Ромашка-2» ", field="name") == "ТОО «Ромашка-2»"
    with pytest.raises(ValidationError, match="at most"):
        clean_text("x" * 21, field="house", max_len=20)
    with pytest.raises(ValidationError, match="control"):
        clean_text("a\tb\x07", field="street")
