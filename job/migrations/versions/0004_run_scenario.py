"""runs: the scenario each run proves, and what verify measured of AWS's propagation

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 08:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        # Runs started before scenario files have none: they proved the built-in seed scenario.
        batch_op.add_column(sa.Column("scenario", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("scenario_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("measurements", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("measurements")
        batch_op.drop_column("scenario_sha256")
        batch_op.drop_column("scenario")
