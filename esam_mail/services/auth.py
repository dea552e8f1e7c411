"""Authentication policy shared by SMTP submission and IMAP.

Front-ends parse SASL; this module decides.  ``Authenticator.authenticate``
returns a :class:`Principal` or raises :class:`~esam_mail.errors.AuthError`
(always the same vague error: unknown login, wrong password, suspended or
closed mailbox all look alike to the client).  The hash check runs off the
event loop in a bounded thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated mailbox owner."""

    login: str  # normalized login, also the store's user key
    address: str  # primary e-mail address (login@domain)


class Authenticator(Protocol):
    async def authenticate(self, username: str, password: str, *, peer: str, service: str) -> Principal:
        """Check credentials.  ``username`` may be the login or the full address.

        Args:
            username: as typed by the user.
            password: the secret; never logged.
            peer: client IP, for throttling and audit.
            service: "imap" or "smtp".

        Raises:
            AuthError: on any failure (also when throttled).
        """
        ...
