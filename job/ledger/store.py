"""Every query the job makes of its ledger. Each write commits at once: the ledger is the job's
write-ahead log, and a row that is not committed before the AWS call it announces is worth nothing
after a crash."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Row, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from job.errors import BadInput, LedgerError, first_line
from job.kinds import Attributes
from job.ledger.models import (
    Check,
    Outcome,
    Phase,
    PhaseAttempt,
    Resource,
    ResourceState,
    Run,
    RunStatus,
    RunVerdict,
    Verdict,
    utcnow,
)
from job.naming import ACCEPTED_RUN_ID
from job.vocabulary import ResourceKind

F = TypeVar("F", bound=Callable[..., Any])


def serialized(method: F) -> F:
    """The method holds its object's `lock` (a Store's, or one that shares it)."""

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return cast(F, locked)


class Store:
    """The ledger as the phases see it: one database session, committed after every write.

    A phase's worker threads share it; a session is not thread-safe, so every method holds the
    store's lock for its read or its write-and-commit. Commits are milliseconds against the AWS
    calls' tens of milliseconds, so taking turns costs little, and each write-ahead row is still
    committed before its own create call."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.lock = threading.RLock()

    def commit(self) -> None:
        try:
            self.session.commit()
        except SQLAlchemyError as error:
            # A ledger that went away cannot roll back either; that is not a second error to raise.
            with contextlib.suppress(SQLAlchemyError):
                self.session.rollback()
            # The caller must not go on to the AWS call this write announced.
            raise LedgerError(
                f"cannot write to the ledger: {first_line(error)}"
                "; nothing further was created, run the same command again when it is reachable"
            ) from None

    # Runs

    @serialized
    def create_run(
        self,
        run_id: str,
        *,
        prefix: str,
        region: str,
        account_id: str,
        partition: str,
        options: dict[str, Any] | None = None,
        scenario: str | None = None,
        scenario_sha256: str | None = None,
        scenario_files: dict[str, str] | None = None,
        batch_item_id: int | None = None,
    ) -> Run:
        run = Run(
            id=run_id,
            prefix=prefix,
            region=region,
            account_id=account_id,
            partition=partition,
            options=options or {},
            scenario=scenario,
            scenario_sha256=scenario_sha256,
            scenario_files=scenario_files,
            batch_item_id=batch_item_id,
            status=RunStatus.PROVISIONING,
        )
        self.session.add(run)
        self.commit()
        return run

    @serialized
    def get_run(self, run_id: str) -> Run:
        if not ACCEPTED_RUN_ID.fullmatch(run_id):
            # Checked before the query: text a database cannot encode (bytes from a shell that are
            # not UTF-8) would otherwise fail as a database error rather than as an unknown id.
            raise _unknown_run(run_id)
        # populate_existing: another process may have changed the run since this session last
        # looked (a janitor that waited for the hold must see what the holder did).
        run = self.session.get(
            Run,
            run_id,
            populate_existing=True,
            options=[
                selectinload(Run.resources),
                selectinload(Run.checks),
                selectinload(Run.attempts),
            ],
        )
        if run is None:
            raise _unknown_run(run_id)
        return run

    @serialized
    def list_runs(
        self,
        status: RunStatus | None = None,
        limit: int | None = None,
        verdict: RunVerdict | None = None,
    ) -> Sequence[Row[str, RunStatus, RunVerdict | None, datetime, datetime]]:
        """Newest first: each run's id, status, verdict, created_at and updated_at, as plain rows
        (a ledger of ten thousand runs lists in a fraction of a second; whole ORM objects would
        take seconds)."""
        query = select(Run.id, Run.status, Run.verdict, Run.created_at, Run.updated_at).order_by(
            Run.created_at.desc(), Run.id.desc()
        )
        if status is not None:
            query = query.where(Run.status == status)
        if verdict is not None:
            query = query.where(Run.verdict == verdict)
        if limit is not None:
            query = query.limit(limit)
        return self.session.execute(query).all()

    @serialized
    def stale_runs(self, idle_since: datetime) -> Sequence[Run]:
        """Runs not torn down whose last activity is older than `idle_since`, oldest first.
        Not a fleet's: those live in other accounts, reached through their batch's role, and
        `job fleet work` (which takes a dead worker's item over) or `job fleet teardown` tears
        them down; the janitor's credentials are of its own account only."""
        query = (
            select(Run)
            .where(
                Run.status != RunStatus.TORN_DOWN,
                Run.updated_at < idle_since,
                Run.batch_item_id.is_(None),
            )
            .order_by(Run.updated_at, Run.id)
        )
        return self.session.scalars(query).all()

    @serialized
    def set_status(self, run: Run, status: RunStatus) -> None:
        run.status = status
        run.updated_at = utcnow()
        self.commit()

    @serialized
    def set_verdict(self, run: Run, verdict: RunVerdict, summary: str) -> None:
        run.verdict, run.verdict_summary = verdict, summary
        run.updated_at = utcnow()
        self.commit()

    @serialized
    def set_measurements(self, run: Run, measurements: dict[str, Any]) -> None:
        """What the latest verify measured of AWS (job.ledger.models.Run.measurements), in place
        of what an earlier one did. A new dict: SQLAlchemy sees a JSON column change only when
        the value is replaced."""
        run.measurements = {name: dict(values) for name, values in measurements.items()}
        run.updated_at = utcnow()
        self.commit()

    # Resources

    @serialized
    def find_resource(self, run: Run, logical_name: str) -> Resource | None:
        return next((row for row in run.resources if row.logical_name == logical_name), None)

    @serialized
    def count_live_resources(self) -> int:
        """Resources of every run that are not deleted: after teardowns, what is still out there."""
        query = (
            select(func.count())
            .select_from(Resource)
            .where(Resource.state != ResourceState.DELETED)
        )
        return self.session.scalar(query) or 0

    @serialized
    def live_resource_names(self, account_id: str) -> set[tuple[ResourceKind, str]]:
        """(kind, name) of every resource, of any run in the account, that is not deleted: what
        the ledger accounts for there (`job sweep` looks for the rest)."""
        rows = self.session.execute(
            select(Resource.kind, Resource.name)
            .join(Run)
            .where(Run.account_id == account_id, Resource.state != ResourceState.DELETED)
        )
        return {(kind, name) for kind, name in rows}

    @serialized
    def record_pending(
        self,
        run: Run,
        *,
        kind: ResourceKind,
        logical_name: str,
        name: str,
        attributes: Attributes,
    ) -> Resource:
        """Write-ahead: the resource is in the ledger before the call that creates it."""
        row = Resource(
            kind=kind,
            logical_name=logical_name,
            name=name,
            attributes=attributes.to_json(),
            state=ResourceState.PENDING,
        )
        run.resources.append(row)
        run.updated_at = utcnow()
        self.commit()
        return row

    @serialized
    def set_state(
        self,
        row: Resource,
        state: ResourceState,
        *,
        physical_id: str | None = None,
        error: str | None = None,
    ) -> None:
        row.state = state
        if physical_id is not None:
            row.physical_id = physical_id
        row.error = error
        row.updated_at = row.run.updated_at = utcnow()
        self.commit()

    @serialized
    def set_error(self, row: Resource, error: str) -> None:
        row.error = error
        row.updated_at = row.run.updated_at = utcnow()
        self.commit()

    # Phase attempts

    @serialized
    def start_attempt(self, run: Run, phase: Phase) -> PhaseAttempt:
        attempt = PhaseAttempt(
            phase=phase,
            outcome=Outcome.RUNNING,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
        )
        run.attempts.append(attempt)
        run.updated_at = utcnow()
        self.commit()
        return attempt

    @serialized
    def finish_attempt(
        self, attempt: PhaseAttempt, outcome: Outcome, error: str | None = None
    ) -> None:
        attempt.outcome = outcome
        attempt.error = error
        attempt.finished_at = attempt.run.updated_at = utcnow()
        self.commit()

    # Checks

    @serialized
    def record_check(
        self,
        run: Run,
        attempt: PhaseAttempt,
        *,
        principal: str,
        action: str,
        resource: str,
        expected: Verdict,
        actual: Verdict,
        detail: str | None,
        context: str | None = None,
    ) -> Check:
        check = Check(
            attempt_id=attempt.id,
            principal=principal,
            action=action,
            resource=resource,
            context=context,
            expected=expected,
            actual=actual,
            passed=expected == actual,
            detail=detail,
        )
        run.checks.append(check)
        run.updated_at = utcnow()
        self.commit()
        return check

    @serialized
    def latest_checks(self, run: Run) -> list[Check]:
        """The checks of the newest verify attempt that recorded any."""
        if not run.checks:
            return []
        newest = max(check.attempt_id for check in run.checks)
        # Checks are recorded as they finish, in no fixed order; reports want a stable one: by
        # principal, its allowed calls first.
        return sorted(
            (check for check in run.checks if check.attempt_id == newest),
            key=lambda c: (c.principal, c.expected is not Verdict.ALLOW, c.action, c.resource),
        )


def _unknown_run(run_id: str) -> BadInput:
    # repr: an id that is not valid text (a shell's stray bytes) is shown escaped, never raw.
    return BadInput(f"unknown run id {run_id!r}: `job runs list` shows the runs in the ledger")
