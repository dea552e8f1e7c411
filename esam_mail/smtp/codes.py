"""SMTP replies as named constants carrying their enhanced status code (RFC 3463).

Naming: ``R<code>_<MEANING>``; the text starts with that code and an enhanced
status of the same class.  Tests assert on these constants, not literals, and
``tests/unit/test_smtp_codes.py`` keeps the list honest: a constant nothing
uses, or one whose name and code disagree, fails the suite.
"""

from __future__ import annotations

R250_OK = "250 2.0.0 OK"
R250_QUEUED = "250 2.0.0 Message accepted"
R250_RCPT_OK = "250 2.1.5 Recipient OK"
R250_SENDER_OK = "250 2.1.0 Sender OK"
R421_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
R421_TOO_MANY_CONN = "421 4.7.0 Too many connections from your address"
R421_TOO_MANY_COMMANDS = "421 4.7.0 Too many commands"
R421_TIMEOUT = "421 4.4.2 Idle timeout, closing connection"
R451_INTERNAL = "451 4.3.0 Internal error, try again later"
R452_MAILBOX_FULL = "452 4.2.2 Mailbox full"
R452_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
R550_NO_SUCH_USER = "550 5.1.1 No such user here"
R550_MAILBOX_DISABLED = "550 5.2.1 Mailbox disabled, not accepting messages"
# RFC 4954 section 6 / RFC 5248 X.7.13: the right password of a disabled account ({state})
R525_ACCOUNT_DISABLED = "525 5.7.13 Your mailbox is {state}; see the notice in it or contact support"
R450_MAILBOX_HELD = "450 4.2.1 Mailbox temporarily disabled, try again later"
R550_DMARC_REJECT = "550 5.7.1 Rejected by the DMARC policy of the sender's domain"
R552_MAILBOX_FULL = "552 5.2.2 Mailbox full"
R553_SENDER_NOT_OWNED = "553 5.7.1 Sender address does not belong to you"
R530_AUTH_REQUIRED = "530 5.7.0 Authentication required"
R552_TOO_BIG = "552 5.3.4 Message too big"
R501_BDAT_SYNTAX = "501 5.5.4 Syntax: BDAT chunk-size [LAST]"
R503_BDAT_NEED_MAIL = "503 5.5.1 Send MAIL first"
R503_DATA_AFTER_BDAT = "503 5.5.1 DATA is not allowed after BDAT in one transaction (RFC 3030)"
R554_NO_VALID_RCPT = "554 5.5.1 No valid recipients"
R554_NUL_BYTES = "554 5.6.0 Message contains NUL characters, not allowed in Internet mail (RFC 5322 2.3)"

# Enhanced codes added to aiosmtpd's own replies, which lack them.
ENHANCED_DEFAULTS = {
    "250": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "421": "4.3.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
