"""IIN/BIN checksum and structure: the vectors of domain.md section 1 (para. 13)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from esam_mail.errors import ValidationError
from esam_mail.services.accounts.identity import (
    checksum_ok,
    kz_check_digit,
    validate_bin,
    validate_iin,
)

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("iin", "born", "sex"),
    [
        ("791028302728", date(1979, 10, 28), "M"),
        ("061211600012", date(2006, 12, 11), "F"),
        ("900101300811", date(1990, 1, 1), "M"),  # needs the 2nd (W2) pass
        ("990106300596", date(1999, 1, 6), "M"),
    ],
)
def test_valid_iins_parse_birth_date_and_sex(iin: str, born: date, sex: str) -> None:
    parsed = validate_iin(iin)
    assert (parsed.value, parsed.birth_date, parsed.sex) == (iin, born, sex)


def test_iin_second_pass_is_needed_for_900101300811() -> None:
    first = sum(int(c) * w for c, w in zip("90010130081", range(1, 12), strict=True)) % 11
    assert first == 10
    assert kz_check_digit("90010130081") == 1


def test_iin_blanks_are_ignored() -> None:
    assert validate_iin(" 900 101 300 811 ").value == "900101300811"


@pytest.mark.parametrize("iin", ["791028302729", "061211600013"])
def test_iins_with_wrong_check_digit(iin: str) -> None:
    with pytest.raises(ValidationError, match="check digit") as exc:
        validate_iin(iin)
    assert exc.value.field == "iin"


@pytest.mark.parametrize("iin", ["123456789012", "123456789011"])
def test_sequence_numbers_are_not_iins(iin: str) -> None:
    """123456789011 is the IIN of NCA RK *test* certificates (domain.md s. 2)."""
    assert not checksum_ok(iin)
    with pytest.raises(ValidationError) as exc:
        validate_iin(iin)
    assert exc.value.field == "iin"


@pytest.mark.parametrize("x", "0123456789")
def test_prefix_90010130080_has_no_valid_completion(x: str) -> None:
    assert kz_check_digit("90010130080") is None
    assert not checksum_ok("90010130080" + x)
    with pytest.raises(ValidationError, match="no number can start with") as exc:
        validate_iin("90010130080" + x)
    assert exc.value.field == "iin"


def test_all_zeros_passes_checksum_but_not_structure() -> None:
    assert checksum_ok("000000000000")
    with pytest.raises(ValidationError) as exc:
        validate_iin("000000000000")
    assert exc.value.field == "iin"
    with pytest.raises(ValidationError) as exc:
        validate_bin("000000000000")
    assert exc.value.field == "bin"


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("", "required"),
        ("   ", "required"),
        ("12345", "12 digits"),
        ("12345678901X", "12 digits"),
        ("١٢٣٤٥٦٧٨٩٠١٢", "12 digits"),  # Arabic-Indic digits are not ASCII
        ("9001013008111", "12 digits"),
    ],
)
def test_iin_format_errors(value: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        validate_iin(value)


def test_iin_not_text() -> None:
    with pytest.raises(ValidationError, match="text") as exc:
        validate_iin(900101300811, field="representative.iin")
    assert exc.value.field == "representative.iin"


def _with_check(first11: str) -> str:
    check = kz_check_digit(first11)
    assert check is not None, first11
    return first11 + str(check)


def _some_valid(prefix7: str) -> str:
    """A checksum-valid number starting with ``prefix7``."""
    for serial in range(10000):
        first11 = f"{prefix7}{serial:04d}"
        if kz_check_digit(first11) is not None:
            return _with_check(first11)
    raise AssertionError(prefix7)


@pytest.mark.parametrize("seventh", "0789")
def test_unusual_seventh_digit_rejected_by_default_accepted_on_request(seventh: str) -> None:
    iin = _some_valid("900101" + seventh)
    with pytest.raises(ValidationError, match="7th digit"):
        validate_iin(iin)
    parsed = validate_iin(iin, allow_unusual_century=True)
    assert parsed.birth_date is None and parsed.sex is None


def test_unusual_seventh_digit_still_needs_month_and_day() -> None:
    with pytest.raises(ValidationError, match="month and day"):
        validate_iin(_some_valid("901301" + "0"), allow_unusual_century=True)


@pytest.mark.parametrize(
    ("prefix7", "why"),
    [
        ("901301" + "3", "month 13"),
        ("900230" + "3", "30 Feb"),
        ("010229" + "3", "1901 is not a leap year"),
        ("000229" + "1", "1800 is not a leap year"),
        ("900100" + "3", "day 0"),
    ],
)
def test_iin_birth_date_must_be_real(prefix7: str, why: str) -> None:
    with pytest.raises(ValidationError, match="birth date"):
        validate_iin(_some_valid(prefix7))


def test_iin_leap_day_2000() -> None:
    assert validate_iin(_some_valid("000229" + "5")).birth_date == date(2000, 2, 29)


@pytest.mark.parametrize(
    ("seventh", "century", "sex"),
    [("1", 1800, "M"), ("2", 1800, "F"), ("3", 1900, "M"), ("4", 1900, "F"), ("5", 2000, "M"),
     ("6", 2000, "F")],
)  # fmt: skip
def test_seventh_digit_century_and_sex(seventh: str, century: int, sex: str) -> None:
    parsed = validate_iin(_some_valid("450615" + seventh))
    assert parsed.birth_date == date(century + 45, 6, 15)
    assert parsed.sex == sex


@pytest.mark.parametrize("bin_", ["940140000385", "990140004654", "011140001654", "230540004989"])
def test_valid_bins(bin_: str) -> None:
    parsed = validate_bin(bin_)
    assert parsed.value == bin_
    assert parsed.entity_type == "resident"
    assert parsed.attribute == "head_office"


def test_bin_parts() -> None:
    parsed = validate_bin("181141900093")
    assert parsed.registration_year == "18"
    assert parsed.registration_month == 11
    assert parsed.attribute == "branch"


def test_bin_011140001654_needs_second_pass() -> None:
    first = sum(int(c) * w for c, w in zip("01114000165", range(1, 12), strict=True)) % 11
    assert first == 10
    assert checksum_ok("011140001654")


@pytest.mark.parametrize(
    ("bin_", "match"),
    [
        ("940140000386", "check digit"),
        ("123456789012", "month"),
        ("949940000385", "month"),
    ],
)
def test_invalid_bins(bin_: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as exc:
        validate_bin(bin_)
    assert exc.value.field == "bin"


@pytest.mark.parametrize(
    ("prefix7", "match"),
    [
        ("940040" + "0", "month"),
        ("941340" + "0", "month"),
        ("940130" + "0", "5th digit"),
        ("940170" + "0", "5th digit"),
        ("940144" + "0", "6th digit"),
        ("940149" + "0", "6th digit"),
    ],
)
def test_bin_structure(prefix7: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        validate_bin(_some_valid(prefix7))


def test_bin_types_and_attributes() -> None:
    assert validate_bin(_some_valid("150550" + "0")).entity_type == "non_resident"
    assert validate_bin(_some_valid("150563" + "0")).entity_type == "joint_ip"
    assert validate_bin(_some_valid("150563" + "0")).attribute == "peasant_farm"
    assert validate_bin(_some_valid("150542" + "0")).attribute == "representative_office"


def test_public_bin_list_all_valid_and_some_need_second_pass() -> None:
    """The 270 public BINs of python-stdnum PR #322 (domain.md section 1)."""
    numbers = [
        line.strip()
        for line in (DATA / "public_bins.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(numbers) == 270
    assert [n for n in numbers if not checksum_ok(n)] == []
    for n in numbers:
        validate_bin(n)
    second_pass = [
        n for n in numbers
        if sum(int(c) * w for c, w in zip(n[:11], range(1, 12), strict=True)) % 11 == 10
    ]  # fmt: skip
    assert len(second_pass) == 22
