"""checks: the request context a scenario's cell set (s3:prefix, tags...), when it set one

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 00:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("checks", schema=None) as batch_op:
        # Checks made before cells could set a context set none: NULL says so.
        batch_op.add_column(sa.Column("context", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checks", schema=None) as batch_op:
        batch_op.drop_column("context")
