"""Transient faults at the HTTP boundary: the run still passes and leaves nothing; faults that
outlast the retries end in exit 4 with the run recorded and re-runnable."""

from __future__ import annotations

import pytest

from job.aws.session import make_aws
from job.config import parse_database_url
from job.errors import AwsError
from job.ledger.engine import Ledger
from job.ledger.models import RunStatus
from job.ledger.store import Store
from job.phases.provision import provision, start_run
from job.phases.run import run_all
from tests.faults import Flaky
from tests.helpers import EMULATED, leftovers, open_store

REGION = "us-east-1"
pytestmark = pytest.mark.usefixtures("aws")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_through_a_flaky_network_passes_and_leaves_nothing(aws, sqlite_url, seed) -> None:
    flaky = Flaky(rate=0.2, seed=seed)
    ledger = Ledger(parse_database_url(sqlite_url)).open()
    try:
        with ledger.session() as session:
            store = Store(session)
            outcome = run_all(
                store,
                make_aws(REGION, call_hooks=[flaky]),
                prefix="job",
                options=EMULATED,
                hold=ledger.hold,
            )
            assert outcome.exit_code == 0, outcome.error
            assert all(check.passed for check in store.latest_checks(outcome.run))
    finally:
        ledger.dispose()
    assert len(flaky.injected) >= 8, flaky.injected
    assert {"throttle", "500", "reset", "lost"} <= set(flaky.injected) or seed != 1
    assert leftovers(aws, outcome.run.id) == []


def test_faults_past_the_retries_exit_4_and_the_run_can_be_resumed(aws, sqlite_url) -> None:
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        with pytest.raises(AwsError, match="creating s3_bucket") as failure:
            # Two attempts, not eight: the point is what happens after the last one.
            broken = Flaky(rate=1.0, seed=0, only=frozenset({"CreateBucket"}))
            provision(store, make_aws(REGION, call_hooks=[broken], max_attempts=2), run_id=run.id)
        assert failure.value.exit_code == 4
        assert store.get_run(run.id).status is RunStatus.FAILED
    with open_store(sqlite_url) as store:
        assert provision(store, make_aws(REGION), run_id=run.id).status is RunStatus.PROVISIONED
        assert len(leftovers(aws, run.id)) == 6
