"""Alembic environment. The job runs migrations on a connection it hands in (runtime.upgrade), which
holds the cross-process lock; `alembic` on the command line uses JOB_DATABASE_URL instead."""

from __future__ import annotations

import os
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection, create_engine

from job.ledger.models import Base, UTCDateTime

config = context.config
# Tests hand in a variant of the models to prove that a drift is caught.
target_metadata = config.attributes.get("target_metadata", Base.metadata)


def render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Migrations must not import the models (they change); a UTCDateTime is a DateTime there."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # One transaction per migration: a failure leaves the ledger at the last good revision.
        transaction_per_migration=True,
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables when needed.
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    from job.config import parse_database_url

    url = parse_database_url(os.environ.get("JOB_DATABASE_URL", "sqlite:///job.db"))
    with create_engine(url).connect() as own_connection:
        run_migrations(own_connection)
        own_connection.commit()
