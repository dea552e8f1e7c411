"""Every catalogue domain is complete in Kazakh and Russian, and placeholders agree."""

from __future__ import annotations

import ast
import re
import string

import pytest
from babel.messages.extract import extract_from_file
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


# -- texts made below the front-ends (i18n.domain_message) ------------------------------------
ROOT = i18n.LOCALE_DIR.parent.parent
BOUND = re.compile(r"^(\w*M_)\s*=\s*(?:i18n\.)?domain_message\(\"(\w+)\"\)", re.M)


def bound_msgids() -> dict[str, dict[str, str]]:
    """``{domain: {msgid: where}}`` for every call of a ``M_ = domain_message("<domain>")`` maker
    in esam_mail (a service's ValidationError texts), found by extraction, not by import.  A
    module that imports a maker (``from esam_mail.services.accounts.identity import M_``) uses
    that module's domain."""
    files = sorted((ROOT / "esam_mail").rglob("*.py"))
    sources = {p: p.read_text(encoding="utf-8") for p in files}
    module = {".".join(p.relative_to(ROOT).with_suffix("").parts): p for p in files}
    own = {p: dict(BOUND.findall(src)) for p, src in sources.items()}
    found: dict[str, dict[str, str]] = {}
    for path, src in sources.items():
        makers = dict(own[path])
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.module in module:
                for alias in node.names:
                    domain = own[module[node.module]].get(alias.name)
                    if domain:
                        makers[alias.asname or alias.name] = domain
        for name, domain in makers.items():
            for lineno, msg, _c, _x in extract_from_file("python", str(path), keywords={name: None}):
                if msg:
                    found.setdefault(domain, {}).setdefault(msg, f"{path.relative_to(ROOT)}:{lineno}")
    return found


def test_bound_messages_are_translated_in_their_domain() -> None:
    found = bound_msgids()
    assert {"identity", "hybrid", "official", "web"} <= set(found), sorted(found)
    assert sum(map(len, found.values())) > 100, "the extraction found too little"
    problems = []
    for domain, used in sorted(found.items()):
        assert domain in i18n.domains(), f"no catalogue for domain {domain!r}"
        for lang in ("kk", "ru"):
            catalog = _catalog(lang, domain)
            for msgid, where in used.items():
                entry = catalog.get(msgid)
                if not (entry and entry.string and not entry.fuzzy):
                    problems.append(f"{lang}/{domain}.po lacks {msgid!r} ({where})")
    assert not problems, "\n".join(problems)


def test_message_is_english_and_says_itself_in_its_own_domain() -> None:
    M_ = i18n.domain_message("common")
    m = i18n.Message("{what} here", what=M_("Language"))
    assert str(m) == "Language here" and m.msgid == "{what} here"
    assert M_("Language").in_language("cli", "ru") == "Язык"  # its own domain, not the caller's
    assert m.in_language("common", "kk") == "Тіл here"  # a Message parameter is said too
    assert i18n.Message("Language").in_language("common", "ru") == "Язык"  # no domain: the caller's
