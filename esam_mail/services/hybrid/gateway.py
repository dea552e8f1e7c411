"""Hybrid mail wired to the mail system: the SMTP gateway, status notices, scan ingest.

The rest of :mod:`esam_mail.services.hybrid` is the pure core (parse, number, render,
batch, events); this module connects it to the directory and the mailbox store:

* :meth:`HybridMail.handle` is the special-address handler that
  :class:`~esam_mail.services.mailflow.delivery.DeliveryService` calls at the end of DATA
  for ``<hybrid.gateway>@<mail.domain>`` (registered with ``require_auth``, so
  only authenticated subscribers reach it; the MX gets 550 5.7.1 at RCPT).

  The letter is validated, numbered, rendered and put into its facility's open
  batch *before* the SMTP reply, in a worker thread (``asyncio.to_thread``, at
  most ``max_renders`` at once), so the event loop never waits on a render.
  A render is bounded by ``hybrid.max_pages`` and takes about 0.1 s, far inside
  the 10 minutes RFC 5321 4.5.3.2.6 gives a client for the DATA reply.  So a
  ``250`` means: the item is durably in a print batch, and the sender's INBOX
  holds the ACCEPTED notice with the tracking number.

  Invalid input (no address block, bad postcode, unreadable PDF, too many
  pages, ...) prints nothing; the sender gets both a ``550 5.6.0`` reply that
  names the problem and a mail in their INBOX that says what to fix.  If the
  same message also went to other recipients (already delivered by then), the
  reply stays ``250`` so that the client does not resend it to them, and the
  INBOX mail alone carries the refusal.  Internal failures give ``451 4.3.0``.

* :meth:`HybridMail.record_event` logs a status event (CLI, facilities) and
  delivers the status e-mail for PRINTED, DELIVERED and RETURNED.

* :meth:`HybridMail.ingest` (paper -> e-mail) delivers a scanned paper letter
  into an active mailbox, with the PDF attached byte-identical, and writes an
  audit event (``hybrid.ingest``; refusals are audited with outcome ``refused``).

Notices and scans are written into the INBOX directly with the store's
``deliver_many`` (quota applies; ``Return-Path: <>``, they are auto-generated).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any, Protocol

from esam_mail.config import Config
from esam_mail.errors import DeliveryError, EsamError, NotFound, QuotaExceeded, ValidationError
from esam_mail.i18n import domain_message
from esam_mail.log import event
from esam_mail.services.hybrid import (
    Acceptance,
    AddressError,
    EventRecord,
    FacilityMap,
    HybridEvent,
    HybridInputError,
    HybridPost,
    RenderOptions,
    validate_s10,
    validate_scan,
)
from esam_mail.services.hybrid import HybridConfig as PostConfig
from esam_mail.services.hybrid.address import FIELD_ALIASES
from esam_mail.services.mailflow.delivery import Route, Transaction
from esam_mail.services.mailflow.mailformat import to_bytes

M_ = domain_message("hybrid")

__all__ = [
    "HybridMail",
    "IngestResult",
    "build_fix_it_email",
    "hybrid_post",
    "refusal_reply",
]

log = logging.getLogger(__name__)

_FACILITY_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_ACTOR_RE = re.compile(r"[a-z_]{1,32}:[^\s:]{1,64}")


class _Directory(Protocol):
    async def get(self, username: str) -> Any: ...

    async def by_address(self, address: str) -> Any: ...

    async def by_id(self, mailbox_id: int) -> Any: ...

    async def owner(self, subscriber_id: int | None) -> Any: ...

    async def mailboxes_of(self, number: str) -> list[Any]: ...

    async def audit(
        self, actor_kind: str, actor_id: str, action: str, target: str, outcome: str = "ok", **detail: Any
    ) -> None: ...


class _Store(Protocol):
    def deliver_many(
        self, logins: list[str], data: bytes, *, quotas: dict[str, int | None] | None = None
    ) -> dict[str, str]: ...


def hybrid_post(cfg: Config) -> HybridPost:
    """The :class:`HybridPost` for ``cfg``; its state lives under ``<data_dir>/hybrid``."""
    h = cfg.hybrid
    routes = {prefix: code for prefix, code in h.facilities.items() if prefix != "*"}
    return HybridPost(PostConfig(
        state_dir=cfg.data_dir / "hybrid",
        hybrid_address=f"{h.gateway}@{cfg.mail.domain.lower()}",
        service_indicator=h.tracking_prefix,
        facilities=FacilityMap(routes, h.facilities.get("*", "MAIN")),
        render=RenderOptions(max_pages=h.max_pages),
        merged_pdf=h.merged_pdf,
        max_scan_pages=h.max_scan_pages,
    ))


def _problems(exc: HybridInputError) -> list[tuple[str, str]]:
    if isinstance(exc, AddressError):
        return [(p.field, p.message) for p in exc.problems]
    return [(exc.field, exc.message)]


def refusal_reply(exc: HybridInputError) -> DeliveryError:
    """``550 5.6.0`` naming the problem(s), ASCII only, one line (for the SMTP reply)."""
    text = "; ".join(f"{f}: {m}" for f, m in _problems(exc))
    text = re.sub(r"[^\x20-\x7e]", "?", text)
    if len(text) > 300:
        text = text[:297] + "..."
    return DeliveryError(550, "5.6.0", f"Letter not printed: {text} (details sent to your INBOX)")


_FORMAT_HELP = """\
To: Серікбаев Асқар Нұрланұлы          (Кому / Кімге)
Street: ул. Абая                        (Улица / Көше; or 'Мкр: Самал-2')
House: 12А                              (Дом / Үй)
Apartment: 5                            (Кв. / Пәтер; optional)
Locality: Алматы                        (Населённый пункт / Елді мекен)
Region: Алматинская область             (Область / Облыс; not for Astana, Almaty, Shymkent)
Postcode: A01P3K4                       (Индекс; 6 digits or the 7-character code)
---
The text of the letter follows here. PDF attachments are printed after it."""


def build_fix_it_email(
    exc: HybridInputError,
    *,
    to_address: str,
    from_address: str,
    subject: str = "",
    in_reply_to: str | None = None,
) -> EmailMessage:
    """The mail that tells the sender why a letter was not printed and what to fix.

    Args:
        exc: the validation error (every problem of an :class:`AddressError` is listed).
        to_address: the sender's address.
        from_address: the gateway address.
        subject: the subject of the refused message (quoted).
        in_reply_to: its Message-ID, to thread the reply.
    """
    problems = "\n".join(f"  * {f}: {m}" for f, m in _problems(exc))
    quoted = " ".join(subject.split())[:200]
    msg = EmailMessage()
    msg["From"] = formataddr(("Қазпошта / Казпочта / Kazpost", from_address))
    msg["To"] = to_address
    msg["Subject"] = "Письмо не напечатано / Хат басылмады / Letter not printed" + (
        f": {quoted}" if quoted else ""
    )
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid("hybrid-refused", domain=from_address.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Esam-Hybrid-Event"] = "REJECTED"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(
        "Ваше письмо не принято для печати; ничего не напечатано. Исправьте и отправьте снова.\n"
        "Сіздің хатыңыз басып шығаруға қабылданбады; ештеңе басылмады. Түзетіп, қайта жіберіңіз.\n"
        "Your letter was not accepted for printing; nothing was printed. Please fix and send again.\n\n"
        f"What to fix / Что исправить / Нені түзету керек:\n{problems}\n\n"
        "The address block at the top of the text (one 'Key: value' per line, then a blank line"
        " or '---'):\n\n"
        f"{_FORMAT_HELP}\n\n"
        f"Accepted keys: {', '.join(a for aliases in FIELD_ALIASES.values() for a in aliases[:2])}.\n\n"
        "-- \nesam hybrid mail\n"
    )
    return msg


def _as_stored(msg: EmailMessage) -> bytes:
    """The bytes put into a Maildir: CRLF lines, null Return-Path (never bounced); display
    names folded without losing a space (:mod:`esam_mail.services.mailflow.mailformat`)."""
    return b"Return-Path: <>\r\n" + to_bytes(msg)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """A delivered scan (what ``esam hybrid ingest`` prints)."""

    tracking_number: str
    address: str
    message_id: str
    pages: int
    size: int
    sha256: str
    key: str  # Maildir key of the delivered message


class HybridMail:
    """The hybrid core plus the directory and the store: gateway, notices, ingest.

    Args:
        post: the hybrid core over its state directory.
        directory: mailbox lookups and the audit log.
        store: the mailbox store (``deliver_many``).
        max_renders: letters rendered at the same time (each in a worker thread).
    """

    def __init__(self, post: HybridPost, directory: _Directory, store: _Store, *, max_renders: int = 2,
                 return_centre: str = "") -> None:
        self.post = post
        self.directory = directory
        self.store = store
        self.address = post.config.hybrid_address
        self.return_centre = " ".join(return_centre.split())
        self._renders = asyncio.Semaphore(max_renders)

    @classmethod
    def from_config(cls, cfg: Config, directory: _Directory, store: _Store) -> HybridMail:
        """Build from the ``[hybrid]`` config section."""
        return cls(hybrid_post(cfg), directory, store, return_centre=cfg.hybrid.return_centre)

    # -- mailbox delivery -----------------------------------------------------------------
    async def _deliver(self, rec: Any, msg: EmailMessage) -> str | None:
        login = rec.login_norm
        try:
            keys = await asyncio.to_thread(
                self.store.deliver_many, [login], _as_stored(msg), quotas={login: rec.quota_bytes}
            )
        except QuotaExceeded:
            event(log, "hybrid.notice_dropped", user=login, reason="mailbox full")
            return None
        return keys.get(login)

    async def deliver_to_address(self, address: str, msg: EmailMessage) -> bool:
        """Deliver ``msg`` into the INBOX of the active mailbox ``address``; False if it
        cannot be (no such mailbox, not active, full): the caller decides what that means."""
        rec = await self.directory.by_address(address) or await self.directory.get(address)
        if rec is None or rec.state != "active":
            event(log, "hybrid.notice_dropped", to=address, reason="no active mailbox")
            return False
        return await self._deliver(rec, msg) is not None

    # -- e-mail -> paper: the SMTP gateway ---------------------------------------------------
    async def return_address(self, login: str) -> str | None:
        """The postal return address printed on the sender's letters: the subscriber's name and
        residence (or actual) address from the directory, else ``hybrid.return_centre``."""
        rec = await self.directory.get(login)
        owner = await self.directory.owner(rec.subscriber_id) if rec is not None else None
        if owner is not None and owner.postal_address:
            return ", ".join((owner.display_name, *owner.postal_address))
        return self.return_centre or None

    def _accept(self, data: bytes, sender: str, actor: str, return_line: str | None = None) -> Acceptance:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        sender_line = return_line or sender
        if return_line is None:
            try:
                from_header = msg["From"]
                addrs = getattr(from_header, "addresses", ()) if from_header is not None else ()
                if addrs and addrs[0].display_name:
                    sender_line = f"{addrs[0].display_name}, {sender}"
            except (ValueError, IndexError, TypeError):  # a malformed From is not the sender's problem here
                pass
        try:
            return self.post.accept_email(msg, sender=sender, sender_line=sender_line, actor=actor)
        except LookupError as exc:  # unknown charset of the text part
            raise HybridInputError("body", M_("cannot decode the text ({error}); send it as UTF-8", error=str(exc))) from None

    async def history(self, tracking_number: str) -> list[EventRecord]:
        """The status events of one item, oldest first (read in a worker thread)."""
        return await asyncio.to_thread(self.post.events.history, tracking_number)

    async def handle(self, tx: Transaction, routes: list[Route]) -> None:
        """The gateway (a :data:`~esam_mail.services.mailflow.delivery.SpecialHandler`).

        Raises:
            DeliveryError: 550 5.7.1 unauthenticated; 550 5.6.0 invalid letter (only
                when the gateway is the sole recipient); 451 4.3.0 internal failure.
        """
        principal = tx.principal
        if principal is None:  # delivery refuses at RCPT already; never print anonymous mail
            raise DeliveryError(550, "5.7.1", "This address accepts mail only from authenticated subscribers")
        sole = all(r.kind == "special" and r.service == routes[0].service for r in tx.routes)
        actor = f"subscriber:{principal.login}"
        return_line = await self.return_address(principal.login)
        async with self._renders:
            try:
                acc = await asyncio.to_thread(self._accept, tx.data, principal.address, actor, return_line)
            except HybridInputError as exc:
                await self._refused(tx, exc)
                if sole:
                    raise refusal_reply(exc) from None
                return
            except EsamError:
                log.exception("hybrid gateway failed")
                raise DeliveryError(451, "4.3.0", "Hybrid mail is temporarily unavailable, try again later") from None
        event(log, "hybrid.accepted", tracking=acc.tracking_number, batch=acc.batch_id,
              pages=acc.rendered.pages, user=principal.login, session=tx.session)
        # the sender's "my hybrid letters" (personal account) lists these
        await self.directory.audit("subscriber", principal.login, "hybrid.accepted", principal.address,
                                   tracking=acc.tracking_number, pages=acc.rendered.pages)
        rec = await self.directory.get(principal.login)
        for notice in acc.notices:
            if rec is None or await self._deliver(rec, notice) is None:
                log.warning("hybrid: accepted %s but could not deliver the notice", acc.tracking_number)

    async def _refused(self, tx: Transaction, exc: HybridInputError) -> None:
        assert tx.principal is not None
        head = email.message_from_bytes(tx.data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n",
                                        policy=email.policy.default)
        fix = build_fix_it_email(
            exc, to_address=tx.principal.address, from_address=self.address,
            subject=str(head.get("Subject", "") or ""), in_reply_to=str(head.get("Message-ID", "") or "") or None,
        )
        event(log, "hybrid.refused", user=tx.principal.login, field=exc.field, session=tx.session)
        rec = await self.directory.get(tx.principal.login)
        if rec is None or await self._deliver(rec, fix) is None:
            log.warning("hybrid: could not deliver the refusal notice to %s", tx.principal.login)

    # -- status events -----------------------------------------------------------------------
    async def record_event(
        self, tracking_number: str, ev: HybridEvent, *, actor: str, note: str = "", reason: str = ""
    ) -> tuple[EventRecord, bool | None]:
        """Record a status event; deliver the status e-mail if the event has one.

        Returns:
            the record and whether the notice was delivered (None: the event has none).

        Raises:
            HybridInputError: malformed tracking number or actor.
            NotFound: no item with this tracking number.
            TransitionError: the event may not follow the current status.
        """
        tracking = validate_s10(tracking_number)
        if not _ACTOR_RE.fullmatch(actor):
            raise HybridInputError("actor", M_("'{actor}': write KIND:ID, e.g. employee:1234", actor=actor))
        if not await asyncio.to_thread(self.post.events.history, tracking):
            raise NotFound(f"hybrid item {tracking}")
        rec, notice = await asyncio.to_thread(self.post.record_event, tracking, ev, actor=actor, note=note,
                                              reason=reason)
        if notice is None:
            return rec, None
        return rec, await self.deliver_to_address(str(notice["To"]), notice)

    # -- paper -> e-mail ---------------------------------------------------------------------
    async def addressee(self, to: str) -> Any:
        """The mailbox a paper letter for *to* goes to: by IIN/BIN or mailbox id, never by login.

        A login or an address says nothing about who holds it (anyone may have registered
        ``870322400007`` before the rules forbade it), so a person is addressed by the number
        on their identity document: an IIN/BIN (12 digits, checksum) picks the holder's one
        open mailbox; ``#ID`` (``esam mailbox show`` prints it) picks one mailbox of a holder
        with several.

        Raises:
            ValidationError: field ``to``, saying what to give instead.
        """
        from esam_mail.services.accounts.identity import checksum_ok, mask_number

        text = to.strip()
        if m := re.fullmatch(r"(?:#|id:)(\d{1,12})", text):
            rec = await self.directory.by_id(int(m.group(1)))
            if rec is None:
                raise ValidationError("to", M_("no mailbox with id {id}; nothing delivered", id=text))
            return rec
        if re.fullmatch(r"\d{12}", text):
            if not checksum_ok(text):
                raise ValidationError("to", M_("{number} is not a valid IIN/BIN (check digit); nothing delivered",
                                               number=mask_number(text)))
            held = [m for m in await self.directory.mailboxes_of(text) if m.state != "closed"]
            if not held:
                raise ValidationError("to", M_("no open mailbox is held by IIN/BIN {number}; nothing delivered",
                                               number=mask_number(text)))
            if len(held) > 1:
                ids = ", ".join(f"#{m.id} ({m.address})" for m in held)
                raise ValidationError("to", M_("IIN/BIN {number} holds {n} mailboxes: give one as --to #ID: {ids}",
                                               number=mask_number(text), n=len(held), ids=ids))
            return held[0]
        raise ValidationError(
            "to", M_("address the letter by the holder's IIN/BIN (12 digits) or a mailbox id (#ID from "
                     "`esam mailbox show`), not by a login or an address, which says nothing about who holds it")
        )

    async def ingest(
        self,
        pdf: bytes,
        *,
        to: str,
        facility: str,
        employee: str,
        sender_name: str = "",
        tracking_number: str | None = None,
    ) -> IngestResult:
        """Deliver a scanned paper letter into ``to``'s INBOX and audit it.

        Nothing is delivered unless every check passes.  Without ``tracking_number``
        a new S10 number is allocated for the item.

        Raises:
            ValidationError: field ``to`` (unknown, closed, suspended or full mailbox),
                ``scan`` (not a readable PDF, too many pages), ``facility``, ``employee``,
                ``tracking_number``, ``sender_name``.
        """
        if not _FACILITY_RE.fullmatch(facility):
            raise ValidationError("facility", M_("'{facility}' is not a facility code (A-Z, 0-9, _ -)", facility=facility))
        if not re.fullmatch(r"[^\s:]{1,64}", employee):
            raise ValidationError("employee", M_("give the employee's ID (no spaces)"))
        tracking = validate_s10(tracking_number) if tracking_number else None

        async def refuse(field: str, message: str, **detail: Any) -> ValidationError:
            await self.directory.audit("employee", employee, "hybrid.ingest", to, outcome="refused",
                                       facility=facility, field=field, reason=message, **detail)
            return ValidationError(field, message)

        try:
            rec = await self.addressee(to)
        except ValidationError as exc:
            raise await refuse(exc.field, exc.message) from None
        if rec.state != "active":
            raise await refuse("to", M_("mailbox {address} is {state}; nothing delivered", address=rec.address, state=rec.state))
        cfg = self.post.config
        try:
            info = await asyncio.to_thread(validate_scan, pdf, max_pages=cfg.max_scan_pages,
                                           max_bytes=cfg.max_scan_bytes)
        except HybridInputError as exc:
            raise await refuse("scan", exc.message, size=len(pdf)) from None
        if tracking is None:
            tracking = await asyncio.to_thread(self.post.allocator.allocate)
        msg = await asyncio.to_thread(self.post.ingest_scan, pdf, tracking_number=tracking,
                                      subscriber_address=rec.address, sender_name=sender_name)
        actor = f"employee:{employee}"
        try:  # the scan's own events; SCANNED claims the number (ingested at most once)
            await asyncio.to_thread(self.post.claim_scan, tracking, actor=actor, note=f"facility {facility}")
        except HybridInputError as exc:
            raise await refuse(exc.field, exc.message, tracking=tracking) from None
        key = await self._deliver(rec, msg)
        await asyncio.to_thread(self.post.scan_outcome, tracking, delivered=key is not None, actor=actor,
                                note=f"mailbox #{rec.id}" if key is not None else "mailbox full")
        if key is None:
            raise await refuse("to", M_("mailbox {address} is full; nothing delivered", address=rec.address), tracking=tracking)
        await self.directory.audit(
            "employee", employee, "hybrid.ingest", rec.address, facility=facility, tracking=tracking,
            sha256=info.sha256, pages=info.pages, size=info.size, message_id=str(msg["Message-ID"]),
            sender_name=sender_name,
        )
        event(log, "hybrid.ingested", tracking=tracking, user=rec.login_norm, facility=facility,
              pages=info.pages)
        return IngestResult(tracking, rec.address, str(msg["Message-ID"]), info.pages, info.size,
                            info.sha256, key)
