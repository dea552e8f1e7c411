"""identity: the subscriber's preferred language, the language of the agreement consented to

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as b:
        b.add_column(sa.Column("language", sa.String(length=8), nullable=False, server_default="kk"))
    with op.batch_alter_table("applications") as b:
        b.add_column(sa.Column("agreement_language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("applications") as b:
        b.drop_column("agreement_language")
    with op.batch_alter_table("subscribers") as b:
        b.drop_column("language")
