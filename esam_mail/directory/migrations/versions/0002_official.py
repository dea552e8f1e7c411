"""official documents channel, evidence, staff accounts, EDS re-check columns

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 14:49:49.773484
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "official_senders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=512), nullable=False),
        sa.Column("bin", sa.String(length=12), nullable=True),
        sa.Column("cert_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("public_key_pem", sa.Text(), nullable=True),
        sa.Column("notify_address", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_official_senders")),
        sa.UniqueConstraint("cert_fingerprint", name=op.f("uq_official_senders_cert_fingerprint")),
        sa.UniqueConstraint("name", name=op.f("uq_official_senders_name")),
    )
    op.create_table(
        "staff_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=512), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("office_code", sa.String(length=32), nullable=True),
        sa.Column("os_user", sa.String(length=64), nullable=True),
        sa.Column("password_hash", sa.String(length=512), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_accounts")),
        sa.UniqueConstraint("os_user", name=op.f("uq_staff_accounts_os_user")),
        sa.UniqueConstraint("username", name=op.f("uq_staff_accounts_username")),
    )
    op.create_table(
        "official_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("recipient_kind", sa.String(length=4), nullable=False),
        sa.Column("recipient_id", sa.String(length=12), nullable=False),
        sa.Column("mailbox_id", sa.Integer(), nullable=True),
        sa.Column("login_norm", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.String(length=998), nullable=False),
        sa.Column("document_name", sa.String(length=255), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("signed_by", sa.String(length=16), nullable=False),
        sa.Column("signer_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("maildir_key", sa.String(length=255), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retrieved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retrieval_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purge_after", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailboxes.id"], name=op.f("fk_official_messages_mailbox_id_mailboxes")
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"],
            ["official_senders.id"],
            name=op.f("fk_official_messages_sender_id_official_senders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_official_messages")),
        sa.UniqueConstraint("public_id", name=op.f("uq_official_messages_public_id")),
    )
    with op.batch_alter_table("official_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_official_messages_purge_after"), ["purge_after"], unique=False)
        batch_op.create_index(batch_op.f("ix_official_messages_recipient_id"), ["recipient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_official_messages_state"), ["state"], unique=False)

    op.create_table(
        "official_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("purge_after", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["official_messages.id"],
            name=op.f("fk_official_evidence_message_id_official_messages"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_official_evidence")),
        sa.UniqueConstraint("message_id", "seq", name="uq_official_evidence_message_seq"),
    )
    with op.batch_alter_table("official_evidence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_official_evidence_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_official_evidence_purge_after"), ["purge_after"], unique=False)

    with op.batch_alter_table("eds_confirmations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("certificate", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("issuer_certificate", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lapsed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lapse_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:

    with op.batch_alter_table("eds_confirmations", schema=None) as batch_op:
        batch_op.drop_column("lapse_reason")
        batch_op.drop_column("lapsed_at")
        batch_op.drop_column("checked_at")
        batch_op.drop_column("issuer_certificate")
        batch_op.drop_column("certificate")

    with op.batch_alter_table("official_evidence", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_official_evidence_purge_after"))
        batch_op.drop_index(batch_op.f("ix_official_evidence_message_id"))

    op.drop_table("official_evidence")
    with op.batch_alter_table("official_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_official_messages_state"))
        batch_op.drop_index(batch_op.f("ix_official_messages_recipient_id"))
        batch_op.drop_index(batch_op.f("ix_official_messages_purge_after"))

    op.drop_table("official_messages")
    op.drop_table("staff_accounts")
    op.drop_table("official_senders")
