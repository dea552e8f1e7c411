"""The address block at the top of the body: good and bad blocks."""

from __future__ import annotations

import pytest

from esam_mail.services.hybrid.address import parse_letter
from esam_mail.services.hybrid.errors import AddressError

from .conftest import LETTER


def test_parse_russian_block() -> None:
    p = parse_letter(LETTER)
    a = p.address
    assert (a.name, a.street, a.house, a.apartment) == (
        "Серікбаев Асқар Нұрланұлы", "ул. Абая", "12А", "5")
    assert (a.locality, a.postcode, a.region) == ("Алматы", "A01P3K4", "")
    assert p.text.startswith("Құрметті Асқар")
    assert a.lines() == [
        "Серікбаев Асқар Нұрланұлы", "ул. Абая, 12А, кв. 5", "Алматы", "A01P3K4"]


def test_parse_english_and_kazakh_keys_blank_line_terminator() -> None:
    body = (
        "\n\nto: Ivanov Ivan\nSTREET: Lenina\nHouse: 3/1\nLocality: Караганда\n"
        "Облыс: Қарағанды облысы\nAudan-less: x\n\nText"
    )
    with pytest.raises(AddressError) as e:
        parse_letter(body)
    assert [p.field for p in e.value.problems] == ["line 6", "postcode"]

    body = (
        "Кімге: Ахметова Әлия\nКөше: Тәуелсіздік даңғылы\nҮй: 7\nПәтер: 12\n"
        "Елді мекен: Қарағанды\nОблыс: Қарағанды облысы\nПошта индексі: 100 000\n\n"
        "Сәлем!\n\nЕкінші абзац."
    )
    p = parse_letter(body)
    assert p.address.postcode == "100000"
    assert p.address.region == "Қарағанды облысы"
    assert p.text == "Сәлем!\n\nЕкінші абзац."


def test_republican_cities_need_no_region() -> None:
    for city in ("Астана", "г. Алматы", "Shymkent", "Алматы қ."):
        body = f"To: A\nStreet: B\nHouse: 1\nLocality: {city}\nPostcode: 010000\n\nhi"
        assert parse_letter(body).address.region == ""


def test_microdistrict_key() -> None:
    body = "Кому: А\nМкр: Самал-2\nДом: 5\nГород: Алматы\nИндекс: 050000\n---\nx"
    assert parse_letter(body).address.street == "мкр. Самал-2"


def test_every_problem_is_reported_with_its_field() -> None:
    body = "Кому: \nДом: 1\nДом: 2\nНаселённый пункт: Костанай\nИндекс: 12-34\nfoo\n---\ntext"
    with pytest.raises(AddressError) as e:
        parse_letter(body)
    fields = [p.field for p in e.value.problems]
    assert set(fields) == {"house", "line 6", "name", "street", "postcode", "region"}
    by_field = {p.field: p.message for p in e.value.problems}
    assert "050012" in by_field["postcode"] and "A01P3K4" in by_field["postcode"]
    assert "Region" in by_field["region"]
    assert "given twice" in by_field["house"]
    assert e.value.field == "address"
    assert "street: missing" in str(e.value)


def test_no_block_at_all() -> None:
    with pytest.raises(AddressError) as e:
        parse_letter("\n\n")
    assert e.value.problems[0].field == "address"
    with pytest.raises(AddressError) as e:
        parse_letter("Hello, please print this letter.\n\nThanks")
    assert e.value.problems[0].field == "line 1"


@pytest.mark.parametrize("pc", ["050012", "A01P3K4", "x41d8m0", "Z05 T3E0"])
def test_postcode_formats_ok(pc: str) -> None:
    body = f"To: A\nStreet: B\nHouse: 1\nLocality: Астана\nPostcode: {pc}\n\n"
    assert parse_letter(body).address.postcode == pc.replace(" ", "").upper()


@pytest.mark.parametrize("pc", ["05001", "0500123", "AA1P3K4", "A1P3K4"])
def test_postcode_formats_bad(pc: str) -> None:
    body = f"To: A\nStreet: B\nHouse: 1\nLocality: Астана\nPostcode: {pc}\n\n"
    with pytest.raises(AddressError) as e:
        parse_letter(body)
    assert [p.field for p in e.value.problems] == ["postcode"]
