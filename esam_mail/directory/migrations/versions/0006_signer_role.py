"""signer_role: in what capacity a legal entity's application is signed (head or a
representative under a power of attorney, with its number and date)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signer_role", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("poa_number", sa.String(length=50), nullable=True))
        batch_op.add_column(sa.Column("poa_date", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_column("poa_date")
        batch_op.drop_column("poa_number")
        batch_op.drop_column("signer_role")
