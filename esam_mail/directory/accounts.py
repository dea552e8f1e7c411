"""Directory queries of registration and EDS confirmation.

The services (``services/accounts/registration.py``, ``services/accounts/confirmation.py``)
hold the policy: what is valid, who may confirm, what a refusal says.  This module holds
every SQL statement they need, so that SQLAlchemy stays behind ``directory/``; they see
frozen records, never ORM rows or sessions.

Writes that must be atomic stay one transaction here: a registration inserts the
subscriber, the application, the mailbox and the audit event together, and calls the
caller's ``prepare`` (which makes the Maildir) before the commit, so a mailbox is never
visible without its Maildir; a confirmation marks its challenge used with ``UPDATE ...
WHERE used_at IS NULL`` in the transaction that records it, so one challenge confirms once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from esam_mail.directory.models import (
    AgreementVersion,
    Application,
    AuditEvent,
    EdsChallenge,
    EdsConfirmation,
    Mailbox,
    Subscriber,
)
from esam_mail.directory.sql import SqlDirectory
from esam_mail.errors import DirectoryError, NotFound

__all__ = [
    "AgreementRow", "ChallengeRow", "ConfirmationRow", "ConfirmationTables", "NewApplication",
    "NewConfirmation", "NewSubscriber", "NotHeld", "RegisteredRows", "RegistrationTables",
]


def _utc(value: dt.datetime) -> dt.datetime:
    """Aware UTC (SQLite hands back naive datetimes; they were stored as UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _values(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


def _audit(actor: tuple[str, str], action: str, target: str, outcome: str, detail: dict[str, Any]) -> AuditEvent:
    return AuditEvent(actor_kind=actor[0], actor_id=actor[1][:128], action=action, target=target[:320],
                      outcome=outcome, detail=detail)


# --------------------------------------------------------------------------- registration


class NotHeld(DirectoryError):
    """The mailbox to approve is not held (it is active, suspended, ...)."""

    def __init__(self, address: str, state: str) -> None:
        super().__init__(f"{address} is {state}")
        self.address = address
        self.state = state


@dataclass(frozen=True, slots=True)
class AgreementRow:
    """A recorded agreement version: its row id, label, text hash and date (aware UTC)."""

    id: int
    version: str
    sha256: str
    effective_date: dt.datetime


@dataclass(frozen=True, slots=True)
class NewSubscriber:
    kind: str
    iin: str | None
    bin: str | None
    display_name: str
    data: dict[str, Any]
    language: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class NewApplication:
    channel: str
    office_code: str | None
    employee_id: str | None
    requested_username: str
    data: dict[str, Any]
    submitted_at: dt.datetime
    agreement_version_id: int
    agreement_sha256: str
    agreement_language: str | None
    consent_at: dt.datetime
    signature: bytes | None
    signer_fingerprint: str | None
    registry_verdict: str | None
    status: str
    signer_role: str | None = None
    poa_number: str | None = None
    poa_date: dt.date | None = None


@dataclass(frozen=True, slots=True)
class RegisteredRows:
    address: str
    login: str  # normalized: the store's user key
    application_id: int
    mailbox_id: int


class RegistrationTables:
    """Agreement versions, applications and the mailboxes they create."""

    def __init__(self, directory: SqlDirectory) -> None:
        self.d = directory

    async def agreement(self, version: str, sha256: str, now: dt.datetime) -> AgreementRow | None:
        """The row of *version*, recorded with *sha256* if it is new.

        Safe when several processes record one version at once (the loser reads the
        winner's row); the caller compares the hashes.  ``None``: three tries failed.
        """
        for _attempt in range(3):
            try:
                async with self.d.transaction() as s:
                    q = select(AgreementVersion).where(AgreementVersion.version == version)
                    row = (await s.execute(q)).scalar_one_or_none()
                    if row is None:
                        row = AgreementVersion(version=version, sha256=sha256, effective_date=now)
                        s.add(row)
                        await s.flush()
                    return AgreementRow(row.id, row.version, row.sha256, _utc(row.effective_date))
            except IntegrityError:
                continue  # another process recorded it first: read theirs
        return None

    async def register(
        self,
        subscriber: NewSubscriber,
        application: NewApplication,
        *,
        login: str,
        password_hash: str,
        owner_key: str | None,
        state: str,
        actor: tuple[str, str],
        detail: dict[str, Any],
        prepare: Callable[[str], Awaitable[None]],
    ) -> RegisteredRows:
        """One transaction: subscriber, application, personal mailbox, audit ``mailbox.register``.

        ``prepare(login_norm)`` runs after the inserts and before the commit; if it raises,
        nothing is written.  The audit detail is ``application_id``, ``mailbox_id`` and *detail*.

        Raises:
            LoginTaken: the name was issued before; OwnerKeyTaken: *owner_key* has an open mailbox.
        """
        async with self.d.transaction() as s:
            sub = Subscriber(**_values(subscriber))
            s.add(sub)
            await s.flush()
            app = Application(subscriber_id=sub.id, **_values(application))
            s.add(app)
            await s.flush()
            m = await self.d.add_mailbox(s, login, password_hash, kind="personal", subscriber_id=sub.id,
                                         owner_key=owner_key, state=state)
            s.add(_audit(actor, "mailbox.register", m.address, "ok",
                         {"application_id": app.id, "mailbox_id": m.id, **detail}))
            await s.flush()
            await prepare(m.login_norm)
            return RegisteredRows(m.address, m.login_norm, app.id, m.id)

    async def approve_held(self, login: str, *, actor: tuple[str, str]) -> tuple[int, str]:
        """Make a held mailbox active and its held applications accepted; audit ``mailbox.approve``.

        Returns the mailbox id and address.  Raises NotFound or :class:`NotHeld`.
        """
        key = self.d.login_of(login)
        async with self.d.transaction() as s:
            m = (await s.execute(select(Mailbox).where(Mailbox.login_norm == key))).scalar_one_or_none()
            if m is None:
                raise NotFound(login)
            if m.state != "held":
                raise NotHeld(m.address, m.state)
            m.state = "active"
            if m.subscriber_id is not None:
                apps = await s.execute(
                    select(Application).where(Application.subscriber_id == m.subscriber_id,
                                              Application.status == "held"))
                for a in apps.scalars():
                    a.status = "accepted"
            s.add(_audit(actor, "mailbox.approve", m.address, "ok", {"from": "held"}))
            await s.flush()
            return m.id, m.address


# --------------------------------------------------------------------------- EDS confirmation


@dataclass(frozen=True, slots=True)
class ChallengeRow:
    id: int
    mailbox_id: int
    nonce: str
    expires_at: dt.datetime  # aware UTC
    used_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class NewConfirmation:
    cert_fingerprint: str
    cert_serial: str
    cert_issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    signer_iin: str | None
    signer_bin: str | None
    confirmed_at: dt.datetime
    certificate: bytes | None
    issuer_certificate: bytes | None


@dataclass(frozen=True, slots=True)
class ConfirmationRow:
    """A recorded confirmation (datetimes aware UTC)."""

    cert_fingerprint: str
    cert_serial: str
    cert_issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    signer_iin: str | None
    signer_bin: str | None
    confirmed_at: dt.datetime


def _confirmation(c: EdsConfirmation) -> ConfirmationRow:
    return ConfirmationRow(c.cert_fingerprint, c.cert_serial, c.cert_issuer, _utc(c.not_before),
                           _utc(c.not_after), c.signer_iin, c.signer_bin, _utc(c.confirmed_at))


def _challenge(c: EdsChallenge) -> ChallengeRow:
    return ChallengeRow(c.id, c.mailbox_id, c.nonce, _utc(c.expires_at),
                        _utc(c.used_at) if c.used_at is not None else None)


class ConfirmationTables:
    """EDS challenges and confirmations."""

    def __init__(self, directory: SqlDirectory) -> None:
        self.d = directory

    async def add_challenge(self, mailbox_id: int, nonce: str, *, created_at: dt.datetime,
                            expires_at: dt.datetime, actor: tuple[str, str], address: str) -> None:
        """Store a challenge and its audit event ``eds.challenge`` in one transaction."""
        async with self.d.transaction() as s:
            s.add(EdsChallenge(mailbox_id=mailbox_id, nonce=nonce, created_at=created_at, expires_at=expires_at))
            await s.flush()
            s.add(_audit(actor, "eds.challenge", address, "ok", {"expires_at": expires_at.isoformat()}))

    async def challenge(self, mailbox_id: int, nonce: str | None) -> ChallengeRow | None:
        """The challenge with *nonce*, or with ``None`` the newest of the mailbox."""
        if nonce is None:
            q = (select(EdsChallenge).where(EdsChallenge.mailbox_id == mailbox_id)
                 .order_by(EdsChallenge.id.desc()).limit(1))
        else:
            q = select(EdsChallenge).where(EdsChallenge.nonce == nonce)
        async with self.d.readers() as s:
            row = (await s.execute(q)).scalar_one_or_none()
            return _challenge(row) if row is not None else None

    async def confirm(self, challenge_id: int, mailbox_id: int, new: NewConfirmation, *, used_at: dt.datetime,
                      actor: tuple[str, str], address: str, detail: dict[str, Any]) -> ConfirmationRow | None:
        """Use the challenge, record the confirmation, mark the mailbox EDS-confirmed and audit
        ``eds.confirm``, in one transaction.  ``None`` (nothing written): the challenge was used."""
        async with self.d.transaction() as s:
            used = await s.execute(
                update(EdsChallenge).where(EdsChallenge.id == challenge_id, EdsChallenge.used_at.is_(None))
                .values(used_at=used_at))
            if used.rowcount != 1:  # type: ignore[attr-defined]
                return None  # a concurrent confirmation won; the rollback undoes nothing
            row = EdsConfirmation(mailbox_id=mailbox_id, **_values(new))
            s.add(row)
            await s.execute(update(Mailbox).where(Mailbox.id == mailbox_id).values(eds_confirmed=True))
            s.add(_audit(actor, "eds.confirm", address, "ok", detail))
            await s.flush()
            return _confirmation(row)

    async def latest(self, mailbox_id: int) -> ConfirmationRow | None:
        """The newest confirmation of the mailbox (lapsed or not)."""
        async with self.d.readers() as s:
            q = (select(EdsConfirmation).where(EdsConfirmation.mailbox_id == mailbox_id)
                 .order_by(EdsConfirmation.id.desc()).limit(1))
            c = (await s.execute(q)).scalar_one_or_none()
            return _confirmation(c) if c is not None else None
