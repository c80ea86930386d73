"""runs: the texts of the policy files a run's scenario names (policy_file: ...), stored with it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 00:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        # Runs started before policy files named none: NULL says so.
        batch_op.add_column(sa.Column("scenario_files", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("scenario_files")
