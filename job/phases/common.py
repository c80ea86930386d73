"""What every phase does around its work: find the run, check the account, record the attempt;
and write-ahead, the one way any phase makes or deletes a resource: the row is recorded pending
before the create call, marked created after it, and marked deleted after its delete."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from job.aws.handler import Created, Found, NotCreated, Presence, Subject, Target
from job.aws.kinds import handler_for
from job.aws.retry import while_unseen
from job.aws.session import AWS_ERRORS, Aws, describe_aws_error
from job.errors import AwsError, JobError, LedgerError
from job.kinds import attributes_of
from job.ledger.models import (
    Outcome,
    Phase,
    PhaseAttempt,
    Resource,
    ResourceState,
    Run,
    RunStatus,
    utcnow,
)
from job.ledger.store import Store
from job.naming import Naming
from job.scenario import RunOptions, Scenario
from job.scenario_file import ScenarioSource, compile_source, seed_source

log = logging.getLogger(__name__)


def target_for(run: Run, aws: Aws) -> Target:
    """The run's target, after making sure the credentials are in the run's own account."""
    identity = aws.identity()
    if identity.account_id != run.account_id:
        raise AwsError(
            f"the AWS credentials belong to account {identity.account_id}, but run {run.id} lives "
            f"in account {run.account_id}; use that account's credentials"
        )
    if aws.region != run.region:
        raise AwsError(
            f"the region is {aws.region}, but run {run.id} lives in {run.region}; "
            f"set --region {run.region}"
        )
    return Target(aws=aws, run_id=run.id, account_id=run.account_id, partition=run.partition)


class CreatedHere:
    """The resources this process created (or adopted, having looked at them) for one run, while
    holding that run's hold all along: within one `job run`, provision, verify and teardown share
    one. Teardown deletes these without asking AWS again whose they are: nobody else may act on the
    run meanwhile, and the process saw them made. Anything else is looked up first: a teardown in
    another process (after a crash, or `job teardown --run-id`), rows an earlier attempt left, and
    rows whose state the ledger no longer gives as created."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._lock = threading.Lock()

    def add(self, row: Resource) -> None:
        with self._lock:
            self._ids.add(row.id)

    def __contains__(self, row: Resource) -> bool:
        with self._lock:
            return row.id in self._ids and row.state is ResourceState.CREATED


def subject_of(row: Resource) -> Subject:
    """What a handler's verbs need of a ledger row. They return what they learn (Created, Found),
    and the phase writes that into the row: the AWS layer never sees the ledger."""
    return Subject(name=row.name, physical_id=row.physical_id, attributes=attributes_of(row))


def naming_of(run: Run) -> Naming:
    return Naming(run.prefix, run.id, run.account_id, run.partition)


def scenario_of(run: Run) -> Scenario:
    """What the run creates and expects: the scenario file stored with the run when it started
    (whatever that file says now), under the run's prefix, shaped by the options recorded then.
    A run started before scenario files stored none: it proves the built-in seed. Every phase
    asks here, so they cannot disagree."""
    return compile_source(run_scenario_source(run), naming_of(run), RunOptions.of(run))


def run_scenario_source(run: Run) -> ScenarioSource:
    if run.scenario is None:
        return seed_source()
    # The policy files as they were read when the run started: they may have changed since, or
    # be on another machine.
    return ScenarioSource(
        run.scenario, f"the scenario stored with run {run.id}", run.scenario_files or {}
    )


def look_up(target: Target, row: Resource, *, known_to_exist: bool = False) -> Found:
    """Whether the row's resource is there, and whose. AWS may not show a resource for a while
    after creating it (IAM answers NoSuchEntity, S3 NoSuchBucket), so "absent" is taken as final
    only once that while has passed: since the row was recorded, for a resource whose create may
    have happened (pending) or did (created), or from now when a create has just said the name is
    taken. A resource being deleted was seen before its delete began: absent is then final.
    Taking an unseen bucket for gone would mark it deleted and leave it in the account.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
    """
    handler, subject = handler_for(row.kind), subject_of(row)
    if known_to_exist:
        window = target.propagation_timeout
    elif row.state in (ResourceState.PENDING, ResourceState.CREATED):
        window = row.created_at + target.propagation_timeout - utcnow()
    else:
        window = timedelta(0)
    return while_unseen(
        lambda: handler.inspect(target, subject),
        lambda found: found.presence is Presence.ABSENT,
        timeout=window,
        what=f"{row.kind} {row.name}",
    )


@contextmanager
def recording_failure(store: Store, row: Resource, doing: str) -> Iterator[None]:
    """Turn an AWS failure inside into one line (exit 4), also kept on the row for `runs show`.
    When AWS refused the create itself, the row is marked deleted at once (with the refusal):
    nothing was made, and teardown has nothing to look for."""
    try:
        yield
    except NotCreated as refused:
        failure = describe_aws_error(refused.error, doing)
        store.set_state(row, ResourceState.DELETED, error=failure.message)
        raise failure from None
    except AWS_ERRORS as error:
        failure = describe_aws_error(error, doing)
        store.set_error(row, failure.message)
        raise failure from None


def create_call(store: Store, target: Target, row: Resource, doing: str) -> Created:
    """The create call of a row already recorded pending (`Store.record_pending`): a failure is
    kept on the row (or, when AWS refused the create itself, the row is marked deleted)."""
    with recording_failure(store, row, doing):
        return handler_for(row.kind).create(target, subject_of(row))


def mark_created(
    store: Store, row: Resource, physical_id: str | None, created_here: CreatedHere | None
) -> None:
    """The last step of write-ahead: the row is created, and this process vouches for it."""
    store.set_state(row, ResourceState.CREATED, physical_id=physical_id)
    if created_here is not None:
        created_here.add(row)


def create_recorded(
    store: Store, target: Target, row: Resource, doing: str, created_here: CreatedHere | None
) -> Created:
    """Create what a pending row stands for and mark it created: for what has no settings to
    make in between (provision makes those between the two steps)."""
    created = create_call(store, target, row, doing)
    mark_created(store, row, created.physical_id, created_here)
    return created


def delete_recorded(
    store: Store, target: Target, row: Resource, created_here: CreatedHere | None = None
) -> None:
    """Delete one recorded resource if it is there and it is this run's; record the outcome."""
    handler = handler_for(row.kind)
    with recording_failure(store, row, f"deleting {row.kind} {row.name}"):
        found = (
            Found(Presence.OURS, row.physical_id)
            if created_here is not None and row in created_here
            else look_up(target, row)
        )
        if found.presence is Presence.OURS:
            store.set_state(row, ResourceState.DELETING)
            handler.delete(target, subject_of(row))
            log.info("deleted %s %s", row.kind, row.name)
    if found.presence is Presence.FOREIGN:
        log.warning("not deleting %s %s: %s", row.kind, row.name, found.reason)
    store.set_state(
        row,
        ResourceState.DELETED,
        error=found.reason if found.presence is Presence.FOREIGN else None,
    )


@contextmanager
def phase(store: Store, run: Run, name: Phase, status: RunStatus) -> Iterator[PhaseAttempt]:
    """Record an attempt at `name`; on any error, record it and mark the run failed, then re-raise.

    The run is left re-runnable: the ledger says what exists, the same command picks up from there.
    """
    attempt = store.start_attempt(run, name)
    store.set_status(run, status)
    try:
        yield attempt
    except BaseException as error:
        message = (
            error.message if isinstance(error, JobError) else f"{type(error).__name__}: {error}"
        )
        try:
            store.finish_attempt(attempt, Outcome.FAILED, message)
            store.set_status(run, RunStatus.FAILED)
        except LedgerError:
            # The original error says more; the ledger's own failure is logged, not raised over it.
            log.error("could not record the failure of %s for run %s", name, run.id)
        raise
    store.finish_attempt(attempt, Outcome.SUCCEEDED)
