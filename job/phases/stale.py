"""`job teardown --stale`: the janitor. Tears down every run that is not torn down and has been
idle longer than a duration: runs whose process died, or that were provisioned with --keep and
forgotten.

Several janitors may run at once on machines sharing one PostgreSQL ledger. Each run is torn down
by whichever takes its hold first; the others skip it (a held run is busy, not an error), and one
that gets the hold after the run was finished sees that and does nothing.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from job.aws.session import Aws
from job.config import DEFAULT_CONCURRENCY
from job.errors import JobError, RunHeld
from job.ledger.models import RunStatus, utcnow
from job.ledger.store import Store
from job.logs import WAITING
from job.parallel import run_each
from job.phases.teardown import teardown

log = logging.getLogger(__name__)


class StaleResult(enum.StrEnum):
    """What the janitor did with one stale run (`--output json` shows the value)."""

    TORN_DOWN = "torn_down"
    SKIPPED = "skipped"  # held by another process, or finished by one meanwhile
    FAILED = "failed"


@dataclass(frozen=True)
class StaleOutcome:
    run_id: str
    outcome: StaleResult
    error: str | None = None


def teardown_stale(
    store: Store,
    make_aws: Callable[[str], Aws],
    *,
    older_than: timedelta,
    hold: Callable[[str], AbstractContextManager[None]],
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[StaleOutcome]:
    """Up to `concurrency` runs at once, each torn down one call at a time: the bound is on calls
    in flight, and across runs there is all the parallelism a janitor needs."""
    idle_since = utcnow() - older_than
    run_ids = [run.id for run in store.stale_runs(idle_since)]
    outcomes: dict[str, StaleOutcome] = {}
    principals: dict[str, Aws] = {}  # one per region: clients are costly to make, and shareable
    guard = threading.Lock()

    def aws_for(region: str) -> Aws:
        with guard:
            if region not in principals:
                principals[region] = make_aws(region)
            return principals[region]

    def tear_down(run_id: str) -> None:
        try:
            with hold(run_id):
                # Read again under the hold: another janitor may have finished it meanwhile.
                run = store.get_run(run_id)
                if run.status is RunStatus.TORN_DOWN or run.updated_at >= idle_since:
                    outcomes[run_id] = StaleOutcome(run_id, StaleResult.SKIPPED)
                    return
                log.info("tearing down stale run %s (idle since %s)", run_id, run.updated_at)
                teardown(store, aws_for(run.region), run_id=run_id, concurrency=1)
                outcomes[run_id] = StaleOutcome(run_id, StaleResult.TORN_DOWN)
        except RunHeld:
            outcomes[run_id] = StaleOutcome(run_id, StaleResult.SKIPPED, "held by another process")
        except JobError as error:
            # One stuck run must not keep the janitor from the others.
            log.error("%s", error.message)
            outcomes[run_id] = StaleOutcome(run_id, StaleResult.FAILED, error.message)
        with guard:
            log.info("stale runs: %d of %d done", len(outcomes), len(run_ids), extra=WAITING)

    run_each({run_id: partial(tear_down, run_id) for run_id in run_ids}, concurrency=concurrency)
    return [outcomes[run_id] for run_id in run_ids]
