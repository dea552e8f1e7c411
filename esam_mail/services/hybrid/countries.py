"""Destination countries of international hybrid letters and their postcode formats.

UPU practice (Convention regulations, art. RL 122; UPU S42 address elements): an
international address ends with the destination country's name on the last line, in
capitals, in a language known in the country of dispatch (English here); the postcode is
written where the destination country's own format puts it.  This table lists the countries
letters are commonly sent to from Kazakhstan: the names a sender may write (English,
Russian, Kazakh, the ISO 3166-1 alpha-2 code), the postcode pattern (``None``: the country
has no postcodes), and where the postcode stands relative to the locality.

``docs/hybrid.md`` shows the same table for senders.  A country not in the table is refused
with a message that says so (the operator adds it here); Kazakhstan itself is the domestic
format of :mod:`.address`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

__all__ = ["COUNTRIES", "Country", "find_country", "is_domestic"]

Order = Literal["postcode_first", "locality_first", "line_after"]


@dataclass(frozen=True, slots=True)
class Country:
    """One destination country."""

    code: str  # ISO 3166-1 alpha-2
    name: str  # English, printed in capitals on the last line
    postcode: str | None  # regular expression of the postcode (after upper-casing), None: none used
    example: str  # an example postcode for error messages ("" if none)
    order: Order  # "10115 BERLIN", "LONDON SW1A 1AA", or the postcode on its own line
    aliases: tuple[str, ...] = ()  # Russian, Kazakh and other spellings

    def postcode_ok(self, postcode: str) -> bool:
        return self.postcode is not None and re.fullmatch(self.postcode, postcode) is not None


_C = Country
#: ISO code -> country (the documented table).
COUNTRIES: dict[str, Country] = {c.code: c for c in (
    _C("KZ", "Kazakhstan", r"\d{6}|[A-Z]\d{2}[A-Z0-9]{4}", "050012", "line_after",
       ("казахстан", "қазақстан", "республика казахстан", "qazaqstan")),
    _C("RU", "Russian Federation", r"\d{6}", "101000", "line_after",
       ("russia", "россия", "ресей", "российская федерация", "рф")),
    _C("KG", "Kyrgyzstan", r"\d{6}", "720000", "line_after", ("кыргызстан", "киргизия", "қырғызстан")),
    _C("UZ", "Uzbekistan", r"\d{6}", "100000", "line_after", ("узбекистан", "өзбекстан")),
    _C("TJ", "Tajikistan", r"\d{6}", "734000", "line_after", ("таджикистан", "тәжікстан")),
    _C("TM", "Turkmenistan", r"\d{6}", "744000", "line_after", ("туркменистан", "түрікменстан")),
    _C("BY", "Belarus", r"\d{6}", "220030", "line_after", ("беларусь", "белоруссия")),
    _C("UA", "Ukraine", r"\d{5}", "01001", "postcode_first", ("украина", "украина")),
    _C("AZ", "Azerbaijan", r"AZ ?\d{4}", "AZ 1000", "postcode_first", ("азербайджан", "әзірбайжан")),
    _C("AM", "Armenia", r"\d{4}", "0010", "postcode_first", ("армения",)),
    _C("GE", "Georgia", r"\d{4}", "0105", "postcode_first", ("грузия",)),
    _C("MN", "Mongolia", r"\d{5}", "14200", "locality_first", ("монголия",)),
    _C("CN", "China", r"\d{6}", "100000", "locality_first", ("китай", "қытай", "кнр")),
    _C("TR", "Turkey", r"\d{5}", "06100", "postcode_first", ("турция", "түркия", "türkiye")),
    _C("DE", "Germany", r"\d{5}", "10115", "postcode_first", ("германия", "германия", "deutschland")),
    _C("FR", "France", r"\d{5}", "75008", "postcode_first", ("франция",)),
    _C("IT", "Italy", r"\d{5}", "00184", "postcode_first", ("италия",)),
    _C("ES", "Spain", r"\d{5}", "28013", "postcode_first", ("испания",)),
    _C("NL", "Netherlands", r"\d{4} ?[A-Z]{2}", "1012 JS", "postcode_first", ("нидерланды", "голландия")),
    _C("BE", "Belgium", r"\d{4}", "1000", "postcode_first", ("бельгия",)),
    _C("CH", "Switzerland", r"\d{4}", "3003", "postcode_first", ("швейцария",)),
    _C("AT", "Austria", r"\d{4}", "1010", "postcode_first", ("австрия",)),
    _C("PL", "Poland", r"\d{2}-\d{3}", "00-950", "postcode_first", ("польша",)),
    _C("CZ", "Czechia", r"\d{3} ?\d{2}", "110 00", "postcode_first", ("чехия", "czech republic")),
    _C("SE", "Sweden", r"\d{3} ?\d{2}", "114 55", "postcode_first", ("швеция",)),
    _C("FI", "Finland", r"\d{5}", "00100", "postcode_first", ("финляндия",)),
    _C("NO", "Norway", r"\d{4}", "0150", "postcode_first", ("норвегия",)),
    _C("DK", "Denmark", r"\d{4}", "1050", "postcode_first", ("дания",)),
    _C("GB", "United Kingdom", r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}", "SW1A 1AA", "locality_first",
       ("uk", "great britain", "england", "великобритания", "англия", "ұлыбритания")),
    _C("IE", "Ireland", r"[A-Z]\d{2} ?[A-Z\d]{4}", "D02 X285", "locality_first", ("ирландия",)),
    _C("US", "United States of America", r"\d{5}(-\d{4})?", "20500", "locality_first",
       ("usa", "united states", "сша", "америка", "ақш")),
    _C("CA", "Canada", r"[A-Z]\d[A-Z] ?\d[A-Z]\d", "K1A 0B1", "locality_first", ("канада",)),
    _C("JP", "Japan", r"\d{3}-?\d{4}", "100-0001", "postcode_first", ("япония", "жапония")),
    _C("KR", "Republic of Korea", r"\d{5}", "03051", "postcode_first",
       ("korea", "south korea", "корея", "южная корея", "оңтүстік корея")),
    _C("IN", "India", r"\d{6}", "110001", "locality_first", ("индия", "үндістан")),
    _C("IL", "Israel", r"\d{7}", "9100001", "locality_first", ("израиль",)),
    _C("AE", "United Arab Emirates", None, "", "locality_first", ("uae", "оаэ", "эмираты", "баә")),
    _C("AU", "Australia", r"\d{4}", "2600", "locality_first", ("австралия",)),
)}

_BY_NAME: dict[str, Country] = {}
for _c in COUNTRIES.values():
    for _n in (_c.code, _c.name, *_c.aliases):
        _BY_NAME.setdefault(unicodedata.normalize("NFC", _n).casefold().replace("ё", "е"), _c)


def _key(text: str) -> str:
    key = unicodedata.normalize("NFC", " ".join(text.split())).casefold().replace("ё", "е")
    return key.strip(" .").removeprefix("the ")


def find_country(text: str) -> Country | None:
    """The country written as *text* (English, Russian or Kazakh name, or ISO code), if known."""
    return _BY_NAME.get(_key(text))


def is_domestic(text: str) -> bool:
    """True when *text* is empty or names Kazakhstan."""
    return not text.strip() or ((c := find_country(text)) is not None and c.code == "KZ")
