"""Notices to a subscriber, as e-mails into their INBOX, in their language (issue 16, item 4).

* ``welcome``: the mailbox is registered; the address and the mail-client settings;
* ``eds_confirmed``: the account is confirmed with an electronic signature;
* ``password_changed``: the password was changed (and what to do if it was not them);
* ``suspended``: the mailbox is suspended, why, and how to appeal;
* ``closed``: the mailbox is closed; the address is never issued again.

Each notice is written in the subscriber's preferred language (``subscribers.language``:
Kazakh or Russian; English for those who chose it), from ``noreply@<domain>``, DKIM-signed
with the operator's keys when signing is on, and delivered through
:class:`~esam_mail.services.mailflow.delivery.DeliveryService` (the path SMTP uses: durable Maildir
delivery, quota, notifications for IDLE).  :func:`staff_text` is the line the CLI prints for
the employee, in the employee's language.  A notice that cannot be delivered (the mailbox is
full) is logged and never blocks the action it reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from enum import StrEnum
from typing import Any

from esam_mail.errors import DeliveryError
from esam_mail.i18n import Translator
from esam_mail.log import event
from esam_mail.services.mailflow.delivery import Route, Transaction
from esam_mail.services.mailflow.mailformat import to_bytes

__all__ = ["KINDS", "NoticeKind", "Notices", "staff_text"]

log = logging.getLogger(__name__)
DOMAIN = "identity"


class NoticeKind(StrEnum):
    WELCOME = "welcome"
    EDS_CONFIRMED = "eds_confirmed"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a notice kind, not a password)
    SUSPENDED = "suspended"
    CLOSED = "closed"


KINDS = tuple(NoticeKind)


@dataclass(frozen=True, slots=True)
class Settings:
    """What a mail client needs (the published host names and ports)."""

    imap_host: str
    imaps_port: int
    smtp_host: str
    submission_port: int
    submissions_port: int
    support: str


def settings_from_config(cfg: Any) -> Settings:
    host = cfg.server.hostname
    pub = cfg.public
    web = getattr(cfg, "web", None)
    support = (getattr(web, "support_email", "") or f"support@{cfg.mail.domain}") if web else f"support@{cfg.mail.domain}"
    return Settings(pub.imap_host or host, pub.imaps_port, pub.smtp_host or host, pub.submission_port,
                    pub.submissions_port, support)


def _subject(kind: NoticeKind, _: Translator) -> str:
    return {
        NoticeKind.WELCOME: _("Your mailbox {address} is ready"),
        NoticeKind.EDS_CONFIRMED: _("Your account is confirmed with an electronic signature"),
        NoticeKind.PASSWORD_CHANGED: _("The password of your mailbox was changed"),
        NoticeKind.SUSPENDED: _("Your mailbox is suspended"),
        NoticeKind.CLOSED: _("Your mailbox is closed"),
    }[kind]


def body_text(kind: NoticeKind, lang: str, *, address: str, name: str, settings: Settings,
              reason: str = "", when: str = "") -> str:
    """The text of a notice in *lang*."""
    _ = Translator(DOMAIN, lang)
    lines = [_("Dear {name},", name=name or address), ""]
    if kind is NoticeKind.WELCOME:
        lines += [
            _("Your electronic subscriber mailbox {address} is registered and ready.", address=address),
            "",
            _("Mail client settings (Thunderbird, Outlook, a phone):"),
            _("Incoming mail (IMAP): {host}, port {port}, SSL/TLS", host=settings.imap_host, port=settings.imaps_port),
            _("Outgoing mail (SMTP): {host}, port {port} STARTTLS or {ports} SSL/TLS",
              host=settings.smtp_host, port=settings.submission_port, ports=settings.submissions_port),
            _("User name: {address}; password: the one you chose.", address=address),
            "",
            _("Confirm your account with your electronic signature to receive official documents."),
        ]
    elif kind is NoticeKind.EDS_CONFIRMED:
        lines += [
            _("Your account {address} is confirmed with your electronic signature: it can now receive "
              "official electronic documents.", address=address),
        ]
    elif kind is NoticeKind.PASSWORD_CHANGED:
        lines += [
            _("The password of {address} was changed on {when}.", address=address, when=when),
            _("If you did not do this, contact support at once: {support}.", support=settings.support),
        ]
    elif kind is NoticeKind.SUSPENDED:
        lines += [
            _("Your mailbox {address} is suspended: you cannot log in, and mail to it is refused.",
              address=address),
            _("Reason: {reason}", reason=reason or _("not given")),
            _("To appeal, write to {support} or come to a post office with your identity document.",
              support=settings.support),
        ]
    else:
        lines += [
            _("Your mailbox {address} is closed on {when}.", address=address, when=when),
            _("The address is never issued to anyone else."),
            _("Questions: {support}.", support=settings.support),
        ]
    return "\n".join(lines) + "\n"


def staff_text(kind: NoticeKind, lang: str, *, address: str, delivered: bool | None, reason: str = "") -> str:
    """What the CLI prints for the employee after the action, in the employee's language."""
    _ = Translator(DOMAIN, lang)
    head = {
        NoticeKind.WELCOME: _("{address} is registered.", address=address),
        NoticeKind.EDS_CONFIRMED: _("{address} is confirmed with an electronic signature.", address=address),
        NoticeKind.PASSWORD_CHANGED: _("The password of {address} is changed.", address=address),
        NoticeKind.SUSPENDED: _("{address} is suspended (reason: {reason}); the holder cannot log in.",
                                address=address, reason=reason or "-"),
        NoticeKind.CLOSED: _("{address} is closed; the address is never issued again.", address=address),
    }[kind]
    if delivered is None:
        return head
    tail = (_("The holder was notified by e-mail.") if delivered
            else _("The notice e-mail could not be delivered (mailbox full?)."))
    return f"{head} {tail}"


class Notices:
    """Compose and deliver notices.

    Args:
        directory: the directory (mailbox and owner lookups).
        delivery: the :class:`DeliveryService` (local delivery path).
        cfg: the configuration (domain, public hosts, support address).
        dkim_sign: signs the message bytes (the operator's DKIM keys), or None.
    """

    def __init__(self, directory: Any, delivery: Any, cfg: Any,
                 dkim_sign: Callable[[bytes], bytes] | None = None) -> None:
        self.directory = directory
        self.delivery = delivery
        self.cfg = cfg
        self.domain = cfg.mail.domain.lower()
        self.settings = settings_from_config(cfg)
        self.dkim_sign = dkim_sign

    @classmethod
    def from_services(cls, svc: Any) -> Notices:
        return cls(svc.directory, svc.delivery, svc.cfg, getattr(svc.delivery, "dkim_sign", None))

    async def language_and_name(self, rec: Any) -> tuple[str, str]:
        owner = await self.directory.owner(rec.subscriber_id)
        if owner is None:
            return "kk", rec.address
        return owner.language or "kk", owner.display_name

    def compose(self, kind: NoticeKind, rec: Any, lang: str, name: str, *, reason: str = "",
                now: datetime | None = None) -> EmailMessage:
        now = (now or datetime.now(UTC)).astimezone(UTC)
        _ = Translator(DOMAIN, lang)
        msg = EmailMessage()
        msg["From"] = formataddr((_("Electronic mailbox service"), f"noreply@{self.domain}"))
        msg["To"] = rec.address
        msg["Subject"] = _subject(kind, _).format(address=rec.address)
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = make_msgid("notice", domain=self.domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Esam-Notice"] = str(kind)
        msg.set_content(body_text(kind, lang, address=rec.address, name=name, settings=self.settings,
                                  reason=reason, when=now.strftime("%Y-%m-%d %H:%M UTC")))
        msg["Content-Language"] = lang  # after set_content, which drops Content-* headers
        return msg

    async def send(self, kind: NoticeKind, rec: Any, *, reason: str = "") -> bool:
        """Deliver the notice *kind* into the INBOX of mailbox *rec*; False if it could not be."""
        lang, name = await self.language_and_name(rec)
        msg = self.compose(kind, rec, lang, name, reason=reason)
        data = to_bytes(msg)
        if self.dkim_sign is not None:
            data = await asyncio.to_thread(self.dkim_sign, data)
        tx = Transaction(mail_from="", routes=[Route("local", rec.address, login=rec.login_norm, domain=self.domain,
                                                     quota=rec.quota_bytes)],
                         data=data, principal=None, peer="127.0.0.1", helo="notices", tls=True,
                         session=f"notice-{kind}")
        try:
            await self.delivery.deliver(tx)
        except DeliveryError as exc:
            event(log, "notice.undelivered", logging.WARNING, kind=str(kind), mailbox_id=rec.id, code=exc.code)
            return False
        event(log, "notice.delivered", kind=str(kind), mailbox_id=rec.id, lang=lang)
        return True
