"""The one exception tree of esam_mail.

Lower layers (store, directory, services) raise these; only the protocol
front-ends (``smtp/``, ``imap/``, ``web/``) and the CLI turn them into wire
replies or exit codes.  ``public`` texts are safe to show to a client: they
never contain paths, config values or exception text.

::

    EsamError
     +-- ConfigError          (problems: list of "dotted.key: message (hint)")
     +-- ValidationError      (field, message)  -> CLI exit 2, HTTP 422
     +-- DirectoryError
     |    +-- LoginTaken
     |    +-- NotFound
     +-- StoreError
     |    +-- QuotaExceeded
     |    +-- FolderError     (NoSuchFolder, FolderExists, BadFolderName)
     +-- DeliveryError        (code, enhanced, public text)
     +-- AuthError
"""

from __future__ import annotations


class EsamError(Exception):
    """Base of every error esam_mail raises on purpose."""

    #: True when retrying later may succeed (SMTP 4xx), False for 5xx.
    temporary: bool = False


class Problem(str):
    """One configuration problem: ``"dotted.key: message"`` in English, as a plain ``str``, that
    also keeps its parts so a front-end can say it in the reader's language: ``key``, the
    English ``msgid`` with ``{placeholders}``, and the ``params`` that fill them."""

    key: str
    msgid: str
    params: dict[str, object]

    def __new__(cls, key: str, msgid: str, /, **params: object) -> Problem:
        self = super().__new__(cls, f"{key}: {msgid.format(**params) if params else msgid}")
        self.key, self.msgid, self.params = key, msgid, params
        return self


class ConfigError(EsamError):
    """The configuration is wrong; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ValidationError(EsamError):
    """Bad input for one named field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DirectoryError(EsamError):
    """Directory (database) failure."""


class LoginTaken(DirectoryError):
    """The login or address was already issued (now or ever)."""

    def __init__(self, login: str) -> None:
        super().__init__(f"login taken: {login}")
        self.login = login


class NotFound(DirectoryError):
    """No such mailbox/subscriber/object."""


class StoreError(EsamError):
    """Mail store failure."""

    temporary = True


class QuotaExceeded(StoreError):
    """Delivering or appending would exceed the mailbox quota."""

    temporary = False


class FolderError(StoreError):
    temporary = False


class NoSuchFolder(FolderError):
    pass


class FolderExists(FolderError):
    pass


class FolderHasChildren(FolderError):
    """Deleting a folder that has folders below it (IMAP: NO [HASCHILDREN], RFC 9051)."""


class BadFolderName(FolderError):
    pass


class DeliveryError(EsamError):
    """A delivery decision with an SMTP-ish reply attached.

    ``code``/``enhanced``/``public`` are what a front-end may send.
    """

    def __init__(self, code: int, enhanced: str, public: str) -> None:
        super().__init__(f"{code} {enhanced} {public}")
        self.code = code
        self.enhanced = enhanced
        self.public = public
        self.temporary = 400 <= code < 500


class AuthError(EsamError):
    """Authentication failed (deliberately vague)."""


class AccountDisabled(AuthError):
    """The password is right but the mailbox may not be used (``state``: suspended, closed or
    held).  Only raised after the password was checked, so it reveals nothing to a guesser;
    front-ends say so plainly (IMAP ``NO [CONTACTADMIN]``, SMTP ``525 5.7.13``)."""

    def __init__(self, state: str) -> None:
        super().__init__(f"mailbox {state}")
        self.state = state
