"""aliases: role addresses (postmaster, abuse, hostmaster) and other aliases

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_norm", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aliases")),
        sa.UniqueConstraint("name_norm", name="uq_aliases_name_norm"),
    )
    op.create_table(
        "alias_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alias_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["alias_id"], ["aliases.id"], name=op.f("fk_alias_targets_alias_id_aliases"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alias_targets")),
        sa.UniqueConstraint("alias_id", "target", name="uq_alias_targets_alias_id_target"),
    )
    op.create_index(op.f("ix_alias_targets_alias_id"), "alias_targets", ["alias_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_alias_targets_alias_id"), table_name="alias_targets")
    op.drop_table("alias_targets")
    op.drop_table("aliases")
