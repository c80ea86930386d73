"""Teardown: delete everything the run created or may have created, newest first, from the ledger
alone. Idempotent: "already gone" is success, and a second teardown finds nothing to do.

Before deleting, each resource is inspected: only what carries this run's tag (or belongs to
something that does) is deleted. Anything else under our name is left alone; the ledger says why.
The one exception is what this very process created under the run's hold, in the same `job run`
(CreatedHere): it saw those made, and nobody else may act on the run meanwhile. The run's objects
go with their bucket, which is emptied (every version) before it is deleted.
"""

from __future__ import annotations

import logging
from functools import partial

from job.aws.handler import Target
from job.aws.session import Aws
from job.config import DEFAULT_CONCURRENCY
from job.errors import AwsError
from job.kinds import carried, teardown_needs
from job.ledger.models import Phase, Resource, ResourceState, Run, RunStatus
from job.ledger.store import Store
from job.parallel import run_graph
from job.phases.common import (
    CreatedHere,
    delete_recorded,
    phase,
    target_for,
)

log = logging.getLogger(__name__)


def teardown(
    store: Store,
    aws: Aws,
    *,
    run_id: str,
    concurrency: int = DEFAULT_CONCURRENCY,
    created_here: CreatedHere | None = None,
) -> Run:
    """Delete what the ledger recorded for the run, in an order the rows themselves give.
    `created_here`: what this process made for the run under its hold, deleted without asking AWS
    whose it is (CreatedHere); everything else is looked up first."""
    run = store.get_run(run_id)
    target = target_for(run, aws)
    with phase(store, run, Phase.TEARDOWN, RunStatus.TEARING_DOWN):
        failures: list[str] = []
        # Newest first: with concurrency 1 that alone deletes dependents first (creation order
        # is dependency order); with more, each waits for what needs it.
        rows = sorted(run.resources, key=lambda resource: resource.id, reverse=True)
        carried = _carried_objects(rows)
        settled_with_bucket = {row.id for rows_in in carried.values() for row in rows_in}
        rows = [row for row in rows if row.id not in settled_with_bucket]

        def delete(row: Resource) -> None:
            try:
                if row.state is not ResourceState.DELETED:
                    delete_recorded(store, target, row, created_here)
                for carried_object in carried.get(row.id, []):
                    _settle(store, target, row, carried_object, created_here)
            except AwsError as error:
                # Go on with the rest: a stuck policy must not keep the users alive.
                failures.append(error.message)

        # The order comes from the rows themselves: a run's scenario may have changed names since.
        run_graph(
            {row.logical_name: partial(delete, row) for row in rows},
            teardown_needs(rows),
            concurrency=concurrency,
        )
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise AwsError(f"teardown of run {run.id} is incomplete: {failures[0]}{more}")
        store.set_status(run, RunStatus.TORN_DOWN)
    return run


def _carried_objects(rows: list[Resource]) -> dict[int, list[Resource]]:
    """The rows another row's delete takes away, by that row's id (job.kinds: carried_by):
    deleting one of the run's buckets deletes every object in it (every version), so its
    objects' rows need no calls of their own: they are settled once their bucket's deletion is
    (`_settle`)."""
    by_carrier: dict[int, list[Resource]] = {}
    for carrier, row in carried(rows):
        by_carrier.setdefault(carrier.id, []).append(row)
    return by_carrier


def _settle(
    store: Store,
    target: Target,
    bucket: Resource,
    carried_object: Resource,
    created_here: CreatedHere | None,
) -> None:
    """After its bucket's deletion: a bucket deleted (or never there) took the object with it,
    and the ledger says so; a bucket left standing (someone else's) is not emptied, and the
    object is looked at, and left alone, on its own."""
    if carried_object.state is ResourceState.DELETED:
        return
    if bucket.state is ResourceState.DELETED and bucket.error is None:
        store.set_state(carried_object, ResourceState.DELETED)
        log.info("deleted %s %s with its bucket", carried_object.kind, carried_object.name)
        return
    delete_recorded(store, target, carried_object, created_here)
