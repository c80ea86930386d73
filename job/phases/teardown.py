"""Teardown: delete everything the run created or may have created, newest first, from the ledger
alone. Idempotent: "already gone" is success, and a second teardown finds nothing to do.

Before deleting, each resource is inspected: only what carries this run's tag (or belongs to
something that does) is deleted. Anything else under our name is left alone; the ledger says why.
"""

from __future__ import annotations

import logging
from functools import partial

from job.aws.handler import Presence, Target
from job.aws.kinds import handler_for
from job.aws.session import Aws
from job.config import DEFAULT_CONCURRENCY
from job.errors import AwsError
from job.ledger.models import Phase, Resource, ResourceState, Run, RunStatus
from job.ledger.store import Store
from job.parallel import run_graph
from job.phases.common import (
    look_up,
    phase,
    recording_failure,
    subject_of,
    target_for,
)
from job.scenario import teardown_needs

log = logging.getLogger(__name__)


def teardown(
    store: Store,
    aws: Aws,
    *,
    run_id: str,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Run:
    """Delete what the ledger recorded for the run, in an order the rows themselves give."""
    run = store.get_run(run_id)
    target = target_for(run, aws)
    with phase(store, run, Phase.TEARDOWN, RunStatus.TEARING_DOWN):
        failures: list[str] = []

        def delete(row: Resource) -> None:
            if row.state is ResourceState.DELETED:
                return
            try:
                delete_resource(store, target, row)
            except AwsError as error:
                # Go on with the rest: a stuck policy must not keep the users alive.
                failures.append(error.message)

        # Newest first: with concurrency 1 that alone deletes dependents first (creation order
        # is dependency order); with more, each waits for what needs it.
        rows = sorted(run.resources, key=lambda resource: resource.id, reverse=True)
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


def delete_resource(store: Store, target: Target, row: Resource) -> None:
    """Delete one recorded resource if it is there and it is this run's; record the outcome."""
    handler = handler_for(row.kind)
    with recording_failure(store, row, f"deleting {row.kind} {row.name}"):
        found = look_up(target, row)
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
