"""Form problems in the reader's language.

A service says what is wrong with a field as an :class:`esam_mail.i18n.Message` (its English text
keeps the msgid and parameters, and names the catalogue it belongs to: the registration
validators use ``identity``), so the page says that same sentence in the request's language
next to the field it names; a problem that can re-translate itself (the password policy's
``WeakPassword``) does so.  A plain English text that is a msgid of the ``web`` catalogue is said
from there; anything else gets a translated "check this field" (``message`` keeps the English).
"""

from __future__ import annotations

from typing import Any

from esam_mail.i18n import N_, Message, Translator
from esam_mail.web.i18n import DOMAIN

FALLBACK = N_("Check this field.")


def localize(problem: Any, lang: str) -> str:
    """The text to show next to ``problem``'s field, in ``lang``."""
    own = getattr(problem, "text", None)
    if callable(own):
        return str(own(lang))
    message = getattr(problem, "message", problem)
    if isinstance(message, Message):
        return message.in_language(DOMAIN, lang)
    _ = Translator(DOMAIN, lang)
    text = str(message)
    said = _(text)
    return said if said != text or _.lang == "en" else _(FALLBACK)
