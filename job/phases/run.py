"""`job run`: provision, verify, then teardown, for cron and CI."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from job.aws.session import Aws
from job.config import DEFAULT_CONCURRENCY
from job.errors import ExitCode, JobError
from job.ledger.models import Run, RunVerdict
from job.ledger.store import Store
from job.phases.common import CreatedHere
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import verify
from job.scenario import RunOptions
from job.scenario_file import ScenarioSource

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run: Run
    exit_code: ExitCode
    error: JobError | None = None


def run_all(
    store: Store,
    aws: Aws,
    *,
    prefix: str,
    options: RunOptions | None = None,
    hold: Callable[[str], AbstractContextManager[None]],
    keep: bool = False,
    started: Callable[[str], None] = lambda run_id: None,
    concurrency: int = DEFAULT_CONCURRENCY,
    measure_revocation: bool = False,
    scenario: ScenarioSource | None = None,
    batch_item_id: int | None = None,
) -> RunOutcome:
    """Exit code: verify's, by the run's verdict (0 passed, 1 failed, 4 incomplete), or the phase
    error's; 4 when teardown could not finish.
    Teardown is attempted whatever happened before it, unless `keep`. The run is held throughout.
    `started` hears the new run's id first, for reports that must name it whatever happens next.
    `scenario`: the file the run proves (the built-in seed when None); `measure_revocation` is
    verify's. `batch_item_id`: the fleet item the run is made for (job.fleet)."""
    run = start_run(store, aws, prefix, options, scenario, batch_item_id)
    started(run.id)
    with hold(run.id):
        # One hold from here to the end: what provision creates, teardown may take as seen.
        return _phases(
            store,
            aws,
            run,
            keep,
            concurrency,
            measure_revocation=measure_revocation,
        )


def _phases(
    store: Store,
    aws: Aws,
    run: Run,
    keep: bool,
    concurrency: int,
    *,
    measure_revocation: bool,
) -> RunOutcome:
    error: JobError | None = None
    exit_code = ExitCode.DONE
    created_here = CreatedHere()
    try:
        provision(store, aws, run_id=run.id, concurrency=concurrency, created_here=created_here)
        verify(
            store,
            aws,
            run_id=run.id,
            concurrency=concurrency,
            measure_revocation=measure_revocation,
            created_here=created_here,
        )
        exit_code = verdict_exit_code(run.verdict)
    except JobError as failure:
        error, exit_code = failure, failure.exit_code
    except BaseException:
        # Stopped (SIGTERM from a scheduler, Ctrl-C): tear down on the way out all the same. The
        # scheduler may kill -9 before it ends; the ledger then has what `teardown` needs.
        if not keep:
            log.warning("stopped; tearing run %s down before exiting", run.id)
            try:
                teardown(
                    store, aws, run_id=run.id, concurrency=concurrency, created_here=created_here
                )
            except JobError as failure:
                log.error("%s", failure.message)
        raise
    if keep:
        return RunOutcome(run, exit_code, error)
    try:
        teardown(store, aws, run_id=run.id, concurrency=concurrency, created_here=created_here)
    except JobError as failure:
        log.error("%s", failure.message)
        return RunOutcome(run, ExitCode.NOT_FINISHED, error or failure)
    return RunOutcome(run, exit_code, error)


def verdict_exit_code(verdict: RunVerdict | None) -> ExitCode:
    """The contract's exit code for a verify's verdict: passed 0, failed 1, incomplete (or none
    recorded: the verify did not get to judge) 4."""
    codes = {RunVerdict.PASSED: ExitCode.DONE, RunVerdict.FAILED: ExitCode.FAILED}
    return codes.get(verdict, ExitCode.NOT_FINISHED) if verdict else ExitCode.NOT_FINISHED
