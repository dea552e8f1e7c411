"""The ``cli`` gettext domain: the language of ``esam``'s messages and the ``_()`` that uses it.

msgids are the English texts; the catalogues are esam_mail/locale/{kk,ru}/LC_MESSAGES/cli.po
(``tests/unit/test_cli_i18n.py`` checks that every msgid marked here has both translations).
"""

from __future__ import annotations

import os

__all__ = ["DOMAIN", "N_", "_", "_n", "cli_language", "language_option", "set_language"]

#: ``--lang`` of this run (set by :func:`esam_mail.cli.main` before the parser is built).
_LANG_OPTION: str | None = None
DOMAIN = "cli"


def set_language(lang: str | None) -> None:
    """``--lang``: overrides the environment for the rest of the process."""
    global _LANG_OPTION
    _LANG_OPTION = lang


def language_option(argv: list[str]) -> str | None:
    """The ``--lang`` value among the options before the command, if it is a supported one.

    Read before argparse runs so that the --help texts are in that language too."""
    from esam_mail.i18n import LANGUAGES

    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--lang" and i + 1 < len(argv):
            value = argv[i + 1]
        elif tok.startswith("--lang="):
            value = tok.split("=", 1)[1]
        elif tok in ("-c", "--config"):
            i += 2
            continue
        elif tok.startswith("-") and tok != "--":
            i += 1
            continue
        else:
            return None
        return value.lower() if value.lower() in LANGUAGES else None
    return None


def cli_language() -> str:
    """The operator's language for CLI messages, first match wins:

    1. ``--lang kk|ru|en``;
    2. ``$ESAM_LANG``;
    3. the POSIX locale: the first of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set decides
       (``LC_ALL=C`` or ``LANG=de_DE.UTF-8`` mean English);
    4. English.
    """
    from esam_mail.i18n import LANGUAGES

    if _LANG_OPTION is not None and _LANG_OPTION in LANGUAGES:
        return _LANG_OPTION
    for var in ("ESAM_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        base = value.replace("_", "-").split("-", 1)[0].split(".", 1)[0].lower()
        if base in LANGUAGES:
            return base
        if value:
            break
    return "en"


def _(msgid: str, /, **params: object) -> str:
    """*msgid* (English) in the operator's language, ``{placeholders}`` filled from *params*."""
    from esam_mail.i18n import gettext

    return gettext(DOMAIN, cli_language(), msgid, **params)


def _n(singular: str, plural: str, n: int, /, **params: object) -> str:
    """The plural form for *n* (Russian has three); ``{n}`` is filled too."""
    from esam_mail.i18n import ngettext

    return ngettext(DOMAIN, cli_language(), singular, plural, n, **params)


def N_(msgid: str) -> str:
    """Mark *msgid* for the catalogue; translate it later with ``_()``."""
    return msgid
