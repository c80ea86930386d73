"""Provision: create the scenario's resources, each recorded in the ledger before it is created.

Re-running provision on a run resumes it: what the ledger shows created is skipped; a row left
pending by a crash is looked up by its deterministic name and adopted only when it is this run's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from job.aws.handler import AlreadyExists, Found, Presence, Target
from job.aws.kinds import handler_for
from job.aws.session import Aws
from job.config import DEFAULT_CONCURRENCY
from job.errors import BadInput, NotOurs
from job.kinds import attributes_of
from job.ledger.models import Phase, Resource, ResourceState, Run, RunStatus
from job.ledger.store import Store
from job.naming import new_run_id
from job.parallel import run_graph
from job.phases.common import (
    CreatedHere,
    create_call,
    look_up,
    mark_created,
    phase,
    recording_failure,
    scenario_of,
    subject_of,
    target_for,
)
from job.scenario import ResourceSpec, RunOptions
from job.scenario_file import ScenarioSource, boundary_conflict, seed_source, validate

log = logging.getLogger(__name__)


def start_run(
    store: Store,
    aws: Aws,
    prefix: str,
    options: RunOptions | None = None,
    scenario: ScenarioSource | None = None,
    batch_item_id: int | None = None,
) -> Run:
    """Record a new run, with the scenario it proves (the built-in seed unless another is given):
    its text, the texts of the policy files it names and their SHA-256 are kept, so that every
    later phase of the run, on any machine, uses exactly these. An invalid scenario is refused
    before anything is recorded. `batch_item_id`: the fleet item the run is made for, recorded
    in the same write, so that no run of an item is ever unknown to it (job.fleet)."""
    source = scenario or seed_source()
    conflict = boundary_conflict(validate(source), options or RunOptions())
    if conflict is not None:
        raise BadInput(f"{source.origin}: {conflict}")
    identity = aws.identity()
    run = store.create_run(
        new_run_id(),
        prefix=prefix,
        region=aws.region,
        account_id=identity.account_id,
        partition=identity.partition,
        options=(options or RunOptions()).to_dict(),
        scenario=source.text,
        scenario_sha256=source.sha256,
        scenario_files=dict(source.files) or None,
        batch_item_id=batch_item_id,
    )
    log.info("started run %s in account %s, %s", run.id, run.account_id, run.region)
    return run


def provision(
    store: Store,
    aws: Aws,
    *,
    run_id: str,
    concurrency: int = DEFAULT_CONCURRENCY,
    created_here: CreatedHere | None = None,
) -> Run:
    """Create what is missing of the run's resources (all of them, for a run just started), each
    once what it needs exists, up to `concurrency` at once. What it creates or adopts goes into
    `created_here`, for a teardown under the same hold."""
    run = store.get_run(run_id)
    if any(attempt.phase is Phase.TEARDOWN for attempt in run.attempts):
        raise BadInput(
            f"run {run.id} has been torn down (or was being torn down); start a new run with "
            f"`job provision`, or finish it with `job teardown --run-id {run.id}`"
        )
    target = target_for(run, aws)
    with phase(store, run, Phase.PROVISION, RunStatus.PROVISIONING):
        specs = scenario_of(run).resources
        tasks: dict[str, Callable[[], object]] = {}
        needs: dict[str, list[str]] = {}
        for spec in specs:
            # Two steps each: what needs a resource starts once it exists (the fixture object
            # once its bucket does), while the resource's own settings are made beside it (the
            # bucket's tags and lock-down). Verify starts only once every step is done.
            steps = _Steps(store, target, run, spec, created_here)
            tasks[_exists(spec.logical_name)] = steps.make
            needs[_exists(spec.logical_name)] = [_exists(need) for need in spec.needs]
            tasks[spec.logical_name] = steps.finish
            needs[spec.logical_name] = [_exists(spec.logical_name)]
        run_graph(tasks, needs, concurrency=concurrency)
        store.set_status(run, RunStatus.PROVISIONED)
    return run


def _exists(logical_name: str) -> str:
    return f"{logical_name} (exists)"


@dataclass(frozen=True)
class Made:
    """A resource provision has made or found, before its settings are: its row (still pending,
    unless an earlier attempt finished it), what AWS calls it, and whether it was adopted from an
    earlier attempt rather than created now."""

    row: Resource
    physical_id: str | None
    adopted: bool = False


@dataclass
class _Steps:
    """One resource's two steps in provision's graph: `make`, then `finish`."""

    store: Store
    target: Target
    run: Run
    spec: ResourceSpec
    created_here: CreatedHere | None
    made: Made | None = None

    def make(self) -> None:
        self.made = make(self.store, self.target, self.run, self.spec)

    def finish(self) -> None:
        assert self.made is not None, "finish runs after make"
        finish(self.store, self.target, self.made, self.created_here)


def make(store: Store, target: Target, run: Run, spec: ResourceSpec) -> Made:
    """Record `spec` (write-ahead), then create it, or adopt what an earlier attempt created."""
    row = _recorded(store, run, spec)
    if row is not None and row.state is ResourceState.CREATED:
        return Made(row, row.physical_id)
    pending_before = row is not None
    if row is None:
        row = store.record_pending(
            run,
            kind=spec.kind,
            logical_name=spec.logical_name,
            name=spec.name,
            attributes=spec.attributes,
        )
    doing = f"creating {spec.kind} {spec.name}"
    with recording_failure(store, row, doing):
        # Pending from an earlier attempt: the create may have happened. Look before creating.
        if pending_before:
            found = _adoptable(store, target, row, known_to_exist=False)
            if found is not None:
                return Made(row, found.physical_id, adopted=True)
        try:
            return Made(row, create_call(store, target, row, doing).physical_id)
        except AlreadyExists:
            found = _adoptable(store, target, row, known_to_exist=True)
            if found is not None:
                return Made(row, found.physical_id, adopted=True)
            raise NotOurs(
                f"{spec.kind} {spec.name} exists but vanished while being adopted"
            ) from None


def finish(
    store: Store, target: Target, made: Made, created_here: CreatedHere | None = None
) -> Resource:
    """What a resource needs after its create call (a bucket's tags and lock-down), then the row
    is marked created. A row an earlier attempt finished, perhaps in another process, is left
    as it is, and is not this hold's to vouch for."""
    row = made.row
    if row.state is ResourceState.CREATED:
        return row
    with recording_failure(store, row, f"creating {row.kind} {row.name}"):
        handler_for(row.kind).configure(target, subject_of(row))
    mark_created(store, row, made.physical_id, created_here)
    if made.adopted:
        log.info("adopted %s %s, created by an earlier attempt", row.kind, row.name)
    else:
        log.info("created %s %s", row.kind, row.name)
    return row


def _recorded(store: Store, run: Run, spec: ResourceSpec) -> Resource | None:
    """The spec's row, by its logical name. A run from before scenario files stored no scenario
    and named its buckets' and objects' rows otherwise ("bucket", "fixture"): its rows are found
    by what they stand for (kind, name and bucket), so that resuming it records nothing twice."""
    row = store.find_resource(run, spec.logical_name)
    if row is not None or run.scenario is not None:
        return row
    return next(
        (
            other
            for other in run.resources
            if other.kind == spec.kind
            and other.name == spec.name
            and getattr(attributes_of(other), "bucket", None)
            == getattr(spec.attributes, "bucket", None)
        ),
        None,
    )


def _adoptable(
    store: Store, target: Target, row: Resource, *, known_to_exist: bool
) -> Found | None:
    """The row's resource, found, when it exists and is this run's; None when it
    does not exist; NotOurs when somebody else's stands under the name. Unless `known_to_exist`
    (a create has just said the name is taken), "not there" is taken at once: the create that
    follows settles it."""
    handler = handler_for(row.kind)
    found = (
        look_up(target, row, known_to_exist=True)
        if known_to_exist
        else handler.inspect(target, subject_of(row))
    )
    if found.presence is Presence.ABSENT:
        return None
    if found.presence is Presence.FOREIGN:
        store.set_error(row, found.reason)
        raise NotOurs(f"cannot create {row.kind} {row.name}: {found.reason}")
    return found
