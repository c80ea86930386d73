"""Teardown: delete everything the run created or may have created, newest first, from the ledger
alone. Idempotent: "already gone" is success, and a second teardown finds nothing to do.

Before deleting, each resource is inspected: only what carries this run's tag (or belongs to
something that does) is deleted. Anything else under our name is left alone; the ledger says why.
"""

from __future__ import annotations

import logging

from job.aws.handler import Presence, Target
from job.aws.kinds import handler_for
from job.aws.session import Aws
from job.errors import AwsError
from job.ledger.models import Resource, ResourceState, Run, RunStatus
from job.ledger.store import Store
from job.phases.common import phase, recording_failure, target_for

log = logging.getLogger(__name__)


def teardown(store: Store, aws: Aws, *, run_id: str) -> Run:
    run = store.get_run(run_id)
    target = target_for(run, aws)
    with phase(store, run, "teardown", RunStatus.TEARING_DOWN):
        failures: list[str] = []
        # Creation order is dependency order, so the reverse deletes dependents first.
        for row in sorted(run.resources, key=lambda resource: resource.id, reverse=True):
            if row.state is ResourceState.DELETED:
                continue
            try:
                delete_resource(store, target, row)
            except AwsError as error:
                # Go on with the rest: a stuck policy must not keep the users alive.
                failures.append(error.message)
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise AwsError(f"teardown of run {run.id} is incomplete: {failures[0]}{more}")
        store.set_status(run, RunStatus.TORN_DOWN)
    return run


def delete_resource(store: Store, target: Target, row: Resource) -> None:
    """Delete one recorded resource if it is there and it is this run's; record the outcome."""
    handler = handler_for(row.kind)
    with recording_failure(store, row, f"deleting {row.kind} {row.name}"):
        found = handler.inspect(target, row)
        if found.presence is Presence.OURS:
            store.set_state(row, ResourceState.DELETING)
            handler.delete(target, row)
            log.info("deleted %s %s", row.kind, row.name)
    if found.presence is Presence.FOREIGN:
        log.warning("not deleting %s %s: %s", row.kind, row.name, found.reason)
    store.set_state(
        row,
        ResourceState.DELETED,
        error=found.reason if found.presence is Presence.FOREIGN else None,
    )
