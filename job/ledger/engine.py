"""The ledger's engine and sessions, and its schema brought up to date on first use (safely when
many processes start at once). job.runtime builds one of these per command; phases get its store."""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from job.config import MAX_CONCURRENCY
from job.errors import BadInput, LedgerError, first_line

# Any constant will do, as long as every job process agrees on it.
_MIGRATION_LOCK_KEY = 0x6A6F62


def describe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _refuse_in_memory(url: URL) -> None:
    """A ledger in memory forgets, when the process exits, every resource it recorded: whatever a
    crash left in AWS could then be found by nobody. No command gets one."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        raise BadInput(
            f"the ledger {describe(url)} is in memory and would forget what the job creates when "
            "it exits: give a file, e.g. --database-url sqlite:///job.db"
        )


def _create_private_file(database: str) -> None:
    """The ledger names every resource of every run: create it readable by its owner only."""
    path = Path(database)
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as error:
        raise LedgerError(
            f"cannot create the ledger file {path}: {error.strerror}; check the directory exists "
            "and is writable, or set JOB_DATABASE_URL"
        ) from None


def make_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        _refuse_in_memory(url)
        _create_private_file(url.database or "")
        # One session is shared by a phase's threads, taking turns under the store's lock; its
        # connection may be used by a thread other than the one that opened it.
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # The busy timeout makes writers queue instead of failing with "database is locked"
            # (first: switching a new file to WAL is itself a write); WAL lets readers (runs
            # list) proceed while a phase writes.
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        # Each run held at once takes a connection for its lock (teardown --stale holds up to
        # --concurrency runs), on top of the store's session and the lease renewals.
        max_overflow=MAX_CONCURRENCY + 10,
        connect_args={"connect_timeout": 10, "application_name": "job"},
    )


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    # Anything alembic prints goes to stderr: stdout belongs to the command's one JSON object.
    # (Passed here, not left to alembic's default, which is whatever sys.stdout was at import.)
    config = Config(stdout=sys.stderr)
    config.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
    config.attributes["connection"] = connection
    return config


# The newest migration in job/migrations/versions (a test keeps the two in step). A ledger already
# there is recognised from one query, without importing Alembic: `job runs list` stays quick.
SCHEMA_HEAD = "0008"


def _pending(connection: Any) -> bool:
    """Whether the ledger needs migrations; BadInput when a newer job wrote it."""
    from sqlalchemy import inspect

    if not inspect(connection).has_table("alembic_version"):  # a new, empty ledger
        return True
    current = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if current == [SCHEMA_HEAD]:
        return False
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(connection))
    known = {revision.revision for revision in script.walk_revisions()}
    newer = sorted(set(current) - known)
    if newer:
        # Migrating it (or writing to it with an older model of its tables) would damage it.
        raise BadInput(
            f"the ledger at {describe(connection.engine.url)} was written by a newer job (schema "
            f"{', '.join(newer)}; this job knows up to {SCHEMA_HEAD}): upgrade job"
        )
    return set(current) != set(script.get_heads())


@contextmanager
def _migration_lock(connection: Any) -> Iterator[None]:
    """One process migrates while the others wait, then find nothing left to do: a PostgreSQL
    advisory lock, or on SQLite a lock file beside the ledger (with the runs' hold files)."""
    if connection.engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
            connection.commit()
        return
    folder = Path(f"{connection.engine.url.database}.locks")
    folder.mkdir(mode=0o700, exist_ok=True)
    descriptor = os.open(folder / "schema.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing drops the flock


def upgrade(engine: Engine) -> None:
    """Bring the ledger to the newest schema; cheap when it already is. Many job processes may
    start at once against one ledger, fresh or outdated: one migrates, the others wait for it."""
    try:
        with engine.connect() as connection:
            if not _pending(connection):
                return
            from alembic import command  # only now: a current ledger never pays for importing it

            connection.rollback()
            with _migration_lock(connection):
                if _pending(connection):  # asked again: another process may have just done it
                    connection.rollback()
                    command.upgrade(_alembic_config(connection), "head")
                    connection.commit()
    except SQLAlchemyError as error:
        raise ledger_failure(engine.url, error, "cannot open the ledger") from None


def ledger_failure(url: URL, error: SQLAlchemyError, what: str) -> LedgerError:
    """`what` failed (a sentence's start): why, as the database said it, and what to do about an
    unreachable ledger or an unreadable one (a damaged file)."""
    from sqlalchemy.exc import OperationalError

    if isinstance(error, OperationalError) or url.get_backend_name() != "sqlite":
        fix = "check the database URL and that the server is reachable, then run the same command"
    else:
        fix = "restore it from a backup, or give another --database-url"
    return LedgerError(f"{what} at {describe(url)}: {first_line(error)}; {fix}")


def autogenerate_revision(message: str, scratch: Path) -> None:
    """Write a migration for whatever the models have that the migrations lack (`make migration`).
    It compares against a scratch SQLite ledger upgraded to the newest revision."""
    from alembic import command

    scratch.unlink(missing_ok=True)
    engine = make_engine(URL.create("sqlite", database=str(scratch)))
    try:
        upgrade(engine)
        with engine.connect() as connection:
            command.revision(_alembic_config(connection), message=message, autogenerate=True)
    finally:
        engine.dispose()
        scratch.unlink(missing_ok=True)


class Ledger:
    """The ledger's engine and session factory, upgraded on first use."""

    def __init__(self, url: URL) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def open(self) -> Ledger:
        upgrade(self.engine)
        return self

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    def hold(self, run_id: str) -> AbstractContextManager[None]:
        """Hold the run for this process, or raise RunHeld (exit 3); see job.ledger.hold."""
        from job.ledger.hold import hold

        return hold(self.engine, run_id)

    def dispose(self) -> None:
        self.engine.dispose()
