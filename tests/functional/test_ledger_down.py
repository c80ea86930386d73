"""When the ledger cannot be written, nothing more is created in AWS: a resource that cannot be
recorded first is not created. The command fails with exit 4 and a clear message."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from job.aws.session import make_aws
from job.errors import LedgerError
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from tests.helpers import EMULATED, leftovers, open_store

REGION = "us-east-1"
CREATING = ("Create", "Put", "Attach", "Upload")
pytestmark = pytest.mark.usefixtures("aws")


class LedgerDiesAt:
    """Every commit from the `at`-th on fails, as on a full disk or a lost database server."""

    def __init__(self, at: int) -> None:
        self.at, self.commits, self.dead = at, 0, False

    def __call__(self, session: Any) -> None:
        self.commits += 1
        if self.commits >= self.at:
            self.dead = True
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))


class CreatesAfterDeath:
    """Records any creating AWS call made once the ledger is dead."""

    def __init__(self, ledger: LedgerDiesAt) -> None:
        self.ledger, self.calls = ledger, []

    def __call__(self, model: Any, **_: Any) -> None:
        if self.ledger.dead and model.name.startswith(CREATING):
            self.calls.append(model.name)


@pytest.mark.parametrize(
    ("concurrency", "step"),
    [
        # One call at a time: once the ledger is dead, not one more creating call is made.
        (1, 1),
        # Side by side, calls whose rows were committed before the ledger died may still be in
        # flight, and finish; what counts is that teardown then finds everything (a sample of
        # the commits, the sequential case above tries each).
        (10, 3),
    ],
)
def test_no_resource_is_created_that_could_not_be_recorded(
    aws, sqlite_url, concurrency: int, step: int
) -> None:
    at = 1
    while True:
        dies = LedgerDiesAt(at)
        watch = CreatesAfterDeath(dies)
        with open_store(sqlite_url) as store:
            run_id = start_run(store, make_aws(REGION), "job", EMULATED).id
            event.listen(store.session, "before_commit", dies)
            try:
                provision(
                    store,
                    make_aws(REGION, call_hooks=[watch]),
                    run_id=run_id,
                    concurrency=concurrency,
                )
            except LedgerError as error:
                assert error.exit_code == 4
                assert "cannot write to the ledger: disk I/O error" in error.message
                assert "nothing further was created" in error.message
            else:
                break  # provision needs fewer commits than `at`: every one has been tried
            finally:
                event.remove(store.session, "before_commit", dies)
        if concurrency == 1:
            assert watch.calls == [], f"created after the ledger died at commit {at}"
        with open_store(sqlite_url) as store:  # the ledger is back: it accounts for everything
            teardown(store, make_aws(REGION), run_id=run_id)
        assert leftovers(aws, run_id) == [], f"ledger died at commit {at}"
        at += step
    assert at > 15, "provision commits at least twice per resource"
