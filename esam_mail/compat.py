"""Every private name of aiosmtpd and Twisted that esam_mail relies on, in one list.

A private name can change in any release without notice.  Each one used here has
no public equivalent (the ones that had were replaced: ``reactor._asyncioEventloop``
by the loop ``app.install_reactor`` keeps, aiosmtpd's ``_original_transport`` and
``_handler_coroutine`` by its public ``session``/``transport``, twisted.web's
``request._disconnected`` by ``request.notifyFinish()``).  For the rest:

* setup.cfg pins the libraries below the next release line (``aiosmtpd<1.5``,
  ``twisted<27``), so an upgrade is a deliberate change;
* ``tests/unit/test_compat.py`` checks every entry against the installed library
  (the name exists, is the kind of thing we expect, with the signature we call)
  and that the installed versions satisfy the pins; it also fails when code uses a
  private name of these libraries that is not listed here.

To upgrade a library: raise the pin, run that test, and fix or re-list what fails.
This module is data only: it imports neither library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["HOOKS", "STDLIB_PRIVATE", "Hook"]


@dataclass(frozen=True)
class Hook:
    """One private name we depend on."""

    owner: str  #: dotted path of the class that defines it
    name: str  #: the private attribute
    kind: Literal["method", "coroutine", "attribute"]
    used_in: str  #: our module that uses it
    why: str  #: what breaks without it, and why no public API does it
    params: tuple[str, ...] = ()  #: for methods: the parameters we pass (after self)


HOOKS: tuple[Hook, ...] = (
    Hook(
        "aiosmtpd.smtp.SMTP", "_smtp_methods", "attribute", "esam_mail/smtp/server.py",
        "dict verb -> bound smtp_* method built in __init__; wrapping it counts every command "
        "(HELP, STARTTLS, QUIT included) for smtp.max_commands. aiosmtpd's public "
        "command_call_limit limits each verb separately, not the session's total.",
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_handle_client", "coroutine", "esam_mail/smtp/server.py",
        "the per-connection command loop; overriding it is the only way to run code when the "
        "loop ends without connection_lost (QUIT, 421, TLS failure): the per-IP slot is freed there.",
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_timeout_cb", "method", "esam_mail/smtp/server.py",
        "idle-timeout callback; overridden to send 421 4.4.2 before aiosmtpd closes silently (RFC 5321 4.5.3.2).",
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_reset_timeout", "method", "esam_mail/smtp/server.py",
        "re-arms the idle timer; called on every received chunk so a slow DATA upload is not idle "
        "(aiosmtpd re-arms only per command).",
        params=("duration",),
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_cb_client_connected", "method", "esam_mail/smtp/server.py",
        "hands over the connection's StreamReader; BDAT (RFC 3030, which aiosmtpd lacks) reads "
        "its chunks from the same stream as the commands, and no public API exposes it.",
        params=("reader", "writer"),
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_call_handler_hook", "coroutine", "esam_mail/smtp/server.py",
        "runs handle_DATA with aiosmtpd's (server, session, envelope) arguments; BDAT LAST "
        "delivers through the same hook as DATA.",
        params=("command", "args"),
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_set_post_data_state", "method", "esam_mail/smtp/server.py",
        "resets the envelope after a transaction; BDAT LAST ends one as DATA does.",
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_auth_required", "attribute", "esam_mail/smtp/server.py",
        "the listener's auth_required flag; BDAT checks it as aiosmtpd's own commands do "
        "(check_auth_needed pushes a reply itself, but a refused chunk must still be read first).",
    ),
    Hook(
        "aiosmtpd.smtp.SMTP", "_timeout_handle", "attribute", "esam_mail/smtp/server.py",
        "the idle timer handle (None before the session starts); read to re-arm only a running timer.",
    ),
)


#: Private names of the standard library we touch, with the fallback when they vanish.
STDLIB_PRIVATE: dict[str, str] = {
    "_limit": (
        "asyncio.StreamReader._limit, raised for the duration of a DATA body in "
        "esam_mail/smtp/dotdata.py so it is read in 256 KiB pieces; without it the body is "
        "read in smaller pieces, nothing else changes."
    ),
}
