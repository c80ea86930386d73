"""IAM roles as principals: provisioned, assumed by the job's own principal (retried while AWS
catches up with the new role), probed with the session's temporary credentials, measured, and
torn down as AWS requires (nothing attached or inside), after a crash too."""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

import pytest

from job.aws.session import make_aws
from job.ledger.models import ResourceState, RunStatus, RunVerdict, Verdict
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import verify
from job.scenario_file import ScenarioSource
from tests.faults import CallLog, Crash, DieAfter, FailTimes, SentTrustPolicies, StrictAws
from tests.helpers import EMULATED, ROLE_SCENARIO, admin_client, leftovers, open_store

REGION = "us-east-1"
pytestmark = pytest.mark.usefixtures("aws")


def _strict(aws) -> StrictAws:
    return StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))


def _job_aws(*hooks: Any, seconds: float = 20) -> Any:
    return make_aws(REGION, call_hooks=[*hooks], propagation_timeout=timedelta(seconds=seconds))


def _provisioned(store, job_aws) -> tuple[Any, Any]:
    run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
    provision(store, job_aws, run_id=run.id)
    return run


def test_a_role_scenario_provisions_verifies_and_leaves_nothing(aws, aws_lag, database_url) -> None:
    """Through the layer's lags, roles' included: verify's AssumeRole meets the new role's
    refusal, and the probes the new session's, and both are waited out."""
    # A session window the first probe surely lands in, however loaded the machine (the
    # fixture's 1 s passed first in a loaded run); verify waits it out either way.
    aws_lag.new_session_lag = 5.0
    strict, trust = _strict(aws), SentTrustPolicies()
    job_aws = make_aws(
        REGION, call_hooks=[strict, trust], propagation_timeout=timedelta(seconds=20)
    )
    with open_store(database_url) as store:
        run = _provisioned(store, job_aws)
        role = admin_client(aws, "iam").get_role(RoleName=f"job-{run.id}-auditor")["Role"]
        assert role["Path"] == "/job/" and role["MaxSessionDuration"] == 3600
        assert {t["Key"]: t["Value"] for t in role["Tags"]}["job:run-id"] == run.id
        # The job's own account is trusted, and nobody else.
        [sent] = trust.sent
        assert sent["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ]

        run = verify(store, job_aws, run_id=run.id)
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
        # No access key for a role: it was assumed.
        keys = [row for row in run.resources if row.kind == "iam_access_key"]
        assert [row.attributes["user_name"] for row in keys] == [f"job-{run.id}-writer"]
        propagation = run.measurements["propagation_seconds"]
        assert set(propagation) == {"writer", "auditor"}
        # The layer's lags (1 s for a key, 2 s for a user's policy) are in the writer's; the
        # role's (4 s from CreateRole, then 1 s for the session) in the auditor's.
        assert propagation["writer"] >= 1.0
        assert propagation["auditor"] >= 1.0
        assert "revocation_seconds" not in run.measurements
        role = f"job-{run.id}-auditor"
        assert f"new role lag: sts:AssumeRole {role}" in aws_lag.refusals, aws_lag.refusals
        assert any(line.startswith("new session lag: ") for line in aws_lag.refusals)

        teardown(store, job_aws, run_id=run.id)
        assert {row.state for row in store.get_run(run.id).resources} == {ResourceState.DELETED}
    assert leftovers(aws, run.id) == []
    assert strict.refused == []


def test_assume_role_is_retried_while_aws_does_not_know_the_role_yet(aws, sqlite_url) -> None:
    # What AWS answers to AssumeRole for a while after CreateRole.
    fault = FailTimes({"AssumeRole"}, "AccessDenied", times=2)
    with open_store(sqlite_url) as store:
        run = _provisioned(store, _job_aws())
        run = verify(store, _job_aws(fault, seconds=5), run_id=run.id)
        assert fault.seen == 2
        assert run.status is RunStatus.VERIFIED
        assert all(check.passed for check in store.latest_checks(run))


def test_a_role_never_assumable_fails_verify_clearly_after_the_window(aws, sqlite_url) -> None:
    fault = FailTimes({"AssumeRole"}, "AccessDenied", times=1000)
    with open_store(sqlite_url) as store:
        run = _provisioned(store, _job_aws())
        run = verify(store, _job_aws(fault, seconds=1.5), run_id=run.id)
        # At once, 0.2 s later, then every 0.5 s (up to a fifth sooner), and at the deadline.
        assert 3 <= fault.seen <= 6, "retried, within the window, then given up"
        # The role's cells have no answer, each saying why; the user's were answered all the same.
        checks = store.latest_checks(run)
        auditor = [c for c in checks if c.principal == "auditor"]
        assert auditor and all(c.actual is Verdict.ERROR for c in auditor)
        message = auditor[0].detail or ""
        assert f"assuming role job-{run.id}-auditor" in message and "AccessDenied" in message
        assert "lack sts:AssumeRole" in message
        assert all(c.passed for c in checks if c.principal == "writer")
        run = store.get_run(run.id)
        assert run.status is RunStatus.FAILED and run.verdict is RunVerdict.INCOMPLETE
        assert f"{len(auditor)} of {len(checks)} checks not answered: auditor " in (
            run.attempts[-1].error or ""
        )
        assert "AccessDenied" in (run.attempts[-1].error or "")
        # The user's key, made alongside, is gone all the same.
        keys = [row for row in run.resources if row.kind == "iam_access_key"]
        assert all(row.state is ResourceState.DELETED for row in keys)
        teardown(store, _job_aws(), run_id=run.id)
    assert leftovers(aws, run.id) == []


def test_a_role_gone_behind_the_jobs_back_fails_verify_naming_it(aws, aws_like, sqlite_url) -> None:
    """AWS refuses AssumeRole of a role that does not exist with AccessDenied, as it refuses a
    role not known yet (moto would hand out credentials): verify waits out the window, then
    fails naming the role, rather than probing with a session of nothing."""
    with open_store(sqlite_url) as store:
        run = _provisioned(store, _job_aws())
        role = f"job-{run.id}-auditor"
        iam = admin_client(aws, "iam")
        for policy in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=policy["PolicyArn"])
        iam.delete_role(RoleName=role)
        run = verify(store, _job_aws(seconds=1.5), run_id=run.id)
        assert run.verdict is RunVerdict.INCOMPLETE
        details = {c.detail for c in store.latest_checks(run) if c.principal == "auditor"}
        [message] = details
        assert f"assuming role {role}" in (message or "") and "AccessDenied" in (message or "")
        refusals = [line for line in aws_like.refusals if line.startswith("no such role: ")]
        assert 3 <= len(refusals) <= 6, "retried, within the window, then given up"
        assert set(refusals) == {f"no such role: sts:AssumeRole {role}"}
        # Short: the role, recorded a moment ago, is looked for until the window has passed.
        teardown(store, _job_aws(seconds=1), run_id=run.id)
    assert leftovers(aws, run.id) == []


class CrashAfterCreateRole:
    """The process dies as AWS answers CreateRole: the role exists, the ledger says pending, and
    its policy was never attached."""

    event = "after-call"

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == "CreateRole":
            raise Crash("killed after CreateRole")


def test_a_crash_between_create_role_and_its_attachment_is_torn_down(aws, sqlite_url) -> None:
    strict = _strict(aws)
    with open_store(sqlite_url) as store:
        run = start_run(store, _job_aws(), "job", EMULATED, ROLE_SCENARIO)
        with pytest.raises(Crash):
            provision(
                store,
                _job_aws(CrashAfterCreateRole()),
                run_id=run.id,
                concurrency=1,
            )
        rows = {row.logical_name: row for row in store.get_run(run.id).resources}
        assert rows["auditor"].state is ResourceState.PENDING
        assert "auditor-attachment" not in rows
        iam = admin_client(aws, "iam")
        assert iam.get_role(RoleName=f"job-{run.id}-auditor")["Role"]["Path"] == "/job/"

        teardown(store, _job_aws(strict, seconds=2), run_id=run.id)
        assert {row.state for row in store.get_run(run.id).resources} == {ResourceState.DELETED}
    assert leftovers(aws, run.id) == []


def test_teardown_removes_what_aws_would_refuse_to_delete_a_role_around(aws, sqlite_url) -> None:
    """moto deletes a role with policies and instance profiles still on it; AWS answers
    DeleteConflict (StrictAws does too), so the role's delete must remove them and try again."""
    iam = admin_client(aws, "iam")
    strict = _strict(aws)
    with open_store(sqlite_url) as store:
        run = _provisioned(store, _job_aws())
        role = f"job-{run.id}-auditor"
        # What a person may have hung on the run's role.
        iam.put_role_policy(
            RoleName=role,
            PolicyName="extra",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        other = iam.create_policy(
            PolicyName=f"other-{run.id}",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}],
                }
            ),
        )["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=role, PolicyArn=other)
        iam.create_instance_profile(InstanceProfileName=f"profile-{run.id}")
        iam.add_role_to_instance_profile(InstanceProfileName=f"profile-{run.id}", RoleName=role)

        # Without the job's care AWS would refuse: the model says so.
        with pytest.raises(Exception, match="DeleteConflict"):
            StrictAws(iam, admin_client(aws, "s3"))(
                type("Model", (), {"name": "DeleteRole"})(), {"arguments": {"RoleName": role}}
            )

        teardown(store, _job_aws(strict), run_id=run.id)
        # Asked once, refused, cleared, asked again.
        assert strict.refused == ["DeleteRole"]
    assert leftovers(aws, run.id) == [f"policy other-{run.id}"]
    # The instance profile is somebody else's: only the role was taken out of it.
    profile = iam.get_instance_profile(InstanceProfileName=f"profile-{run.id}")
    assert profile["InstanceProfile"]["Roles"] == []


def test_measure_revocation_times_each_users_deleted_key_and_each_roles_revoked_session(
    aws, sqlite_url
) -> None:
    from job.phases.run import run_all

    iam = admin_client(aws, "iam")
    with open_store(sqlite_url) as store:
        run = _provisioned(store, _job_aws())
        role = f"job-{run.id}-auditor"
        run = verify(store, _job_aws(seconds=3), run_id=run.id, measure_revocation=True)
        revocation = run.measurements["revocation_seconds"]
        assert set(revocation) == {"writer", "auditor"}
        assert all(0 <= seconds < 3 for seconds in revocation.values())
        # The role's revocation was recorded before it was put, and taken off again: the role is
        # as provision left it, so verifying it again works.
        [revoked] = [r for r in run.resources if r.kind == "iam_role_session_revocation"]
        assert revoked.name == "AWSRevokeOlderSessions" and revoked.attributes["role_name"] == role
        assert revoked.state is ResourceState.DELETED and revoked.error is None
        assert iam.list_role_policies(RoleName=role)["PolicyNames"] == []
        again = verify(store, _job_aws(seconds=3), run_id=run.id)
        assert again.status is RunStatus.VERIFIED
        teardown(store, _job_aws(), run_id=run.id)

        # And through `job run`'s phases, on the seed scenario's two users.
        outcome = run_all(
            store,
            _job_aws(seconds=3),
            prefix="job",
            options=EMULATED,
            hold=lambda run_id: nullcontext(),
            measure_revocation=True,
        )
        assert outcome.exit_code == 0
        measured = store.get_run(outcome.run.id).measurements
        assert set(measured["revocation_seconds"]) == {"writer", "reader"}
        assert set(measured["propagation_seconds"]) == {"writer", "reader"}


def test_a_crash_with_a_roles_sessions_revoked_is_torn_down(aws, sqlite_url) -> None:
    strict = _strict(aws)
    iam = admin_client(aws, "iam")
    with open_store(sqlite_url) as store:
        run = _provisioned(store, _job_aws())
        with pytest.raises(Crash):
            verify(
                store, _job_aws(DieAfter("PutRolePolicy")), run_id=run.id, measure_revocation=True
            )
        rows = store.get_run(run.id).resources
        [revoked] = [r for r in rows if r.kind == "iam_role_session_revocation"]
        assert revoked.state is ResourceState.PENDING, "recorded before it was put"
        role = f"job-{run.id}-auditor"
        assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["AWSRevokeOlderSessions"]

        teardown(store, _job_aws(strict, seconds=2), run_id=run.id)
        assert {row.state for row in store.get_run(run.id).resources} == {ResourceState.DELETED}
    assert leftovers(aws, run.id) == []
    assert strict.refused == []


DENY_ONLY_ROLE = ScenarioSource(
    """
version: 1
buckets:
  data:
    objects: {probe/fixture.txt: "nobody may read this"}
roles:
  idle: {}
expect:
  - {principal: idle, action: s3:GetObject, resource: "bucket:data/probe/fixture.txt", result: deny}
  - {principal: idle, action: sts:GetCallerIdentity, resource: "*", result: allow}
""",
    "test_roles.py DENY_ONLY_ROLE",
)


def test_a_role_with_nothing_allowed_to_refuse_is_not_revoked(aws, sqlite_url, caplog) -> None:
    """A deny policy cannot refuse sts:GetCallerIdentity, and a denied call is refused already:
    with nothing to time, nothing is put on the role, and the run says why."""
    calls = CallLog()
    with open_store(sqlite_url) as store:
        run = start_run(store, _job_aws(), "job", EMULATED, DENY_ONLY_ROLE)
        provision(store, _job_aws(), run_id=run.id)
        run = verify(store, _job_aws(calls), run_id=run.id, measure_revocation=True)
        assert run.status is RunStatus.VERIFIED
        assert run.measurements["revocation_seconds"] == {}
        assert "PutRolePolicy" not in calls.names
        assert "not timing the revocation of idle's session" in caplog.text
        teardown(store, _job_aws(), run_id=run.id)
    assert leftovers(aws, run.id) == []
