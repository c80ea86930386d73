"""IAM roles as principals: provisioned, assumed by the job's own principal, probed with the
session's temporary credentials, and torn down as AWS requires (nothing attached or inside)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from job.aws.session import make_aws
from job.ledger.models import ResourceState, RunStatus, Verdict
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import verify
from tests.faults import AccountTrust, StrictAws
from tests.helpers import EMULATED, admin_client, leftovers, open_store, role_scenario

REGION = "us-east-1"
pytestmark = pytest.mark.usefixtures("aws")


def _strict(aws) -> StrictAws:
    return StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))


def _no_hold(run_id: str) -> Any:
    from contextlib import nullcontext

    return nullcontext()


def test_a_role_scenario_provisions_verifies_and_leaves_nothing(aws, aws_lag, database_url) -> None:
    strict, trust = _strict(aws), AccountTrust()
    job_aws = make_aws(
        REGION, call_hooks=[strict, trust], propagation_timeout=timedelta(seconds=20)
    )
    with open_store(database_url) as store:
        run = start_run(store, job_aws, "job", EMULATED)
        scenario = role_scenario(run, job_aws)
        provision(store, job_aws, run_id=run.id, scenario=scenario)
        role = admin_client(aws, "iam").get_role(RoleName=f"job-{run.id}-auditor")["Role"]
        assert role["Path"] == "/job/" and role["MaxSessionDuration"] == 3600
        # The job's own account is trusted, and nobody else.
        [sent] = trust.sent
        assert sent["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ]
        assert {t["Key"]: t["Value"] for t in role["Tags"]}["job:run-id"] == run.id

        run = verify(store, job_aws, run_id=run.id, scenario=scenario)
        checks = store.latest_checks(run)
        assert run.status is RunStatus.VERIFIED, [
            (c.principal, c.action, c.actual, c.detail) for c in checks if not c.passed
        ]
        auditor = [c for c in checks if c.principal == "auditor"]
        assert {(c.action, c.actual) for c in auditor} == {
            ("s3:GetObject", Verdict.ALLOW),
            ("s3:ListBucket", Verdict.ALLOW),
            ("sts:GetCallerIdentity", Verdict.ALLOW),
            ("s3:PutObject", Verdict.DENY),
            ("s3:DeleteObject", Verdict.DENY),
            ("iam:ListUsers", Verdict.DENY),
        }
        propagation = run.measurements["propagation_seconds"]
        assert set(propagation) == {"writer", "auditor"}
        assert all(seconds >= 0 for seconds in propagation.values())

        teardown(store, job_aws, run_id=run.id, scenario=scenario)
        assert {row.state for row in store.get_run(run.id).resources} == {ResourceState.DELETED}
    assert leftovers(aws, run.id) == []
    assert strict.refused == []
