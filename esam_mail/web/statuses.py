"""HTTP status codes for the service layer's refusals: the HTTP front-end's mapping.

Services raise errors that say *what* went wrong (a stable ``code`` and a
``public`` text); which HTTP status that becomes is decided here, not in the
service (RFC 9110 section 15).  The most specific class listed wins.
"""

from __future__ import annotations

from esam_mail.errors import AuthError, NotFound
from esam_mail.services.accounts import confirmation as c
from esam_mail.services.official import channel as o

#: error class -> HTTP status (looked up along the exception's MRO).
STATUS: dict[type[BaseException], int] = {
    c.EdsNotConfigured: 503,
    c.MailboxUnknown: 404,
    c.MailboxNotConfirmable: 409,
    c.ChallengeNotFound: 409,
    c.ChallengeExpired: 409,
    c.ChallengeUsed: 409,
    c.SignerMismatch: 403,
    c.RoleNotAllowed: 403,
    c.ConfirmationError: 400,
    o.NoConfirmedMailbox: 409,  # the sender falls back to paper (hybrid mail)
    o.SignatureRefused: 422,
    o.UnknownSender: 403,
    o.OfficialError: 400,
    AuthError: 401,
    NotFound: 404,
}


def http_status(exc: BaseException, default: int = 400) -> int:
    """The status for ``exc``: its nearest listed class, else ``default``."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return default
