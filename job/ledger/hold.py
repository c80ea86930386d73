"""The hold on a run: one process works on a run at a time, and a dead holder never blocks anyone.

Mutual exclusion comes from a lock the operating system or the database server drops by itself
when its holder dies, `kill -9` included: a session-level advisory lock on PostgreSQL (the server
releases it when the connection closes) and an flock on a file beside a SQLite ledger (the kernel
releases it when the process exits). So the next command takes a dead holder's run over at once,
with no timeout to wait out.

Beside the lock, the run's row records who holds it and until when (a lease renewed while the
phase works), taken with a compare-and-set, so that a refused command can say who is in the way,
and `runs show` can too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from job.errors import LedgerError, RunHeld, first_line
from job.ledger.models import Run, utcnow

# Every lease write keeps updated_at as it was (the column's onupdate would set it to now): holding
# a run is not activity on it, and the janitor judges staleness by activity.

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=2)
RENEW_EVERY = timedelta(seconds=30)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def _lock_key(name: str) -> int:
    """A signed 64-bit key for pg_advisory_lock, the same in every job process. A run's lock is
    named "run:<id>" (the key every version of the job has used for it)."""
    digest = hashlib.blake2b(f"job-{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _PostgresLock:
    def __init__(self, engine: Engine, name: str) -> None:
        self._connection: Connection = engine.connect()
        self._name = name
        self._key = _lock_key(name)
        self._acquired = False

    def try_acquire(self) -> bool:
        self._acquired = acquired = bool(
            self._connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar()
        )
        self._connection.commit()  # the lock is the session's, not the transaction's
        return acquired

    def release(self) -> None:
        try:
            if self._acquired:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                )
                self._connection.commit()
        except SQLAlchemyError as error:
            # The server went away, and the lock with its session: nothing left to release, and
            # no second error to raise over the one that is already on its way out.
            log.warning("could not release the lock %s: %s", self._name, first_line(error))
        finally:
            with contextlib.suppress(SQLAlchemyError):
                self._connection.close()  # would drop the lock anyway


class _FileLock:
    # Several holds on one file from one process must conflict too (threads of a janitor), which
    # flock gives (per open file) and POSIX record locks do not (per process).
    def __init__(self, database: str, name: str) -> None:
        folder = Path(f"{database}.locks")
        folder.mkdir(mode=0o700, exist_ok=True)
        # A run's file is named by its id alone, as every version of the job has named it.
        file_name = name.removeprefix("run:").replace(":", "-")
        self._fd = os.open(folder / f"{file_name}.lock", os.O_CREAT | os.O_RDWR, 0o600)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        os.close(self._fd)  # closing drops the flock


Lock = _PostgresLock | _FileLock


def lock_for(engine: Engine, name: str) -> Lock:
    """The lock called `name` ("run:<id>", "item:<id>"), not yet taken: `try_acquire` it, and
    `release` it whatever the answer (that closes its connection or file)."""
    # An in-memory SQLite ledger is refused before any hold is taken (job.ledger.engine).
    if engine.dialect.name == "postgresql":
        return _PostgresLock(engine, name)
    return _FileLock(engine.url.database or "", name)


def _refusal(engine: Engine, run_id: str) -> RunHeld:
    with engine.connect() as connection:
        row = connection.execute(
            select(Run.holder, Run.held_until).where(Run.id == run_id)
        ).one_or_none()
    holder, until = (row.holder, row.held_until) if row else (None, None)
    who = f"held by {holder}" if holder else "held by another job process"
    when = f" (lease until {until:%Y-%m-%d %H:%M:%S} UTC, renewed while it works)" if until else ""
    return RunHeld(
        f"run {run_id} is {who}{when}; nothing was changed, try again when it has finished"
    )


def _take_lease(engine: Engine, run_id: str, holder: str, seen: str | None) -> bool:
    """Compare-and-set: the lease becomes ours only if it is still what we saw (or has expired).
    Holding the lock already means the previous holder is gone; the condition guards against a
    lock that is not what it seems (a SQLite file shared across machines)."""
    now = utcnow()
    with engine.begin() as connection:
        taken = connection.execute(
            update(Run)
            .where(Run.id == run_id)
            .where(or_(Run.holder.is_(None), Run.holder == seen, Run.held_until < now))
            .values(holder=holder, held_until=now + LEASE, updated_at=Run.updated_at)
        )
        return taken.rowcount == 1


def _renew(engine: Engine, run_id: str, holder: str, stop: threading.Event) -> None:
    while not stop.wait(RENEW_EVERY.total_seconds()):
        try:
            with engine.begin() as connection:
                connection.execute(
                    update(Run)
                    .where(Run.id == run_id, Run.holder == holder)
                    .values(held_until=utcnow() + LEASE, updated_at=Run.updated_at)
                )
        except Exception:  # a missed renewal only makes the message less exact
            log.warning("could not renew the lease on run %s", run_id, exc_info=True)


def _release_lease(engine: Engine, run_id: str, holder: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(Run)
            .where(Run.id == run_id, Run.holder == holder)
            .values(holder=None, held_until=None, updated_at=Run.updated_at)
        )


@contextmanager
def hold(engine: Engine, run_id: str) -> Iterator[None]:
    """Hold `run_id` for the length of the block, or raise RunHeld (exit 3) at once; LedgerError
    (exit 4) when the ledger cannot be reached to take it."""
    try:
        lock = lock_for(engine, f"run:{run_id}")
        if not lock.try_acquire():
            lock.release()
            raise _refusal(engine, run_id)
    except SQLAlchemyError as error:
        raise LedgerError(
            f"cannot take the hold on run {run_id}: the ledger did not answer "
            f"({first_line(error)}); run the same "
            "command again when it is reachable"
        ) from None
    holder = holder_name()
    stop = threading.Event()
    renewer: threading.Thread | None = None
    try:
        with engine.connect() as connection:
            seen = connection.execute(select(Run.holder).where(Run.id == run_id)).scalar()
        if not _take_lease(engine, run_id, holder, seen):
            raise _refusal(engine, run_id)
        renewer = threading.Thread(
            target=_renew, args=(engine, run_id, holder, stop), name=f"lease-{run_id}", daemon=True
        )
        renewer.start()
        yield
    finally:
        stop.set()
        if renewer is not None:
            renewer.join()
            try:
                _release_lease(engine, run_id, holder)
            except Exception as error:  # the lock below is what matters; it goes regardless
                log.warning("could not clear the lease on run %s: %s", run_id, error)
        lock.release()
