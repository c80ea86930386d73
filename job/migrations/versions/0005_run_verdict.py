"""runs: the verdict of the latest verify, kept through teardown

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        # Runs verified before verdicts were kept have none: their checks are still there, but
        # whether every cell was answered was never recorded, so no verdict is made up for them.
        batch_op.add_column(
            sa.Column(
                "verdict",
                sa.Enum(
                    "passed",
                    "failed",
                    "incomplete",
                    name="runverdict",
                    native_enum=False,
                    length=16,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("verdict_summary", sa.Text(), nullable=True))
        batch_op.create_index("ix_runs_verdict_created_at", ["verdict", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_verdict_created_at")
        batch_op.drop_column("verdict_summary")
        batch_op.drop_column("verdict")
