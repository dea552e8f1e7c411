"""The one place where esam errors become tagged IMAP NO/BAD replies.

Response codes: RFC 5530 (AUTHENTICATIONFAILED, OVERQUOTA, SERVERBUG,
NONEXISTENT, ALREADYEXISTS, CANNOT, TOOBIG, LIMIT ...), RFC 3501 (TRYCREATE),
RFC 4315 (UIDPLUS codes are built by the server).  Reply texts are fixed
strings: never ``str(exc)``, paths or config values.  Unknown exceptions become
``NO [SERVERBUG] Internal error (session <id>)``; the traceback goes to the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from esam_mail import errors

from .parser import LimitExceeded, MailboxNameError, ParseError
from .search import BadCharset


@dataclass(frozen=True, slots=True)
class Reply:
    """A tagged completion: ``status`` is OK, NO or BAD; ``code`` without brackets."""

    status: bytes
    code: bytes | None
    text: bytes

    def render(self, tag: bytes) -> bytes:
        code = b"[" + self.code + b"] " if self.code else b""
        return tag + b" " + self.status + b" " + code + self.text


AUTH_FAILED = Reply(b"NO", b"AUTHENTICATIONFAILED", b"Authentication failed.")
#: RFC 5530 CONTACTADMIN: the password is right, the mailbox is not usable (see errors.AccountDisabled).
ACCOUNT_DISABLED = {
    "suspended": Reply(b"NO", b"CONTACTADMIN", b"Your mailbox is suspended by the operator; the notice in "
                       b"your mailbox says why and how to appeal. Contact support."),
    "closed": Reply(b"NO", b"CONTACTADMIN", b"Your mailbox is closed. Contact support."),
    "held": Reply(b"NO", b"CONTACTADMIN", b"Your mailbox awaits a manual identity check by the operator."),
}
LOGIN_DISABLED = Reply(b"NO", b"PRIVACYREQUIRED", b"Use STARTTLS before authenticating.")
TOOBIG = Reply(b"NO", b"TOOBIG", b"Literal too large.")
TOOBIG_NONSYNC = Reply(b"BAD", b"TOOBIG", b"Non-synchronizing literal too large.")
LINE_TOO_LONG = Reply(b"BAD", b"TOOBIG", b"Command line too long.")
NO_SUCH_FOLDER = Reply(b"NO", b"NONEXISTENT", b"No such mailbox.")
TRYCREATE = Reply(b"NO", b"TRYCREATE", b"No such mailbox.")
READ_ONLY = Reply(b"NO", b"READ-ONLY", b"Mailbox is read-only.")


def for_exception(exc: BaseException, session: str, *, trycreate: bool = False) -> Reply:
    """Map an exception raised while executing a command to a tagged reply.

    Args:
        exc: what the handler raised.
        session: session id, appended to SERVERBUG replies for the log grep.
        trycreate: the command targets a destination mailbox (APPEND, COPY, MOVE),
            so a missing one is ``NO [TRYCREATE]`` (RFC 3501 §6.3.11).
    """
    if isinstance(exc, LimitExceeded):
        return Reply(b"BAD", b"LIMIT", exc.public)
    if isinstance(exc, ParseError):
        return Reply(b"BAD", None, exc.public)
    if isinstance(exc, BadCharset):
        return Reply(b"NO", b"BADCHARSET (UTF-8 US-ASCII)", b"Unsupported charset.")
    if isinstance(exc, MailboxNameError):
        return Reply(b"NO", b"CANNOT", b"Invalid mailbox name.")
    if isinstance(exc, errors.QuotaExceeded):
        return Reply(b"NO", b"OVERQUOTA", b"Mailbox quota exceeded.")
    if isinstance(exc, errors.NoSuchFolder):
        return TRYCREATE if trycreate else NO_SUCH_FOLDER
    if isinstance(exc, errors.FolderExists):
        return Reply(b"NO", b"ALREADYEXISTS", b"Mailbox already exists.")
    if isinstance(exc, errors.FolderHasChildren):
        return Reply(b"NO", b"HASCHILDREN", b"Mailbox has children; delete them first.")
    if isinstance(exc, errors.BadFolderName):
        return Reply(b"NO", b"CANNOT", b"Invalid mailbox name.")
    if isinstance(exc, errors.FolderError):
        return Reply(b"NO", b"CANNOT", b"Operation not permitted on this mailbox.")
    if isinstance(exc, errors.AuthError):
        return AUTH_FAILED
    if isinstance(exc, errors.StoreError):
        return Reply(b"NO", b"UNAVAILABLE", b"Mail store temporarily unavailable.")
    return server_bug(session)


def server_bug(session: str) -> Reply:
    return Reply(b"NO", b"SERVERBUG", b"Internal error (session " + session.encode() + b")")
