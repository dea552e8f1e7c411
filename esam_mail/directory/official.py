"""Directory queries of the official documents channel and of staff accounts.

The services (``services/official/channel.py``, ``services/accounts/staff.py``) hold the policy and the
cryptography; this module holds every SQL statement they need, so that SQLAlchemy stays
behind ``directory/``.  Evidence is appended through :meth:`OfficialTables.advance`: one
transaction loads the message and its latest record, checks the state guard, asks the
caller's ``build`` callback for the signed record (the callback signs; it never touches
the database), stores it and moves the message on.  Two processes advancing the same
message from the same state: the guard lets exactly one through.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from esam_mail.directory.models import (
    AgreementVersion,
    Application,
    AuditEvent,
    EdsConfirmation,
    Mailbox,
    OfficialEvidence,
    OfficialMessage,
    OfficialSender,
    StaffAccount,
    Subscriber,
)
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import DirectoryError, NotFound

__all__ = [
    "Conflict", "EdsTables", "LiveConfirmation", "MessageRow", "OfficialTables", "SenderRow", "StaffRow",
    "StaffTables", "Target",
]


class Conflict(DirectoryError):
    """A uniqueness rule refused the write (name, fingerprint, username, OS user taken)."""


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class SenderRow:
    id: int
    name: str
    display_name: str
    bin: str | None
    cert_fingerprint: str | None
    public_key_pem: str | None
    notify_address: str | None
    active: bool


def _sender(r: OfficialSender) -> SenderRow:
    return SenderRow(r.id, r.name, r.display_name, r.bin, r.cert_fingerprint, r.public_key_pem,
                     r.notify_address, r.removed_at is None)


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: int
    public_id: str
    sender_id: int
    recipient_kind: str
    recipient_id: str
    address: str | None
    login_norm: str | None
    subject: str
    document_name: str
    document_sha256: str
    signed_by: str
    signer_fingerprint: str | None
    state: str


def _message(m: OfficialMessage) -> MessageRow:
    return MessageRow(m.id, m.public_id, m.sender_id, m.recipient_kind, m.recipient_id, m.address,
                      m.login_norm, m.subject, m.document_name, m.document_sha256, m.signed_by,
                      m.signer_fingerprint, m.state)


@dataclass(frozen=True, slots=True)
class Target:
    """The mailbox an official document goes to."""

    id: int
    login_norm: str
    address: str
    quota_bytes: int | None


#: build(message, seq, prev_hash) -> the signed record (a JSON-able dict) and its hash
Builder = Callable[[MessageRow, int, str | None], tuple[dict[str, Any], str]]


class OfficialTables:
    def __init__(self, directory: SqlDirectory) -> None:
        self.d = directory

    # -- senders ---------------------------------------------------------------------
    async def add_sender(self, *, actor: tuple[str, str], **fields: Any) -> SenderRow:
        try:
            async with self.d.transaction() as s:
                row = OfficialSender(**fields)
                s.add(row)
                await s.flush()
                s.add(AuditEvent(actor_kind=actor[0], actor_id=actor[1][:128], action="official.sender.add",
                                 target=row.name, outcome="ok",
                                 detail={"bin": row.bin, "cert_fingerprint": row.cert_fingerprint}))
        except IntegrityError:
            raise Conflict(fields.get("name", "")) from None
        return _sender(row)

    async def list_senders(self, *, include_removed: bool) -> list[SenderRow]:
        async with self.d.readers() as s:
            q = select(OfficialSender).order_by(OfficialSender.name)
            if not include_removed:
                q = q.where(OfficialSender.removed_at.is_(None))
            return [_sender(r) for r in (await s.execute(q)).scalars()]

    async def remove_sender(self, name: str, now: dt.datetime, *, actor: tuple[str, str]) -> SenderRow:
        async with self.d.transaction() as s:
            row = (await s.execute(select(OfficialSender).where(
                OfficialSender.name == name, OfficialSender.removed_at.is_(None)))).scalar_one_or_none()
            if row is None:
                raise NotFound(f"sender {name}")
            row.removed_at = now
            row.cert_fingerprint = None  # frees the certificate for a new registration
            s.add(AuditEvent(actor_kind=actor[0], actor_id=actor[1][:128], action="official.sender.remove",
                             target=row.name, outcome="ok", detail={}))
            await s.flush()
            return _sender(row)

    async def sender(self, *, name: str | None = None, fingerprint: str | None = None,
                     sender_id: int | None = None) -> SenderRow | None:
        async with self.d.readers() as s:
            if sender_id is not None:
                r = await s.get(OfficialSender, sender_id)
                return _sender(r) if r else None
            q = select(OfficialSender).where(OfficialSender.removed_at.is_(None))
            if fingerprint is not None:
                q = q.where(OfficialSender.cert_fingerprint == fingerprint)
            elif name is not None:
                q = q.where(OfficialSender.name == name)
            else:
                return None
            row = (await s.execute(q)).scalar_one_or_none()
            return _sender(row) if row else None

    # -- recipients ------------------------------------------------------------------
    async def resolve(self, kind: str, ident: str, now: dt.datetime) -> tuple[Target | None, str]:
        """The holder's active mailbox with a live (not lapsed, not expired) EDS
        confirmation, or ``(None, why)``."""
        col = Subscriber.iin if kind == "iin" else Subscriber.bin
        skind = "individual" if kind == "iin" else "legal_entity"
        async with self.d.readers() as s:
            rows = (await s.execute(
                select(Mailbox).join(Subscriber, Mailbox.subscriber_id == Subscriber.id)
                .where(col == ident, Subscriber.kind == skind, Mailbox.state != "closed")
                .order_by(Mailbox.id.desc())
            )).scalars().all()
            if not rows:
                return None, "no_mailbox"
            why = "not_confirmed"
            for m in rows:
                if not m.eds_confirmed:
                    continue
                if m.state != "active":
                    why = f"mailbox_{m.state}"
                    continue
                latest = (await s.execute(
                    select(EdsConfirmation).where(EdsConfirmation.mailbox_id == m.id)
                    .order_by(EdsConfirmation.id.desc()).limit(1)
                )).scalar_one_or_none()
                if latest is None or latest.lapsed_at is not None:
                    why = "confirmation_lapsed"
                    continue
                if _utc(latest.not_after) <= now:
                    why = "certificate_expired"
                    continue
                return Target(m.id, m.login_norm, m.address, m.quota_bytes), "ok"
            return None, why

    # -- messages and evidence -------------------------------------------------------
    async def create(self, fields: dict[str, Any], build: Builder, *, at: dt.datetime,
                     purge_after: dt.datetime) -> tuple[MessageRow, dict[str, Any]]:
        """Insert the message and its first (SUBMITTED) record in one transaction."""
        async with self.d.transaction() as s:
            msg = OfficialMessage(**fields)
            s.add(msg)
            await s.flush()
            rec, h = build(_message(msg), 1, None)
            s.add(OfficialEvidence(message_id=msg.id, seq=1, event=rec["event"], at=at,
                                   record=json.dumps(rec, ensure_ascii=False, sort_keys=True),
                                   record_hash=h, purge_after=purge_after))
            await s.flush()
            return _message(msg), rec

    async def advance(
        self, message_id: int, build: Builder, *, at: dt.datetime, purge_after: dt.datetime,
        from_states: Sequence[str], to_state: str, updates: dict[str, Any] | None = None,
        audit: tuple[str, str, str, str, str, dict[str, Any]] | None = None,
    ) -> tuple[MessageRow, dict[str, Any]] | None:
        """Append the next record and move the message to ``to_state``, if it is in one of
        ``from_states`` (else ``None``: another process got there first)."""
        async with self.d.transaction() as s:
            res = await s.execute(update(OfficialMessage).where(
                OfficialMessage.id == message_id, OfficialMessage.state.in_(list(from_states)))
                .values(state=to_state, **(updates or {})))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return None
            msg = await s.get(OfficialMessage, message_id)
            if msg is None:
                return None
            await s.refresh(msg)
            last = (await s.execute(
                select(OfficialEvidence).where(OfficialEvidence.message_id == message_id)
                .order_by(OfficialEvidence.seq.desc()).limit(1)
            )).scalar_one_or_none()
            seq = 1 if last is None else last.seq + 1
            rec, h = build(_message(msg), seq, None if last is None else last.record_hash)
            s.add(OfficialEvidence(message_id=message_id, seq=seq, event=rec["event"], at=at,
                                   record=json.dumps(rec, ensure_ascii=False, sort_keys=True),
                                   record_hash=h, purge_after=purge_after))
            if audit is not None:
                kind, ident, action, target, outcome, detail = audit
                s.add(AuditEvent(actor_kind=kind, actor_id=ident[:128], action=action, target=target[:320],
                                 outcome=outcome, detail=detail))
            await s.flush()
            return _message(msg), rec

    async def message(self, *, public_id: str | None = None, row_id: int | None = None) -> MessageRow:
        async with self.d.readers() as s:
            if row_id is not None:
                m = await s.get(OfficialMessage, row_id)
            else:
                m = (await s.execute(select(OfficialMessage).where(
                    OfficialMessage.public_id == public_id))).scalar_one_or_none()
            if m is None:
                raise NotFound(f"official message {public_id or row_id}")
            return _message(m)

    async def records(self, message_row_id: int) -> list[dict[str, Any]]:
        async with self.d.readers() as s:
            rows = (await s.execute(select(OfficialEvidence.record).where(
                OfficialEvidence.message_id == message_row_id).order_by(OfficialEvidence.seq))).scalars()
            return [json.loads(r) for r in rows]

    async def pending(self) -> list[tuple[int, str, str]]:
        """(row id, login, Maildir key) of every delivered, not yet retrieved message."""
        async with self.d.readers() as s:
            rows = await s.execute(select(OfficialMessage.id, OfficialMessage.login_norm,
                                          OfficialMessage.maildir_key)
                                   .where(OfficialMessage.state == "delivered"))
            return [(i, lg, k) for i, lg, k in rows if lg and k]

    async def overdue(self, now: dt.datetime, limit: int = 500) -> list[int]:
        async with self.d.readers() as s:
            return list((await s.execute(select(OfficialMessage.id).where(
                OfficialMessage.state == "delivered", OfficialMessage.retrieval_deadline < now)
                .limit(limit))).scalars())

    async def purge(self, now: dt.datetime) -> int:
        """Drop evidence past its retention, then messages left without evidence."""
        async with self.d.transaction() as s:
            await s.execute(delete(OfficialEvidence).where(OfficialEvidence.purge_after < now))
            has_evidence = exists().where(OfficialEvidence.message_id == OfficialMessage.id)
            gone = (await s.execute(select(OfficialMessage.id).where(
                OfficialMessage.purge_after < now, ~has_evidence).limit(1000))).scalars().all()
            if gone:
                await s.execute(delete(OfficialMessage).where(OfficialMessage.id.in_(gone)))
            return len(gone)


# ------------------------------------------------------------------------------ staff


@dataclass(frozen=True, slots=True)
class StaffRow:
    id: int
    username: str
    display_name: str
    role: str
    office_code: str | None
    os_user: str | None
    active: bool
    password_hash: str
    totp_secret: str | None


def _staff(r: StaffAccount) -> StaffRow:
    return StaffRow(r.id, r.username, r.display_name, r.role, r.office_code, r.os_user,
                    r.state == "active", r.password_hash, r.totp_secret)


class StaffTables:
    def __init__(self, directory: SqlDirectory) -> None:
        self.d = directory

    async def add(self, *, actor: tuple[str, str], **fields: Any) -> StaffRow:
        try:
            async with self.d.transaction() as s:
                row = StaffAccount(state="active", **fields)
                s.add(row)
                await s.flush()
                s.add(AuditEvent(actor_kind=actor[0], actor_id=actor[1][:128], action="staff.add",
                                 target=row.username, outcome="ok",
                                 detail={"role": row.role, "office": row.office_code}))
        except IntegrityError:
            raise Conflict(fields.get("username", "")) from None
        return _staff(row)

    async def get(self, username: str) -> StaffRow | None:
        async with self.d.readers() as s:
            row = (await s.execute(select(StaffAccount).where(StaffAccount.username == username))).scalar_one_or_none()
            return _staff(row) if row else None

    async def by_os_user(self, os_user: str) -> StaffRow | None:
        async with self.d.readers() as s:
            row = (await s.execute(select(StaffAccount).where(
                StaffAccount.os_user == os_user, StaffAccount.state == "active"))).scalar_one_or_none()
            return _staff(row) if row else None

    async def list(self) -> list[StaffRow]:
        async with self.d.readers() as s:
            return [_staff(r) for r in (await s.execute(select(StaffAccount).order_by(StaffAccount.username))).scalars()]

    async def change(self, username: str, *, actor: tuple[str, str], action: str,
                     check: Callable[[StaffRow], None] | None = None, **values: Any) -> StaffRow:
        """Update fields of one account (``check`` sees the result before the commit)."""
        async with self.d.transaction() as s:
            row = (await s.execute(select(StaffAccount).where(StaffAccount.username == username))).scalar_one_or_none()
            if row is None:
                raise NotFound(f"staff account {username}")
            before = {k: getattr(row, k) for k in values}
            for k, v in values.items():
                setattr(row, k, v)
            if check is not None:
                check(_staff(row))
            s.add(AuditEvent(actor_kind=actor[0], actor_id=actor[1][:128], action=action, target=row.username,
                             outcome="ok", detail={"from": before, "to": values}))
            await s.flush()
            return _staff(row)


# ------------------------------------------------------------------- EDS re-checks


@dataclass(frozen=True, slots=True)
class LiveConfirmation:
    id: int
    mailbox_id: int
    address: str
    serial: str
    not_after: dt.datetime
    certificate: bytes | None
    issuer_certificate: bytes | None


class EdsTables:
    """The EDS confirmations the re-check looks at, and the lapse that ends one."""

    def __init__(self, directory: SqlDirectory) -> None:
        self.d = directory

    async def live(self) -> list[LiveConfirmation]:
        """The latest confirmation of every EDS-confirmed mailbox, if it has not lapsed."""
        async with self.d.readers() as s:
            latest = (select(EdsConfirmation.mailbox_id, func.max(EdsConfirmation.id).label("cid"))
                      .group_by(EdsConfirmation.mailbox_id).subquery())
            rows = await s.execute(
                select(EdsConfirmation, Mailbox.address)
                .join(latest, EdsConfirmation.id == latest.c.cid)
                .join(Mailbox, Mailbox.id == EdsConfirmation.mailbox_id)
                .where(Mailbox.eds_confirmed.is_(True), EdsConfirmation.lapsed_at.is_(None))
                .order_by(EdsConfirmation.id)
            )
            return [LiveConfirmation(c.id, c.mailbox_id, addr, c.cert_serial, _utc(c.not_after), c.certificate,
                                     c.issuer_certificate) for c, addr in rows]

    async def checked(self, ids: Sequence[int], now: dt.datetime) -> None:
        if ids:
            async with self.d.transaction() as s:
                await s.execute(update(EdsConfirmation).where(EdsConfirmation.id.in_(list(ids)))
                                .values(checked_at=now))

    async def lapse(self, confirmation_id: int, reason: str, now: dt.datetime) -> bool:
        """End a confirmation: the mailbox is no longer enabled for official documents.
        False when it had lapsed already (another process)."""
        async with self.d.transaction() as s:
            res = await s.execute(update(EdsConfirmation).where(
                EdsConfirmation.id == confirmation_id, EdsConfirmation.lapsed_at.is_(None))
                .values(lapsed_at=now, lapse_reason=reason, checked_at=now))
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return False
            c = await s.get(EdsConfirmation, confirmation_id)
            assert c is not None
            m = await s.get(Mailbox, c.mailbox_id)
            assert m is not None
            m.eds_confirmed = False
            s.add(AuditEvent(actor_kind="system", actor_id="eds-recheck", action="eds.lapse", target=m.address,
                             outcome="ok", detail={"reason": reason, "serial": c.cert_serial}))
            await s.flush()
            return True


@dataclass(frozen=True, slots=True)
class Found:
    """A mailbox found by the staff console's search (no message content, ever)."""

    login: str
    address: str
    state: str
    kind: str
    eds_confirmed: bool
    holder: str | None
    iin: str | None
    bin: str | None


async def search_mailboxes(directory: SqlDirectory, query: str, limit: int = 50) -> list[Found]:
    """By IIN/BIN (12 digits), login or address (prefix), or the holder's name (substring)."""
    q = query.strip()
    if not q:
        return []
    stmt = select(Mailbox, Subscriber).outerjoin(Subscriber, Mailbox.subscriber_id == Subscriber.id)
    if q.isdigit() and len(q) == 12:
        stmt = stmt.where((Subscriber.iin == q) | (Subscriber.bin == q))
    else:
        raw = q.replace("\\", "").replace("%", "").replace("_", "\\_")[:100]
        needle = raw.lower()
        stmt = stmt.where(
            Mailbox.login_norm.like(f"{needle}%", escape="\\")
            | Mailbox.address_norm.like(f"{needle}%", escape="\\")
            | func.lower(Subscriber.display_name).like(f"%{needle}%", escape="\\")
            | Subscriber.display_name.like(f"%{raw}%", escape="\\")  # SQLite lower() is ASCII only
        )
    async with directory.readers() as s:
        rows = (await s.execute(stmt.order_by(Mailbox.id).limit(limit))).all()
    return [Found(m.login, m.address, m.state, m.kind, m.eds_confirmed, sub.display_name if sub else None,
                  sub.iin if sub else None, sub.bin if sub else None) for m, sub in rows]


@dataclass(frozen=True, slots=True)
class ApplicationRow:
    id: int
    kind: str
    data: dict[str, Any]
    office_code: str | None
    employee_id: str | None
    submitted_at: dt.datetime
    agreement_version: str


async def application_for(directory: SqlDirectory, subscriber_id: int | None) -> ApplicationRow | None:
    """The latest application of a subscriber (the paper form is printed from it)."""
    if subscriber_id is None:
        return None
    async with directory.readers() as s:
        row = (await s.execute(
            select(Application, Subscriber.kind, AgreementVersion.version)
            .join(Subscriber, Subscriber.id == Application.subscriber_id)
            .join(AgreementVersion, AgreementVersion.id == Application.agreement_version_id)
            .where(Application.subscriber_id == subscriber_id).order_by(Application.id.desc()).limit(1)
        )).first()
    if row is None:
        return None
    a, kind, version = row
    return ApplicationRow(a.id, kind, dict(a.data), a.office_code, a.employee_id, _utc(a.submitted_at), version)
