"""One object that wires the hybrid core together, for the SMTP gateway and the CLI.

The composition root builds a :class:`HybridConfig` from the TOML config and one
:class:`HybridPost`; then

* the SMTP gateway address (e.g. ``hybrid@<domain>``) calls :meth:`HybridPost.accept_email`
  for an authenticated subscriber's message and delivers the returned notices into the
  sender's mailbox (an :class:`~errors.HybridInputError` becomes a 550 reply/bounce that
  lists ``AddressError.problems``);
* the CLI (``esam hybrid ...``) calls :meth:`record_event` (printed, handed to post,
  delivered, ...), :meth:`HybridPost.batches` ``.close()/.list()`` and :meth:`ingest_scan`.

State under ``state_dir``: ``s10/`` (allocator), ``batches/`` (:mod:`.batch`),
``events/`` (:mod:`.events`), ``items/<S10>.json`` (sender and recipient of each item,
needed for later status e-mails).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from esam_mail.fsio import atomic_write
from esam_mail.services.hybrid._fs import FILE_MODE
from esam_mail.services.hybrid.address import PostalAddress, parse_letter
from esam_mail.services.hybrid.batch import BatchStore, FacilityMap, PrintItem
from esam_mail.services.hybrid.errors import M_, HybridInputError, HybridStateError, TransitionError
from esam_mail.services.hybrid.events import (
    SCAN_EVENTS,
    EventLog,
    EventRecord,
    HybridEvent,
    build_status_email,
    can_transition,
    needs_status_email,
)
from esam_mail.services.hybrid.ingest import build_scanned_letter_message
from esam_mail.services.hybrid.render import PdfAttachment, RenderedLetter, RenderOptions, render_letter
from esam_mail.services.hybrid.s10 import TrackingAllocator, validate_s10

__all__ = ["Acceptance", "HybridConfig", "HybridPost", "unflow"]


@dataclass(frozen=True, slots=True)
class HybridConfig:
    """Hybrid-mail settings (the ``[hybrid]`` config section)."""

    state_dir: Path
    hybrid_address: str  # From of status notices and scanned letters
    service_indicator: str = "RR"
    country: str = "KZ"
    facilities: FacilityMap = field(default_factory=lambda: FacilityMap({}, "MAIN"))
    render: RenderOptions = field(default_factory=RenderOptions)
    merged_pdf: bool = False
    max_scan_pages: int = 50
    max_scan_bytes: int = 25 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Acceptance:
    """Result of :meth:`HybridPost.accept_email`."""

    tracking_number: str
    batch_id: str
    rendered: RenderedLetter
    notices: list[EmailMessage]  # deliver these into the sender's mailbox


def unflow(text: str, *, delsp: bool = False) -> str:
    """Undo RFC 3676 ``format=flowed`` soft line breaks (a line ending in a space)."""
    out: list[str] = []
    buf = ""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.startswith(" "):  # space-stuffing
            line = line[1:]
        if line.endswith(" ") and line != "-- ":
            buf += line[:-1] if delsp else line
        else:
            out.append(buf + line)
            buf = ""
    if buf:
        out.append(buf)
    return "\n".join(out)


class HybridPost:
    """The hybrid-mail use cases over one state directory."""

    def __init__(self, config: HybridConfig) -> None:
        self.config = config
        root = Path(config.state_dir)
        self.allocator = TrackingAllocator(
            root / "s10", service=config.service_indicator, country=config.country
        )
        self.batches = BatchStore(root / "batches", config.facilities, merged_pdf=config.merged_pdf)
        self.events = EventLog(root / "events")
        self._items = root / "items"

    def accept_email(
        self,
        message: EmailMessage,
        *,
        sender: str,
        sender_line: str | None = None,
        actor: str = "smtp",
    ) -> Acceptance:
        """Accept an e-mail for paper delivery: parse, number, render, batch, log, notify.

        Args:
            message: the message as received (parsed with ``email.policy.default``).
            sender: the authenticated sender's address (gets the notices).
            sender_line: return address printed above the recipient; default ``sender``.
            actor: who accepted it, for the event log.

        Raises:
            AddressError: the address block is missing or wrong (no number is used).
            HybridInputError: e.g. an unreadable attachment or too many pages; the
                allocated number is logged as REJECTED.
        """
        body = message.get_body(preferencelist=("plain",))
        if body is None:
            raise HybridInputError("body", M_("the message needs a text/plain part with the address"))
        content = body.get_content()
        if str(body.get_param("format", "")).lower() == "flowed":
            content = unflow(content, delsp=str(body.get_param("delsp", "")).lower() == "yes")
        parsed = parse_letter(content)  # before allocating: no number wasted
        attachments = [
            PdfAttachment(part.get_filename() or f"attachment-{i}.pdf", part.get_content())
            for i, part in enumerate(message.iter_attachments(), start=1)
            if part.get_content_type() == "application/pdf"
            or (part.get_filename() or "").lower().endswith(".pdf")
        ]
        tracking = self.allocator.allocate()
        try:
            rendered = render_letter(
                parsed.address, parsed.text, tracking_number=tracking,
                sender_line=sender_line or sender, subject=str(message.get("Subject", "")),
                attachments=attachments, options=self.config.render,
            )
        except HybridInputError as exc:
            self.events.append(tracking, HybridEvent.REJECTED, actor=actor, note=str(exc)[:500])
            raise
        atomic_write(self._item_path(tracking), json.dumps({
            "sender": sender, "recipient": f"{parsed.address.name}, {parsed.address.locality}",
            "message_id": str(message.get("Message-ID", "")),
            # what a reprint needs to put the item into a batch again
            "address": parsed.address.to_dict(), "pages": rendered.pages, "sheets": rendered.sheets,
            "sha256": rendered.sha256, "duplex": self.config.render.duplex,
        }, ensure_ascii=False).encode(), mode=FILE_MODE)
        rec = self.events.append(tracking, HybridEvent.ACCEPTED, actor=actor)
        batch_id = self.batches.add(PrintItem(
            tracking_number=tracking, sender=sender, address=parsed.address, pdf=rendered.pdf,
            pages=rendered.pages, sheets=rendered.sheets, sha256=rendered.sha256,
            duplex=self.config.render.duplex,
        ))
        self.events.append(tracking, HybridEvent.QUEUED_FOR_PRINT, actor=actor, note=batch_id)
        return Acceptance(tracking, batch_id, rendered, [self._notice(rec)])

    def _item_path(self, tracking: str) -> Path:
        self._items.mkdir(parents=True, exist_ok=True)
        return self._items / f"{tracking}.json"

    def _item(self, tracking: str) -> dict[str, Any]:
        try:
            item = json.loads(self._item_path(tracking).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise HybridStateError(f"no item record for {tracking}") from exc
        if not isinstance(item, dict):
            raise HybridStateError(f"item record of {tracking} is not an object")
        return item

    def _notice(self, rec: EventRecord) -> EmailMessage:
        item = self._item(rec.tracking_number)
        return build_status_email(
            rec, to_address=item["sender"], from_address=self.config.hybrid_address,
            recipient_summary=item["recipient"], in_reply_to=item.get("message_id") or None,
            reason=rec.reason,
        )

    def _batch_of(self, tracking: str) -> str | None:
        """The batch named by the item's latest QUEUED_FOR_PRINT (None: never queued)."""
        for rec in reversed(self.events.history(tracking)):
            if rec.event is HybridEvent.QUEUED_FOR_PRINT:
                return rec.note.split()[0] if rec.note else None
        return None

    def record_event(
        self, tracking_number: str, event: HybridEvent, *, actor: str, note: str = "", reason: str = ""
    ) -> tuple[EventRecord, EmailMessage | None]:
        """Log a status event (from the facility/CLI); returns the notice to deliver, if any.

        * ``QUEUED_FOR_PRINT`` (after ``PRINT_FAILED``) is a reprint: the item goes into its
          facility's open batch again, and the event names that batch;
        * ``PRINTED`` and ``PRINT_FAILED`` need the item's batch to be closed (the job was
          handed to the facility): a letter that is in no batch cannot have been printed;
        * the scan events belong to ``ingest`` and are refused here.

        Raises:
            HybridInputError: a scan event.
            HybridStateError: PRINTED/PRINT_FAILED for an item whose batch is not closed, or a
                reprint of an item whose print file is gone.
            TransitionError: ``event`` may not follow the current status.
        """
        tracking = validate_s10(tracking_number)
        event = HybridEvent(event)
        if event in SCAN_EVENTS:
            raise HybridInputError("event", M_("{event} is recorded by `esam hybrid ingest`, not by hand", event=event))
        if event is HybridEvent.QUEUED_FOR_PRINT:
            return self._reprint(tracking, actor=actor, note=note), None
        if event in (HybridEvent.PRINTED, HybridEvent.PRINT_FAILED):
            batch = self._batch_of(tracking)
            where = self.batches.location(batch, tracking) if batch else None
            if where != "closed":
                raise HybridStateError(
                    f"{tracking}: {event} refused: the item is in no closed print batch"
                    + (f" (batch {batch} is still open: close it first)" if where == "open" else "")
                )
        rec = self.events.append(tracking, event, actor=actor, note=note, reason=reason)
        return rec, (self._notice(rec) if needs_status_email(rec.event) else None)

    def _reprint(self, tracking: str, *, actor: str, note: str) -> EventRecord:
        """Put an item whose print failed into an open batch again (a reprint)."""
        current = self.events.current(tracking)
        if not can_transition(current, HybridEvent.QUEUED_FOR_PRINT):
            raise TransitionError(f"{tracking}: QUEUED_FOR_PRINT is not allowed after {current or 'no event'}")
        old = self._batch_of(tracking)
        item = self._item(tracking)
        if old is None or "address" not in item:
            raise HybridStateError(f"{tracking}: no earlier print file to reprint")
        pdf = self.batches.item_pdf(old, tracking)
        batch_id = self.batches.add(PrintItem(
            tracking_number=tracking, sender=item["sender"], address=PostalAddress(**item["address"]),
            pdf=pdf, pages=int(item["pages"]), sheets=int(item["sheets"]), sha256=item["sha256"],
            duplex=bool(item.get("duplex", False)),
        ))
        text = f"{batch_id} reprint" + (f" {note}" if note else "")
        return self.events.append(tracking, HybridEvent.QUEUED_FOR_PRINT, actor=actor, note=text)

    # -- paper -> e-mail: the scan's own events ------------------------------------------------
    def claim_scan(self, tracking_number: str, *, actor: str, note: str = "") -> EventRecord:
        """Record SCANNED for a paper item: a number is ingested at most once.

        Raises:
            HybridInputError: ``tracking_number`` was already ingested or belongs to an
                e-mail -> paper item.
        """
        tracking = validate_s10(tracking_number)
        try:
            return self.events.append(tracking, HybridEvent.SCANNED, actor=actor, note=note)
        except TransitionError:
            current = self.events.current(tracking)
            raise HybridInputError("tracking_number", (
                M_("{tracking} was already delivered as a scan; a paper item is ingested once", tracking=tracking)
                if current is HybridEvent.SCAN_DELIVERED else
                M_("{tracking} is in use ({state}); a paper item is ingested once", tracking=tracking, state=current)
            )) from None

    def scan_outcome(self, tracking_number: str, *, delivered: bool, actor: str, note: str = "") -> EventRecord:
        """SCAN_DELIVERED or SCAN_FAILED after :meth:`claim_scan`."""
        ev = HybridEvent.SCAN_DELIVERED if delivered else HybridEvent.SCAN_FAILED
        return self.events.append(validate_s10(tracking_number), ev, actor=actor, note=note)

    def ingest_scan(
        self, pdf: bytes, *, tracking_number: str, subscriber_address: str, sender_name: str = ""
    ) -> EmailMessage:
        """Build the message for a scanned paper letter (deliver it to ``subscriber_address``)."""
        return build_scanned_letter_message(
            pdf, tracking_number=tracking_number, subscriber_address=subscriber_address,
            hybrid_address=self.config.hybrid_address, sender_name=sender_name,
            max_pages=self.config.max_scan_pages, max_bytes=self.config.max_scan_bytes,
        )
