"""fleet: batches, their (account, region) items and each worker's claims; runs tied to items

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 07:26:34.415709
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("role_name", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=1224), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("scenario", sa.Text(), nullable=False),
        sa.Column("scenario_sha256", sa.String(length=64), nullable=False),
        sa.Column("scenario_files", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index("ix_batches_created_at", ["created_at"], unique=False)

    op.create_table(
        "batch_items",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=12), nullable=False),
        sa.Column("region", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "running", "done", name="itemstatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "verdict",
            sa.Enum(
                "passed", "failed", "incomplete", name="runverdict", native_enum=False, length=16
            ),
            nullable=True,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_batch_items_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_items")),
        sa.UniqueConstraint(
            "batch_id",
            "account_id",
            "region",
            name=op.f("uq_batch_items_batch_id_account_id_region"),
        ),
    )
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_batch_items_batch_id_status", ["batch_id", "status"], unique=False
        )

    op.create_table(
        "item_claims",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["batch_items.id"],
            name=op.f("fk_item_claims_item_id_batch_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_claims")),
    )
    with op.batch_alter_table("item_claims", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_claims_item_id"), ["item_id"], unique=False)

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_item_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_runs_batch_item_id"), ["batch_item_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_batch_item_id"))
        batch_op.drop_column("batch_item_id")

    with op.batch_alter_table("item_claims", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_claims_item_id"))

    op.drop_table("item_claims")
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.drop_index("ix_batch_items_batch_id_status")

    op.drop_table("batch_items")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index("ix_batches_created_at")

    op.drop_table("batches")
