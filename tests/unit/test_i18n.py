"""Every catalogue domain is complete in Kazakh and Russian, and placeholders agree."""

from __future__ import annotations

import string

import pytest
from babel.messages.pofile import read_po

from esam_mail import i18n


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _catalog(lang: str, domain: str):
    path = i18n.LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"
    assert path.exists(), f"{domain}: no {lang} catalogue at {path}"
    with path.open("rb") as fh:
        return read_po(fh, locale=lang, domain=domain)


@pytest.mark.parametrize("domain", i18n.domains())
@pytest.mark.parametrize("lang", ["kk", "ru"])
def test_catalogue_complete_and_placeholders_agree(domain: str, lang: str) -> None:
    catalog = _catalog(lang, domain)
    problems = []
    for msg in catalog:
        if not msg.id:
            continue
        ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
        strs = msg.string if isinstance(msg.string, tuple) else (msg.string,)
        if msg.fuzzy or not all(strs):
            problems.append(f"untranslated: {ids[0]!r}")
            continue
        wanted = _fields(ids[-1])
        for s in strs:
            if _fields(s) - wanted - {"n"}:
                problems.append(f"unknown placeholder in {s!r} for {ids[0]!r}")
    assert not problems, f"{lang}/{domain}.po:\n" + "\n".join(problems)


@pytest.mark.parametrize("domain", i18n.domains())
def test_same_msgids_in_kazakh_and_russian(domain: str) -> None:
    kk = {m.id for m in _catalog("kk", domain) if m.id}
    ru = {m.id for m in _catalog("ru", domain) if m.id}
    assert kk == ru, f"{domain}: only kk {sorted(map(str, kk - ru))}, only ru {sorted(map(str, ru - kk))}"


def test_lookup_plural_and_fallback() -> None:
    assert i18n.gettext("common", "ru", "Language") == "Язык"
    assert i18n.gettext("common", "kk", "Language") == "Тіл"
    assert i18n.gettext("common", "en", "Language") == "Language"
    assert i18n.ngettext("common", "ru", "{n} message", "{n} messages", 5) == "5 писем"
    assert i18n.ngettext("common", "ru", "{n} message", "{n} messages", 22) == "22 письма"
    assert i18n.gettext("common", "ru", "not in any catalogue") == "not in any catalogue"
    _ = i18n.Translator("common", "ru-RU")
    assert _.lang == "ru" and _("Language") == "Язык"


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("ru-RU,ru;q=0.9,en;q=0.8", "ru"),
        ("en;q=0.5, kk;q=0.9", "kk"),
        ("de-DE,fr;q=0.9", i18n.DEFAULT_LANGUAGE),
        ("", i18n.DEFAULT_LANGUAGE),
        ("ru;q=0, en", "en"),
        ("ru;q=bogus, en;q=0.1", "en"),
        ("," * 100000 + "ru", i18n.DEFAULT_LANGUAGE),  # bounded: only the first entries are read
    ],
)
def test_negotiate(header: str, want: str) -> None:
    assert i18n.negotiate(header) == want
