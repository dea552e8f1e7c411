"""Status events of hybrid items (e-mail -> paper), the append-only log and status e-mails.

Events (a subset of domain.md §4, modelled on UPU EMSEVT) and allowed transitions::

    (none) -> ACCEPTED | REJECTED
    ACCEPTED -> QUEUED_FOR_PRINT | REJECTED
    QUEUED_FOR_PRINT -> PRINTED | PRINT_FAILED
    PRINT_FAILED -> QUEUED_FOR_PRINT (reprint) | REJECTED (give up)
    PRINTED -> HANDED_TO_POST | PRINT_FAILED (spoiled sheet)
    HANDED_TO_POST -> DELIVERED | RETURNED
    DELIVERED, RETURNED, REJECTED: final

A QUEUED_FOR_PRINT always names the print batch the item is in (the note); a reprint
after PRINT_FAILED puts the item into an open batch again (:meth:`HybridPost.record_event`),
and PRINTED / PRINT_FAILED are accepted only once that batch was closed (handed to the
facility).

Paper -> e-mail (a scanned letter, ``esam hybrid ingest``) has its own events::

    (none) -> SCANNED                 the facility scanned the item (claims the number)
    SCANNED -> SCAN_DELIVERED | SCAN_FAILED
    SCAN_FAILED -> SCANNED            a new attempt (e.g. after the mailbox was freed)
    SCAN_DELIVERED: final             so one tracking number is ingested at most once

Log layout: one JSON-lines file per tracking number,
``<root>/<last two serial digits>/<S10>.jsonl``; each line is
``{"seq", "tracking_number", "event", "time" (UTC, RFC 3339), "actor", "note"}``.
Appends hold an fcntl lock on the file (so the transition check and the append are
atomic across processes) and fsync before returning.  Lines are never rewritten;
only an unterminated tail left by a crash mid-write (never acknowledged) is cut off.

:data:`NOTIFY_EVENTS` are the events that send a status e-mail to the sender;
:func:`build_status_email` builds it (Russian, Kazakh, English; texts in the ``hybrid``
gettext domain).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from enum import StrEnum
from pathlib import Path

from esam_mail.fsio import fsync_dir, write_all
from esam_mail.i18n import Translator
from esam_mail.services.hybrid.errors import M_, HybridInputError, HybridStateError, TransitionError
from esam_mail.services.hybrid.s10 import validate_s10

__all__ = [
    "NOTIFY_EVENTS",
    "RETURN_REASONS",
    "SCAN_EVENTS",
    "TRANSITIONS",
    "EventLog",
    "EventRecord",
    "HybridEvent",
    "build_status_email",
    "can_transition",
    "needs_status_email",
]


class HybridEvent(StrEnum):
    """Status of a hybrid item on the e-mail -> paper path."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    QUEUED_FOR_PRINT = "QUEUED_FOR_PRINT"
    PRINTED = "PRINTED"
    PRINT_FAILED = "PRINT_FAILED"
    HANDED_TO_POST = "HANDED_TO_POST"
    DELIVERED = "DELIVERED"
    RETURNED = "RETURNED"
    SCANNED = "SCANNED"
    SCAN_DELIVERED = "SCAN_DELIVERED"
    SCAN_FAILED = "SCAN_FAILED"


E = HybridEvent
#: current status (None: no event yet) -> events allowed next.
TRANSITIONS: Mapping[HybridEvent | None, frozenset[HybridEvent]] = {
    None: frozenset({E.ACCEPTED, E.REJECTED, E.SCANNED}),
    E.ACCEPTED: frozenset({E.QUEUED_FOR_PRINT, E.REJECTED}),
    E.QUEUED_FOR_PRINT: frozenset({E.PRINTED, E.PRINT_FAILED}),
    E.PRINT_FAILED: frozenset({E.QUEUED_FOR_PRINT, E.REJECTED}),
    E.PRINTED: frozenset({E.HANDED_TO_POST, E.PRINT_FAILED}),
    E.HANDED_TO_POST: frozenset({E.DELIVERED, E.RETURNED}),
    E.DELIVERED: frozenset(),
    E.RETURNED: frozenset(),
    E.REJECTED: frozenset(),
    E.SCANNED: frozenset({E.SCAN_DELIVERED, E.SCAN_FAILED}),
    E.SCAN_FAILED: frozenset({E.SCANNED}),
    E.SCAN_DELIVERED: frozenset(),
}
#: events of the paper -> e-mail path (a scanned letter); the CLI's ``status`` does not take them.
SCAN_EVENTS: frozenset[HybridEvent] = frozenset({E.SCANNED, E.SCAN_DELIVERED, E.SCAN_FAILED})
#: events that trigger a status e-mail to the sender.
NOTIFY_EVENTS: frozenset[HybridEvent] = frozenset({E.ACCEPTED, E.PRINTED, E.DELIVERED, E.RETURNED})


def can_transition(current: HybridEvent | None, new: HybridEvent) -> bool:
    """True if ``new`` may follow ``current``."""
    return new in TRANSITIONS[current]


def needs_status_email(event: HybridEvent) -> bool:
    """True if ``event`` sends a status e-mail to the sender."""
    return event in NOTIFY_EVENTS


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One line of an item's event log."""

    seq: int
    tracking_number: str
    event: HybridEvent
    time: datetime  # UTC
    actor: str  # "system", "facility:ALA", "operator:<login>", ...
    note: str = ""
    reason: str = ""  # why (RETURNED, PRINT_FAILED, REJECTED): a RETURN_REASONS code or text

    def to_json(self) -> str:
        """One JSON line (no newline)."""
        d = {
            "seq": self.seq, "tracking_number": self.tracking_number, "event": str(self.event),
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "actor": self.actor, "note": self.note,
        }
        if self.reason:
            d["reason"] = self.reason
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> EventRecord:
        """Parse a line written by :meth:`to_json`."""
        d = json.loads(line)
        return cls(
            seq=int(d["seq"]), tracking_number=d["tracking_number"], event=HybridEvent(d["event"]),
            time=datetime.fromisoformat(d["time"].replace("Z", "+00:00")), actor=d["actor"],
            note=d.get("note", ""), reason=d.get("reason", ""),
        )


class EventLog:
    """Append-only per-item event logs under ``root`` (multi-process safe)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, tracking: str) -> Path:
        return self.root / tracking[8:10] / f"{tracking}.jsonl"

    @staticmethod
    def _read_fd(fd: int) -> tuple[list[EventRecord], int]:
        """Records and the length of the complete (newline-terminated) part of the file."""
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        data = b"".join(chunks)
        complete = data.rfind(b"\n") + 1
        try:
            recs = [EventRecord.from_json(ln) for ln in data[:complete].decode().splitlines() if ln]
        except (ValueError, KeyError) as exc:
            raise HybridStateError(f"event log corrupt: {exc}") from exc
        return recs, complete

    def append(
        self,
        tracking_number: str,
        event: HybridEvent,
        *,
        actor: str,
        note: str = "",
        reason: str = "",
        now: datetime | None = None,
    ) -> EventRecord:
        """Append ``event`` if the transition from the current status is allowed.

        Raises:
            TransitionError: ``event`` may not follow the current status.
        """
        tracking = validate_s10(tracking_number)
        event = HybridEvent(event)
        if not actor or "\n" in actor:
            raise HybridInputError("actor", M_("must be a non-empty single line"))
        path = self._path(tracking)
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            recs, complete = self._read_fd(fd)
            current = recs[-1].event if recs else None
            if not can_transition(current, event):
                raise TransitionError(
                    f"{tracking}: {event} is not allowed after {current or 'no event'}"
                )
            if os.fstat(fd).st_size != complete:  # crash left a partial, unacknowledged line
                os.ftruncate(fd, complete)
            rec = EventRecord(
                seq=len(recs) + 1, tracking_number=tracking, event=event,
                time=(now or datetime.now(UTC)).astimezone(UTC), actor=actor,
                note=" ".join(note.split()), reason=" ".join(reason.split())[:200],
            )
            os.lseek(fd, 0, os.SEEK_END)
            write_all(fd, (rec.to_json() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(path.parent)
        return rec

    def history(self, tracking_number: str) -> list[EventRecord]:
        """Every event of the item, oldest first (empty if none)."""
        path = self._path(validate_s10(tracking_number))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            return self._read_fd(fd)[0]
        finally:
            os.close(fd)

    def current(self, tracking_number: str) -> HybridEvent | None:
        """The item's latest status, None if it has no events."""
        h = self.history(tracking_number)
        return h[-1].event if h else None


# Status texts, (subject word, body sentence) per event: English msgids of the ``hybrid``
# gettext domain (esam_mail/locale/<lang>/LC_MESSAGES/hybrid.po has Kazakh and Russian).
_TEXTS: dict[HybridEvent, tuple[str, str]] = {
    E.ACCEPTED: ("Accepted", "Your letter has been accepted for delivery on paper. Tracking number: {tracking}."),
    E.QUEUED_FOR_PRINT: ("Queued for printing", "Letter {tracking} is queued for printing."),
    E.PRINTED: ("Printed", "Letter {tracking} has been printed and is being prepared for posting."),
    E.PRINT_FAILED: ("Printing failed", "Printing letter {tracking} failed."),
    E.HANDED_TO_POST: ("Handed to the post", "Letter {tracking} has been handed to the postal network."),
    E.DELIVERED: ("Delivered", "Letter {tracking} has been delivered to the recipient."),
    E.RETURNED: ("Returned", "Letter {tracking} could not be delivered and has been returned."),
    E.SCANNED: ("Scanned", "Paper letter {tracking} has been scanned."),
    E.SCAN_DELIVERED: ("Delivered to the mailbox", "The scan of letter {tracking} has been delivered to the mailbox."),
    E.SCAN_FAILED: ("Not delivered to the mailbox", "The scan of letter {tracking} could not be delivered to the mailbox."),
    E.REJECTED: ("Rejected", "Letter {tracking} cannot be sent on paper."),
}

#: The languages of a status e-mail, in order (one e-mail for every reader of the letter).
EMAIL_LANGUAGES = ("ru", "kk", "en")


#: Why a letter comes back (UPU return reasons, as a facility reports them with
#: ``esam hybrid status S10 RETURNED --reason CODE``): code -> English text (a ``hybrid`` msgid).
RETURN_REASONS: Mapping[str, str] = {
    "addressee_unknown": "addressee unknown at this address",
    "moved": "addressee has moved",
    "refused": "refused by the addressee",
    "not_called_for": "not called for (storage period expired)",
    "insufficient_address": "insufficient or incorrect address",
    "no_such_address": "no such address",
    "deceased": "addressee deceased",
    "damaged": "item damaged",
}


def reason_text(reason: str, lang: str) -> str:
    """The reason in *lang*: a :data:`RETURN_REASONS` code translated, else the text as given."""
    known = RETURN_REASONS.get(reason.strip().lower())
    if known is None:
        return " ".join(reason.split())
    return Translator("hybrid", lang)(known)


def build_status_email(
    record: EventRecord,
    *,
    to_address: str,
    from_address: str,
    from_name: str = "Қазпошта / Казпочта / Kazpost",
    recipient_summary: str = "",
    in_reply_to: str | None = None,
    reason: str = "",
) -> EmailMessage:
    """Build the status e-mail for ``record`` to the sender of the item.

    Args:
        record: the event (its tracking number and time are quoted).
        to_address: the sender's mailbox address.
        from_address: the operator's hybrid-mail address (e.g. ``hybrid@pochta.kz``).
        from_name: display name for From.
        recipient_summary: optional "name, locality" of the paper recipient.
        in_reply_to: Message-ID of the original e-mail, to thread the notice.
        reason: why the letter was returned (or failed): a :data:`RETURN_REASONS` code or
            free text; quoted in every language.

    Returns:
        a message with Date, Message-ID, ``Auto-Submitted: auto-generated`` and
        ``X-Esam-Tracking``; the caller delivers it into the sender's mailbox.
    """
    word, sentence = _TEXTS[record.event]
    t = record.tracking_number
    subject = " / ".join(Translator("hybrid", lang)(word) for lang in EMAIL_LANGUAGES)
    when = record.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = []
    for lang in EMAIL_LANGUAGES:
        _ = Translator("hybrid", lang)
        lines = [_(sentence, tracking=t)]
        if reason.strip():
            lines.append(f"{_('Reason')}: {reason_text(reason, lang)}")
        if recipient_summary:
            lines.append(f"{_('Recipient')}: {' '.join(recipient_summary.split())}")
        lines.append(f"{_('Time')}: {when}")
        parts.append("\n".join(lines))
    msg = EmailMessage()
    msg["From"] = formataddr((from_name, from_address))
    msg["To"] = to_address
    msg["Subject"] = f"[{t}] {subject}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid("hybrid", domain=from_address.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Esam-Tracking"] = t
    msg["X-Esam-Hybrid-Event"] = str(record.event)
    if reason.strip():
        msg["X-Esam-Hybrid-Reason"] = " ".join(reason.split())[:200]
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content("\n\n".join(parts) + "\n\n-- \nesam hybrid mail\n")
    return msg
