"""Texts a person reads, in Kazakh, Russian and English, through gettext catalogues.

Every subsystem keeps its own catalogue *domain* (``web``, ``notify``, ``cli``, ``smtp`` ...) so
that work on one part never touches another's file::

    esam_mail/locale/<lang>/LC_MESSAGES/<domain>.po

The catalogues are plain gettext ``.po`` files, read with Babel (the library Jinja2's i18n
extension and every Python translation workflow already use) and turned into standard
:class:`gettext.GNUTranslations` objects in memory, so no compiled ``.mo`` file has to be built
or shipped.  Catalogues are read once per process (``preload()`` at start-up keeps that file I/O
off the event loop); afterwards every lookup is a dict access.

The msgid is the English text; an English catalogue exists only for plural forms or wording that
differs from the msgid.  ``tests/unit/test_i18n.py`` checks that every msgid of every domain has a
Kazakh and a Russian translation and that the ``{placeholders}`` agree.
"""

from __future__ import annotations

import functools
import gettext as _gettext
import io
from collections.abc import Callable, Iterable
from pathlib import Path

LANGUAGES: tuple[str, ...] = ("kk", "ru", "en")
"""Supported languages, in the order offered to a person (state language first)."""

DEFAULT_LANGUAGE = "kk"
LANGUAGE_NAMES = {"kk": "Қазақша", "ru": "Русский", "en": "English"}

LOCALE_DIR = Path(__file__).with_name("locale")


def normalize(lang: str | None) -> str:
    """Map ``ru-RU``, ``kk_KZ``, ``KK`` ... onto a supported language, else the default."""
    if not lang:
        return DEFAULT_LANGUAGE
    base = lang.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Choose a language from an HTTP ``Accept-Language`` header (RFC 9110 12.5.4).

    Bounded: at most 32 entries of the header are looked at, whatever the client sends.
    """
    best: tuple[float, int, str] | None = None
    for pos, item in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:7])
            except ValueError:
                q = 0.0
        base = tag.strip().replace("_", "-").split("-", 1)[0].lower()
        if base not in LANGUAGES or q <= 0:
            continue
        key = (q, -pos, base)
        if best is None or key > best:
            best = key
    return best[2] if best else default


def domains() -> list[str]:
    """Every catalogue domain present in any language."""
    found = {p.stem for p in LOCALE_DIR.glob("*/LC_MESSAGES/*.po")}
    return sorted(found)


@functools.cache
def translations(domain: str, lang: str) -> _gettext.NullTranslations:
    """The catalogue of *domain* in *lang* (NullTranslations when there is none: English msgids)."""
    lang = normalize(lang)
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"
    if not path.exists():
        return _gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with path.open("rb") as fh:
        catalog = read_po(fh, locale=lang, domain=domain)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return _gettext.GNUTranslations(buf)


def preload(langs: Iterable[str] = LANGUAGES) -> None:
    """Read every catalogue now (call at start-up, before the event loop serves anyone)."""
    for domain in domains():
        for lang in langs:
            translations(domain, lang)


def gettext(domain: str, lang: str, msgid: str, /, **params: object) -> str:
    """Translate *msgid* and fill ``{name}`` placeholders from *params*."""
    text = translations(domain, lang).gettext(msgid)
    return text.format(**params) if params else text


def ngettext(domain: str, lang: str, singular: str, plural: str, n: int, /, **params: object) -> str:
    """Plural-aware translation; ``n`` is also available as ``{n}``."""
    text = translations(domain, lang).ngettext(singular, plural, n)
    return text.format(n=n, **params)


class Translator:
    """A domain and language bound together: ``_ = Translator("notify", "ru"); _("Hello")``."""

    __slots__ = ("domain", "lang")

    def __init__(self, domain: str, lang: str | None) -> None:
        self.domain = domain
        self.lang = normalize(lang)

    def __call__(self, msgid: str, /, **params: object) -> str:
        return gettext(self.domain, self.lang, msgid, **params)

    def plural(self, singular: str, plural: str, n: int, /, **params: object) -> str:
        return ngettext(self.domain, self.lang, singular, plural, n, **params)

    def gnu(self) -> _gettext.NullTranslations:
        """The underlying gettext object (for Jinja2's ``install_gettext_translations``)."""
        return translations(self.domain, self.lang)


class Message(str):
    """English text (a plain ``str``) that keeps its ``msgid`` and ``params``, so that a front-end
    can say it in the reader's language: ``Message("created {path}", path=p)``.  For texts made
    below the front-ends (``app.init``'s report, a service's ``ValidationError``), which know no
    reader.

    ``domain`` is the catalogue the msgid belongs to.  A plain ``Message`` has none: the front-end
    that says it uses its own (the CLI's ``cli``).  A service names its subsystem's catalogue with
    :func:`domain_message` (``M_ = domain_message("identity")``; ``M_("user name is required")``),
    and every front-end then says it from that catalogue.  A parameter that is itself a Message (a
    field's label) is said in the same language."""

    msgid: str
    params: dict[str, object]
    domain: str | None = None

    def __new__(cls, msgid: str, /, **params: object) -> Message:
        self = super().__new__(cls, msgid.format(**params) if params else msgid)
        self.msgid, self.params = msgid, params
        return self

    def in_language(self, domain: str, lang: str) -> str:
        """This text in *lang*, from this Message's own domain, else from *domain*."""
        own = self.domain or domain
        params = {k: v.in_language(own, lang) if isinstance(v, Message) else v for k, v in self.params.items()}
        return gettext(own, lang, self.msgid, **params)


def domain_message(domain: str) -> Callable[..., Message]:
    """A ``Message`` maker bound to *domain*'s catalogue.

    Bind it at module level under a name ending in ``M_`` (``M_ = domain_message("identity")``):
    ``tests/unit/test_i18n.py`` extracts every such call and checks its msgid is translated in
    that domain."""

    def make(msgid: str, /, **params: object) -> Message:
        message = Message(msgid, **params)
        message.domain = domain
        return message

    return make


def N_(msgid: str) -> str:
    """Mark a string for extraction without translating it yet."""
    return msgid
