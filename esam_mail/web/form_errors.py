"""Form problems in the reader's language.

The validators (``services/accounts/identity.py``, ``services/accounts/application.py``) explain a problem in
English, naming the field in the text ("IIN is not valid: the check digit does not match").
On a page the message stands right under the field's own label, so here each known kind
of problem becomes a short sentence of the ``web`` catalogue that does not repeat the
field name; a problem that can re-translate itself (the password policy's ``WeakPassword``)
does so; anything unknown still gets a translated "check this field" with the English
detail kept in ``message``.
"""

from __future__ import annotations

import re
from typing import Any

from esam_mail.i18n import N_, Translator
from esam_mail.web.i18n import DOMAIN

#: (pattern on the English message, msgid); the first match wins.
RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), m) for p, m in (
    (r"this user name was issued before", N_("This user name was issued before and is never issued again; choose another.")),
    (r"^user name '.*' is reserved", N_("This user name is reserved; choose another.")),
    (r"^user name must be 3 to 64", N_("The user name must be 3 to 64 characters long.")),
    (r"^user name may contain only", N_("Use only Latin letters a-z, digits, dots, hyphens and underscores.")),
    (r"^user name must start and end", N_("The user name must start and end with a letter or a digit.")),
    (r"^user name must not contain two dots", N_("The user name must not contain two dots in a row.")),
    (r"(is required|must be an object)$", N_("Fill in this field.")),
    (r"must be (exactly 12 digits|given as text of 12 digits)", N_("Enter exactly 12 digits.")),
    (r"check digit does not match", N_("The number is not valid: the check digit does not match.")),
    (r"^(IIN|BIN) is not valid|is not valid: no number can start", N_("The number is not valid.")),
    (r"must be written as YYYY-MM-DD", N_("Write the date as YYYY-MM-DD.")),
    (r"is not a real calendar date", N_("There is no such date.")),
    (r"must not be in the future", N_("The date must not be in the future.")),
    (r"must not be before", N_("The date is too early.")),
    (r"^phone number", N_("Enter a Kazakhstan phone number, for example +7 701 123 45 67.")),
    (r"^postcode", N_("Enter the postcode: 6 digits (050012) or 7 characters (A01P3K4).")),
    (r"^document number", N_("Enter 5 to 20 Latin letters and digits, for example N12345678.")),
    (r"^document type", N_("Choose the document type.")),
    (r"must be at most \d+ characters long", N_("The text is too long.")),
    (r"contains control or unassigned characters", N_("Remove the special characters.")),
    (r"must contain letters", N_("Use letters.")),
    (r"may contain only letters, spaces, hyphens and apostrophes", N_("Use only letters, spaces, hyphens and apostrophes.")),
    (r"^sex must be", N_("Choose M or F.")),
    (r"^signer role must be", N_("Choose who signs: the head or a representative under a power of attorney.")),
    (r"power of attorney is given only when", N_("Fill this in only when a representative signs under a power of attorney.")),
    (r"must accept the user agreement", N_("Read the user agreement and tick the box to accept it.")),
    (r"version .* is not the agreement in force|agreement version", N_("The agreement has changed: reload the page, read it and accept it again.")),
    (r"^sign the application|must be signed with EDS", N_("Sign the application (step 2) or paste the signature.")),
    (r"not valid Base64", N_("The signature is not valid Base64.")),
    (r"^unknown field", N_("This field is not part of the form.")),
))

FALLBACK = N_("Check this field.")


def localize(problem: Any, lang: str) -> str:
    """The text to show next to ``problem``'s field, in ``lang``."""
    own = getattr(problem, "text", None)
    if callable(own):
        return str(own(lang))
    message = str(getattr(problem, "message", problem))
    _ = Translator(DOMAIN, lang)
    for pattern, msgid in RULES:
        if pattern.search(message):
            return _(msgid)
    return _(FALLBACK)
