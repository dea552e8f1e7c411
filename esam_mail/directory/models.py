"""SQLAlchemy 2 models of the directory: the single database of all mailboxes.

Tables (see the rules, paragraphs 4-7, 11-13):

* ``agreement_versions``: user-agreement versions (label, SHA-256 of the text).
* ``subscribers``: individuals (IIN) and legal entities (BIN), plus ``service``
  subscribers that own the operator's role mailboxes (postmaster, abuse...).
* ``applications``: every application as submitted (channel, office, employee,
  requested name, data, agreement consent, signature).
* ``mailboxes``: address, login, state, quota, password hash.  ``login_norm``
  has a plain named UNIQUE constraint and rows are never deleted (closing sets
  ``state='closed'``), so an address, once issued, is never issued again.
  ``owner_key`` is set to the IIN of a personal mailbox when the
  one-mailbox-per-IIN policy is on; a partial unique index over open mailboxes
  enforces it in the database.
* ``eds_challenges`` / ``eds_confirmations``: EDS account confirmation.
* ``audit_events``: append-only record of administrative actions.
* ``auth_failures``: failed-login counters shared by all processes and nodes.
* ``official_senders`` / ``official_messages`` / ``official_evidence``: the official
  electronic documents channel (state bodies -> EDS-confirmed mailboxes) and its
  signed, hash-chained evidence (ETSI EN 319 522 in spirit).
* ``staff_accounts``: post-office and operator staff (role, office, password, TOTP).
* ``aliases`` / ``alias_targets``: role addresses (postmaster, abuse...) and other
  aliases; a name is never both an alias and a login (see :class:`Alias`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


TS = DateTime(timezone=True)


class AgreementVersion(Base):
    __tablename__ = "agreement_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    effective_date: Mapped[dt.datetime] = mapped_column(TS)


class Subscriber(Base):
    __tablename__ = "subscribers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # individual | legal_entity | service
    iin: Mapped[str | None] = mapped_column(String(12), index=True)
    bin: Mapped[str | None] = mapped_column(String(12), index=True)
    display_name: Mapped[str] = mapped_column(String(512))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # the validated form fields
    # kk | ru | en: notifications and pages; from the application channel / Accept-Language
    language: Mapped[str] = mapped_column(String(8), default="kk", server_default="kk")
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Application(Base):
    __tablename__ = "applications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"))
    channel: Mapped[str] = mapped_column(String(16))  # online | office | admin
    office_code: Mapped[str | None] = mapped_column(String(32))
    employee_id: Mapped[str | None] = mapped_column(String(64))
    requested_username: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    submitted_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    agreement_version_id: Mapped[int] = mapped_column(ForeignKey("agreement_versions.id"))
    agreement_sha256: Mapped[str] = mapped_column(String(64))
    agreement_language: Mapped[str | None] = mapped_column(String(8))  # the edition consented to
    consent_at: Mapped[dt.datetime] = mapped_column(TS)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    registry_verdict: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="accepted")  # accepted|held|rejected
    # legal entity only: head | representative, and the representative's power of attorney
    signer_role: Mapped[str | None] = mapped_column(String(16))
    poa_number: Mapped[str | None] = mapped_column(String(50))
    poa_date: Mapped[dt.date | None] = mapped_column(Date)


class Mailbox(Base):
    __tablename__ = "mailboxes"
    __table_args__ = (
        UniqueConstraint("login_norm", name="uq_mailboxes_login_norm"),
        UniqueConstraint("address_norm", name="uq_mailboxes_address_norm"),
        Index(
            "uq_mailboxes_owner_key_open",
            "owner_key",
            unique=True,
            sqlite_where=text("state != 'closed' AND owner_key IS NOT NULL"),
            postgresql_where=text("state != 'closed' AND owner_key IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id"))
    login: Mapped[str] = mapped_column(String(64))
    login_norm: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(320))
    address_norm: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16), default="personal")  # personal|service
    owner_key: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="active")  # active|suspended|closed|held
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(TS)
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    password_hash: Mapped[str] = mapped_column(String(512))
    password_changed_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    eds_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)


class EdsChallenge(Base):
    __tablename__ = "eds_challenges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    nonce: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(TS)
    used_at: Mapped[dt.datetime | None] = mapped_column(TS)


class EdsConfirmation(Base):
    __tablename__ = "eds_confirmations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"))
    cert_fingerprint: Mapped[str] = mapped_column(String(64))
    cert_serial: Mapped[str] = mapped_column(String(80))
    cert_issuer: Mapped[str] = mapped_column(Text)
    not_before: Mapped[dt.datetime] = mapped_column(TS)
    not_after: Mapped[dt.datetime] = mapped_column(TS)
    signer_iin: Mapped[str | None] = mapped_column(String(12))
    signer_bin: Mapped[str | None] = mapped_column(String(12))
    confirmed_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    #: signer and issuer certificates (DER), for the later revocation re-checks (OCSP, CRL)
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    issuer_certificate: Mapped[bytes | None] = mapped_column(LargeBinary)
    checked_at: Mapped[dt.datetime | None] = mapped_column(TS)
    #: set when the confirmation lapsed: the certificate expired or was revoked
    lapsed_at: Mapped[dt.datetime | None] = mapped_column(TS)
    lapse_reason: Mapped[str | None] = mapped_column(String(32))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow, index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # employee|sysadmin|subscriber|system
    actor_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(16))  # ok|denied|failed
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuthFailure(Base):
    __tablename__ = "auth_failures"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # "ip:1.2.3.4" | "login:x"
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    locked_until: Mapped[dt.datetime | None] = mapped_column(TS)


class OfficialSender(Base):
    """A state body or registered sender allowed to use the official channel.

    It authenticates by a TLS client certificate (``cert_fingerprint``, SHA-256 of the
    DER) or by signed requests with ``public_key_pem``.  Rows are never deleted (the
    evidence names them); ``removed_at`` retires a sender.
    """

    __tablename__ = "official_senders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(512))
    bin: Mapped[str | None] = mapped_column(String(12))
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
    public_key_pem: Mapped[str | None] = mapped_column(Text)
    notify_address: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(TS)


class OfficialMessage(Base):
    """One official document sent to one IIN/BIN, and where it stands."""

    __tablename__ = "official_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    sender_id: Mapped[int] = mapped_column(ForeignKey("official_senders.id"))
    recipient_kind: Mapped[str] = mapped_column(String(4))  # iin | bin
    recipient_id: Mapped[str] = mapped_column(String(12), index=True)
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id"))
    login_norm: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(998))
    document_name: Mapped[str] = mapped_column(String(255))
    document_sha256: Mapped[str] = mapped_column(String(64))
    signed_by: Mapped[str] = mapped_column(String(16))  # sender | gateway
    signer_fingerprint: Mapped[str | None] = mapped_column(String(64))
    maildir_key: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), index=True)  # submitted|delivered|retrieved|rejected|expired
    submitted_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(TS)
    retrieved_at: Mapped[dt.datetime | None] = mapped_column(TS)
    retrieval_deadline: Mapped[dt.datetime | None] = mapped_column(TS)
    purge_after: Mapped[dt.datetime] = mapped_column(TS, index=True)


class OfficialEvidence(Base):
    """One signed evidence record; ``record`` is the exact signed JSON text."""

    __tablename__ = "official_evidence"
    __table_args__ = (UniqueConstraint("message_id", "seq", name="uq_official_evidence_message_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("official_messages.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(16))
    at: Mapped[dt.datetime] = mapped_column(TS)
    record: Mapped[str] = mapped_column(Text)
    record_hash: Mapped[str] = mapped_column(String(64))
    purge_after: Mapped[dt.datetime] = mapped_column(TS, index=True)


class StaffAccount(Base):
    """A member of staff: post-office employee, supervisor, hybrid operator, auditor, administrator."""

    __tablename__ = "staff_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(512))
    role: Mapped[str] = mapped_column(String(32))
    office_code: Mapped[str | None] = mapped_column(String(32))
    os_user: Mapped[str | None] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | disabled
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)


class Alias(Base):
    """A local address that is not a mailbox: mail to ``name@domain`` goes to the targets.

    ``name_norm`` is unique and rows are never deleted (``esam alias remove`` sets
    ``removed_at`` and drops the targets), so a name once used as an alias can never be
    issued as a login (``SqlDirectory.add_mailbox`` checks it) and an alias can never
    take a login that was ever issued (``directory.aliases`` checks ``mailboxes``).
    """

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("name_norm", name="uq_aliases_name_norm"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_norm: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(TS)


class AliasTarget(Base):
    """One target of an alias: a local login or a full remote address (normalized)."""

    __tablename__ = "alias_targets"
    __table_args__ = (UniqueConstraint("alias_id", "target", name="uq_alias_targets_alias_id_target"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alias_id: Mapped[int] = mapped_column(ForeignKey("aliases.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(320))


class SecondFactor(Base):
    """A mailbox's TOTP second factor for web logins (RFC 6238).  While a row exists, IMAP
    and SMTP accept only app passwords (``app_passwords``), never the main password.
    ``last_step`` is the last accepted 30-second step: a code is never accepted twice."""

    __tablename__ = "second_factors"
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    totp_secret: Mapped[str] = mapped_column(String(64))
    enabled_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    last_step: Mapped[int] = mapped_column(BigInteger, default=0)


class RecoveryCode(Base):
    """A one-time code that replaces the TOTP code once (SHA-256 of it; ``used_at`` when spent)."""

    __tablename__ = "recovery_codes"
    __table_args__ = (UniqueConstraint("mailbox_id", "digest", name="uq_recovery_codes_mailbox_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(TS)


class AppPassword(Base):
    """A generated password for one mail program (IMAP/SMTP) of a mailbox with a second
    factor.  Random, 100+ bits, so its SHA-256 (unique) is stored, not a slow hash."""

    __tablename__ = "app_passwords"
    __table_args__ = (UniqueConstraint("digest", name="uq_app_passwords_digest"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(TS, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(TS)
