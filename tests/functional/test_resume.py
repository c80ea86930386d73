"""Provision fails half way, at every AWS call in turn; re-running it completes the run, and
teardown leaves the account empty of it."""

from __future__ import annotations

import logging

import pytest

from job.aws.session import make_aws
from job.errors import AwsError
from job.ledger.models import ResourceState, RunStatus
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import verify
from job.vocabulary import ResourceKind
from tests.faults import CallLog, Crash, CrashAfter, FailAt
from tests.helpers import EMULATED, leftovers, open_store

REGION = "us-east-1"
pytestmark = pytest.mark.slow
# Each sweep below is cut into this many tests (chunk k fails at calls k+1, k+1+CHUNKS, ...),
# which pytest-xdist spreads over its workers.
CHUNKS = 3


def _provision_calls(database_url: str) -> int:
    """How many AWS calls a clean provision of an existing run makes."""
    log = CallLog()
    with open_store(database_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        provision(store, make_aws(REGION, call_hooks=[log]), run_id=run.id)
        teardown(store, make_aws(REGION), run_id=run.id)
    assert "CreateUser" in log.names and "AttachUserPolicy" in log.names
    return len(log.names)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_provision_resumes_after_a_failure_at_any_call(aws, database_url, chunk) -> None:
    total = _provision_calls(database_url)
    assert total > 10, "a provision makes more than 10 AWS calls"
    for index in range(1 + chunk, total + 1, CHUNKS):
        with open_store(database_url) as store:
            run = start_run(store, make_aws(REGION), "job", EMULATED)
            with pytest.raises(AwsError, match="injected fault"):
                provision(
                    store,
                    make_aws(REGION, call_hooks=[FailAt(index)]),
                    run_id=run.id,
                    concurrency=1,  # so that the index names one call
                )
            # Failed inside the phase, or before it (the account check) with nothing touched.
            assert store.get_run(run.id).status in (RunStatus.FAILED, RunStatus.PROVISIONING)

            provision(store, make_aws(REGION), run_id=run.id)
            assert run.status is RunStatus.PROVISIONED
            assert {row.state for row in run.resources} == {ResourceState.CREATED}

            teardown(store, make_aws(REGION), run_id=run.id)
            assert leftovers(aws, run.id) == [], f"fault at call {index}"


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("finish", ["resume", "teardown"])
def test_crash_right_after_any_create_is_adopted_or_torn_down(
    aws, sqlite_url, caplog, finish
) -> None:
    """The create happened but the job died before recording it: the pending row is resolved by
    looking the resource up by its name, either by the resumed provision or by teardown."""
    total = _provision_calls(sqlite_url)
    caplog.set_level(logging.INFO, logger="job.phases.provision")
    for index in range(1, total + 1):
        with open_store(sqlite_url) as store:
            run = start_run(store, make_aws(REGION), "job", EMULATED)
            with pytest.raises(Crash):
                provision(
                    store,
                    make_aws(REGION, call_hooks=[CrashAfter(index)]),
                    run_id=run.id,
                    concurrency=1,  # so that the index names one call
                )
        with open_store(sqlite_url) as store:  # a new process: only the ledger survives
            if finish == "resume":
                provision(store, make_aws(REGION), run_id=run.id)
                verified = verify(
                    store,
                    make_aws(REGION),
                    run_id=run.id,
                )
                assert verified.status is RunStatus.VERIFIED, f"crash after call {index}"
            teardown(store, make_aws(REGION), run_id=run.id)
            rows = store.get_run(run.id).resources
            assert all(row.state is ResourceState.DELETED for row in rows)
        assert leftovers(aws, run.id) == [], f"crash after call {index}, then {finish}"
    if finish == "teardown":
        return
    # Each kind was found and adopted by a resumed provision, not created again under its name.
    adopted = {r.args[0] for r in caplog.records if r.getMessage().startswith("adopted ")}
    # (The keys verify made for its checks are verify's, not provision's to adopt.)
    assert adopted == {str(row.kind) for row in rows if row.kind != ResourceKind.IAM_ACCESS_KEY}
