"""`job sweep`: find what carries the job's tags in the account but is not live in the ledger (the
ledger was lost, another ledger made it, a bug), and with `execute`, delete it.

Only the job's own places are listed: IAM users, roles and policies under the job's path, buckets
named as the job names them, and groups under the job's path named as it names a run's (IAM
cannot tag a group: job.aws.iam.groups says what stands in for the tags). Each one's tags are
read only when the ledger does not account for it, so an account with thousands of the job's
users costs one tag read per stranger, not per user.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import cast

from job.aws.handler import (
    MANAGED_BY_KEY,
    MANAGED_BY_VALUE,
    RUN_ID_KEY,
    Subject,
    Sweepable,
    Target,
)
from job.aws.kinds import handler_for
from job.aws.session import AWS_ERRORS, Aws, describe_aws_error
from job.config import DEFAULT_CONCURRENCY
from job.kinds import sweep_kinds, sweep_waves
from job.ledger.models import utcnow
from job.ledger.store import Store
from job.parallel import run_each
from job.vocabulary import ResourceKind

log = logging.getLogger(__name__)


class SweepAction(enum.StrEnum):
    """What sweep did with an orphan (`--output json` shows the value)."""

    LISTED = "listed"  # found, and nothing done to it: a dry run
    DELETED = "deleted"
    KEPT = "kept"  # too young: it may belong to a run in progress elsewhere
    FAILED = "failed"


@dataclass
class Orphan:
    kind: ResourceKind
    name: str
    physical_id: str
    run_id: str | None
    created_at: datetime
    action: SweepAction = SweepAction.LISTED
    error: str | None = None


def _tagged(
    aws: Aws, prefix: str, accounted: set[tuple[ResourceKind, str]], partition: str
) -> Iterator[Orphan]:
    """What carries the job's tags, kind by kind in sweep's order, as each kind finds it."""
    for kind in sweep_kinds():
        handler = cast(Sweepable, handler_for(kind))
        skip = partial(_accounted, accounted, kind)
        for found in handler.find_tagged(aws, prefix, partition, skip):
            if found.tags.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE:
                run_id = found.tags.get(RUN_ID_KEY)
                yield Orphan(kind, found.name, found.physical_id, run_id, found.created_at)


def _accounted(accounted: set[tuple[ResourceKind, str]], kind: ResourceKind, name: str) -> bool:
    return (kind, name) in accounted


def sweep(
    store: Store,
    aws: Aws,
    *,
    prefix: str,
    older_than: timedelta,
    execute: bool,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[Orphan]:
    identity = aws.identity()
    accounted = store.live_resource_names(identity.account_id)
    try:
        orphans = list(_tagged(aws, prefix, accounted, identity.partition))
    except AWS_ERRORS as error:
        raise describe_aws_error(error, "listing the job's resources") from None
    if not execute:
        return orphans
    cutoff = utcnow() - older_than

    def delete(orphan: Orphan) -> None:
        target = Target(aws, orphan.run_id or "", identity.account_id, identity.partition)
        try:
            handler_for(orphan.kind).delete(
                target, Subject(name=orphan.name, physical_id=orphan.physical_id)
            )
        except AWS_ERRORS as error:
            orphan.action, orphan.error = (
                SweepAction.FAILED,
                describe_aws_error(error, "deleting").message,
            )
            log.error("could not delete %s %s: %s", orphan.kind, orphan.name, orphan.error)
            return
        orphan.action = SweepAction.DELETED
        log.info("deleted orphaned %s %s (run %s)", orphan.kind, orphan.name, orphan.run_id)

    doomed = []
    for orphan in orphans:
        if orphan.created_at > cutoff:
            orphan.action = SweepAction.KEPT
            orphan.error = f"younger than {older_than}: may belong to a run in progress elsewhere"
        else:
            doomed.append(orphan)
    # In the waves the kinds declare (job.kinds): users and roles before the policies they hold.
    # Within a wave, at once.
    for kinds in sweep_waves():
        run_each(
            {id(o): partial(delete, o) for o in doomed if o.kind in kinds}, concurrency=concurrency
        )
    return orphans
