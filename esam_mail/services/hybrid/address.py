"""The address block at the top of a hybrid letter's text/plain body.

Format (documented for senders; keys are case-insensitive, English, Russian or Kazakh)::

    To: Серікбаев Асқар Нұрланұлы
    Street: ул. Абая
    House: 12А
    Apartment: 5
    Locality: Алматы
    Postcode: A01P3K4
    ---
    Құрметті Асқар Нұрланұлы! ...

* The block starts at the first non-blank line of the body and ends at the first
  blank line or at a line of three or more dashes (``---``).  Everything after the
  terminator is the letter text (leading blank lines removed).
* Every line of the block is ``Key: value``; one key per line, each key at most once.

=============  ===================================================  =========================
field          keys (any of)                                        rule
=============  ===================================================  =========================
name           To, Name, Recipient, Кому, Получатель, Кімге,        required
               Алушы
street         Street, Улица, Көше, Мкр, Микрорайон, Шағынаудан     required (street or мкр.)
house          House, Дом, Үй                                       required, free text (12/3)
apartment      Apartment, Apt, Flat, Кв, Квартира, Пәтер            optional
locality       Locality, City, Town, Village, Населённый пункт,     required
               Город, Село, Елді мекен, Қала, Ауыл
district       District, Район, Аудан                               optional
region         Region, Oblast, Область, Облыс                       required unless the locality
                                                                    is Astana, Almaty or Shymkent
postcode       Postcode, Postal code, Zip, Индекс, Почтовый индекс, required; ``NNNNNN`` (legacy)
               Пошта индексі                                        or ``A01P3K4`` (2015 codes)
country        Country, Страна, Ел, Мемлекет                        optional, default Kazakhstan
=============  ===================================================  =========================

International letters (UPU style): with a ``Country:`` other than Kazakhstan, the address
needs name, street (the house number may be part of it), locality and country; no region;
the postcode is required when the country uses postcodes and must have that country's
format (:mod:`.countries`, documented in ``docs/hybrid.md``).  The printed address ends with
the country's English name in capitals, the postcode placed as that country writes it
(``10115 BERLIN``, ``LONDON SW1A 1AA``).

Validation collects *every* problem (field name + what to fix) into one
:class:`~esam_mail.services.hybrid.errors.AddressError`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from esam_mail.services.hybrid.countries import COUNTRIES, find_country, is_domestic
from esam_mail.services.hybrid.errors import AddressError, AddressProblem

__all__ = [
    "CITIES_OF_REPUBLICAN_SIGNIFICANCE",
    "FIELD_ALIASES",
    "ParsedLetter",
    "PostalAddress",
    "is_republican_city",
    "normalize_postcode",
    "parse_letter",
]

#: canonical field -> accepted keys (compared after :func:`_norm_key`).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("to", "name", "recipient", "кому", "получатель", "адресат", "кімге", "алушы"),
    "street": ("street", "улица", "көше", "мкр", "микрорайон", "шағынаудан"),
    "house": ("house", "house number", "дом", "үй"),
    "apartment": ("apartment", "apt", "flat", "кв", "квартира", "пәтер"),
    "locality": (
        "locality", "city", "town", "village", "населенный пункт", "город", "село",
        "елді мекен", "қала", "ауыл",
    ),
    "district": ("district", "район", "аудан"),
    "region": ("region", "oblast", "область", "облыс"),
    "postcode": (
        "postcode", "postal code", "post code", "zip", "индекс", "почтовый индекс",
        "пошта индексі",
    ),
    "country": ("country", "страна", "ел", "мемлекет"),
}
REQUIRED = ("name", "street", "house", "locality", "postcode")

#: Localities that need no region (cities of republican significance), normalized spellings.
CITIES_OF_REPUBLICAN_SIGNIFICANCE: frozenset[str] = frozenset(
    {"astana", "астана", "nur-sultan", "нур-султан", "нұр-сұлтан",
     "almaty", "алматы", "shymkent", "шымкент"}
)
_CITY_PREFIX = re.compile(r"^(г\.|город|қ\.|қаласы|city of)\s*", re.IGNORECASE)
_CITY_SUFFIX = re.compile(r"\s*(қаласы|қ\.|city)$", re.IGNORECASE)

POSTCODE_RE = re.compile(r"^\d{6}$|^[A-Z]\d{2}[A-Z0-9]{4}$")
MAX_FIELD_LEN = 120
_TERMINATOR = re.compile(r"^\s*-{3,}\s*$")
_MISSING_HINT = {
    "name": "add a line 'To: <recipient name>' (or 'Кому: ...')",
    "street": "add a line 'Street: ...' (or 'Улица: ...'; a microdistrict: 'Street: мкр. Самал-2')",
    "house": "add a line 'House: <number>' (or 'Дом: 12/3')",
    "locality": "add a line 'Locality: <city, town or village>' (or 'Населённый пункт: ...')",
    "postcode": "add a line 'Postcode: 050012' or 'Postcode: A01P3K4' (or 'Индекс: ...')",
}
_MICRODISTRICT_KEYS = frozenset({"мкр", "микрорайон", "шағынаудан"})
_KEY_TO_FIELD = {alias: field for field, aliases in FIELD_ALIASES.items() for alias in aliases}


def _norm_key(key: str) -> str:
    k = unicodedata.normalize("NFC", key).casefold().replace("ё", "е")
    k = re.sub(r"[\s_]+", " ", k).strip().rstrip(".").strip()
    return k


def normalize_postcode(value: str) -> str:
    """Upper-case the postcode and drop spaces (``"a01 p3k4"`` -> ``"A01P3K4"``)."""
    return re.sub(r"\s+", "", value).upper()


def is_republican_city(locality: str, cities: frozenset[str] | None = None) -> bool:
    """True for Astana, Almaty, Shymkent in any spelling (``г. Алматы``, ``Алматы қ.``).

    Args:
        locality: the locality as written.
        cities: lower-case spellings; default :data:`CITIES_OF_REPUBLICAN_SIGNIFICANCE`.
    """
    loc = _CITY_SUFFIX.sub("", _CITY_PREFIX.sub("", locality.strip())).casefold()
    return loc in (CITIES_OF_REPUBLICAN_SIGNIFICANCE if cities is None else cities)


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """A validated Kazakh postal address (fields as written by the sender, trimmed)."""

    name: str
    street: str
    house: str
    locality: str
    postcode: str
    apartment: str = ""
    district: str = ""
    region: str = ""
    country: str = ""
    country_code: str = ""  # ISO 3166-1 alpha-2 of an international address ("" = Kazakhstan)

    def lines(self) -> list[str]:
        """Address lines in Kazpost order: name; street house apt; locality district; region;
        country; postcode.  International: UPU order, the country in capitals last."""
        if self.country_code and self.country_code != "KZ":
            return self._international_lines()
        street_line = f"{self.street}, {self.house}"
        if self.apartment:
            apt = self.apartment
            street_line += f", {apt}" if re.match(r"^\D", apt) else f", кв. {apt}"
        locality_line = self.locality + (f", {self.district}" if self.district else "")
        out = [self.name, street_line, locality_line]
        if self.region:
            out.append(self.region)
        if self.country:
            out.append(self.country)
        out.append(self.postcode)
        return out

    def _international_lines(self) -> list[str]:
        country = COUNTRIES[self.country_code]
        street_line = " ".join(p for p in (self.street, self.house) if p)
        if self.apartment:
            street_line += f", {self.apartment}"
        out = [self.name, street_line]
        if self.district:
            out.append(self.district)
        locality = self.locality.upper()
        if not self.postcode:
            out.append(locality)
        elif country.order == "postcode_first":
            out.append(f"{self.postcode} {locality}")
        elif country.order == "locality_first":
            out.append(" ".join(p for p in (locality, self.region.upper(), self.postcode) if p))
        else:
            out += [locality, self.postcode]
        if self.region and country.order != "locality_first":
            out.append(self.region)
        out.append(country.name.upper())
        return out

    def one_line(self) -> str:
        """All lines joined with ``", "`` (for manifests and logs)."""
        return ", ".join(self.lines())

    def to_dict(self) -> dict[str, str]:
        """Plain dict of the fields (for JSON manifests)."""
        return {f: getattr(self, f) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class ParsedLetter:
    """The result of :func:`parse_letter`: the address and the letter text after the block."""

    address: PostalAddress
    text: str


def _problem(field: str, message: str) -> AddressProblem:
    return AddressProblem(field, message)


def _international(values: dict[str, str], country: Any, problems: list[AddressProblem], text: str) -> ParsedLetter:
    """The rest of :func:`parse_letter` for an address abroad (UPU style)."""
    for field, value in values.items():
        if len(value) > MAX_FIELD_LEN:
            problems.append(_problem(field, f"too long ({len(value)} characters); shorten to {MAX_FIELD_LEN}"))
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            problems.append(_problem(field, "contains control characters; remove them"))
    postcode = " ".join(values.get("postcode", "").upper().split())
    if country.postcode is None:
        postcode = ""  # the country has no postcodes: nothing to print
    elif not postcode:
        problems.append(_problem("postcode", f"missing; {country.name} uses postcodes like {country.example}"))
    elif not country.postcode_ok(postcode):
        problems.append(_problem(
            "postcode", f"{values['postcode']!r} is not a postcode of {country.name}; write it like {country.example}"
        ))
    if problems:
        raise AddressError(problems)
    return ParsedLetter(PostalAddress(
        name=values["name"], street=values["street"], house=values.get("house", ""),
        locality=values["locality"], postcode=postcode, apartment=values.get("apartment", ""),
        district=values.get("district", ""), region=values.get("region", ""), country=country.name,
        country_code=country.code,
    ), text)


def parse_letter(body: str, *, republican_cities: Iterable[str] | None = None) -> ParsedLetter:
    """Parse the address block at the top of ``body`` and validate it.

    Args:
        body: the decoded text/plain body of the e-mail.
        republican_cities: override of :data:`CITIES_OF_REPUBLICAN_SIGNIFICANCE`
            (lower-case spellings) when the list of cities changes.

    Returns:
        the address and the remaining letter text.

    Raises:
        AddressError: listing every problem (field name and what to fix).
    """
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines):
        lines[i] = lines[i].lstrip("\ufeff")
    values: dict[str, str] = {}
    problems: list[AddressProblem] = []
    block_lines = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        if not raw.strip() or _TERMINATOR.match(raw):
            break
        block_lines += 1
        key, sep, value = raw.partition(":")
        field = _KEY_TO_FIELD.get(_norm_key(key)) if sep else None
        if field is None:
            shown = raw.strip()[:40]
            problems.append(_problem(
                f"line {block_lines}",
                f"{shown!r} is not an address line; write 'Key: value' with a key such as "
                "To/Кому, Street/Улица, House/Дом, Apartment/Кв., Locality/Населённый пункт, "
                "Region/Область, Postcode/Индекс, then a blank line or '---' before the letter",
            ))
            continue
        value = " ".join(value.split())
        if field in values:
            problems.append(_problem(field, f"given twice ({key.strip()!r}); keep one line"))
            continue
        if _norm_key(key) in _MICRODISTRICT_KEYS and value:
            value = f"мкр. {value}"
        values[field] = value
    text = "\n".join(lines[i:]).lstrip("\n").rstrip()

    if block_lines == 0:
        raise AddressError([_problem(
            "address",
            "no address block found; start the message with lines like 'To: <name>', "
            "'Street: ...', 'House: ...', 'Locality: ...', 'Postcode: ...' and a blank line",
        )])

    country = find_country(values.get("country", "")) if values.get("country") else None
    international = bool(values.get("country")) and not is_domestic(values["country"])
    if international and country is None:
        problems.append(_problem(
            "country",
            f"{values['country']!r} is not a destination we know; write the country's name in English "
            "(e.g. Germany) or its ISO code (DE); see the list of countries in the hybrid mail guide",
        ))
    required = ("name", "street", "locality") if international else REQUIRED
    for field in required:
        if not values.get(field):
            problems.append(_problem(field, f"missing; {_MISSING_HINT[field]}"))
    if international:
        if country is None:
            raise AddressError(problems)
        return _international(values, country, problems, text)
    for field, value in values.items():
        if len(value) > MAX_FIELD_LEN:
            problems.append(
                _problem(field, f"too long ({len(value)} characters); shorten to {MAX_FIELD_LEN}")
            )
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            problems.append(_problem(field, "contains control characters; remove them"))

    postcode = normalize_postcode(values.get("postcode", ""))
    if postcode and not POSTCODE_RE.match(postcode):
        problems.append(_problem(
            "postcode",
            f"{values['postcode']!r} is not a Kazakh postcode; write 6 digits (e.g. 050012) "
            "or the 7-character code (e.g. A01P3K4)",
        ))
    locality = values.get("locality", "")
    cities = (
        frozenset(c.casefold() for c in republican_cities)
        if republican_cities is not None else CITIES_OF_REPUBLICAN_SIGNIFICANCE
    )
    if locality and not values.get("region") and not is_republican_city(locality, cities):
        problems.append(_problem(
            "region",
            f"missing; add 'Region: ...' (Область/Облыс) for {locality!r} "
            "(only Astana, Almaty and Shymkent need no region)",
        ))
    if problems:
        raise AddressError(problems)
    addr = PostalAddress(
        name=values["name"], street=values["street"], house=values["house"],
        locality=locality, postcode=postcode, apartment=values.get("apartment", ""),
        district=values.get("district", ""), region=values.get("region", ""),
        country=values.get("country", ""),
    )
    return ParsedLetter(addr, text)
