"""Verify under IAM's eventual consistency: new keys that are not valid yet, attachments that have
not taken effect, and a principal whose allowed calls never work."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest

from job.aws.session import make_aws
from job.ledger.models import ResourceState, RunStatus, RunVerdict, Verdict
from job.phases.provision import provision, start_run
from job.phases.verify import verify
from tests.faults import FailTimes, KillAt, client_error
from tests.helpers import EMULATED, admin_client, cli_in_fork, open_store

REGION = "us-east-1"
pytestmark = pytest.mark.usefixtures("aws")


def _provisioned(store) -> str:
    run = start_run(store, make_aws(REGION), "job", EMULATED)
    provision(store, make_aws(REGION), run_id=run.id)
    return run.id


def _no_keys_left(aws, run_id: str) -> None:
    iam = admin_client(aws, "iam")
    for role in ("writer", "reader"):
        assert iam.list_access_keys(UserName=f"job-{run_id}-{role}")["AccessKeyMetadata"] == []


@pytest.mark.parametrize(
    "fault",
    [
        # A key a moment old: S3 does not know it yet.
        FailTimes({"PutObject", "GetObject"}, "InvalidAccessKeyId", times=2),
        # The attachment has not reached S3 yet: an allowed call is denied for a while.
        FailTimes({"GetObject"}, "AccessDenied", times=2),
    ],
    ids=["key-not-yet-valid", "attachment-not-yet-effective"],
)
def test_verify_waits_for_iam_to_catch_up(aws, sqlite_url, fault) -> None:
    with open_store(sqlite_url) as store:
        run_id = _provisioned(store)
        run = verify(
            store,
            make_aws(REGION, call_hooks=[fault]),
            run_id=run_id,
        )
        assert fault.seen == 2
        assert run.status is RunStatus.VERIFIED
        assert all(check.passed for check in store.latest_checks(run))
    _no_keys_left(aws, run_id)


class DenyGetsAfterTheFirst:
    """With concurrency 1 the principals are verified in order, writer then reader: every
    GetObject after the writer's is the reader's, and is denied, as if the reader's policy never
    took effect."""

    gets = 0

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == "GetObject":
            self.gets += 1
            if self.gets > 1:
                raise client_error("AccessDenied", model.name)


def test_a_denial_before_the_allowed_calls_work_proves_nothing(aws, sqlite_url) -> None:
    hook = DenyGetsAfterTheFirst()
    with open_store(sqlite_url) as store:
        run_id = _provisioned(store)
        run = verify(
            store,
            make_aws(REGION, call_hooks=[hook], propagation_timeout=timedelta(seconds=1)),
            run_id=run_id,
            concurrency=1,
        )

        assert run.status is RunStatus.VERIFY_FAILED
        assert hook.gets > 2, "the reader's get was retried until the timeout"
        checks = store.latest_checks(run)
        assert all(c.passed for c in checks if c.principal == "writer")
        [allowed] = [c for c in checks if c.principal == "reader" and c.expected is Verdict.ALLOW]
        assert (allowed.action, allowed.actual, allowed.passed) == (
            "s3:GetObject",
            Verdict.DENY,
            False,
        )
        denied = [c for c in checks if c.principal == "reader" and c.expected is Verdict.DENY]
        assert len(denied) == 5
        s3_denied = [c for c in denied if c.action.startswith("s3:")]
        assert len(s3_denied) == 4
        for check in s3_denied:
            # Denied S3 calls were not tried: the reader's S3 policy never showed it was in
            # effect, so a denial now could be S3 not having caught up.
            assert check.actual is Verdict.ERROR and not check.passed
            assert "would prove nothing" in (check.detail or "")
        # IAM's answer does not hang on S3's: with no allowed IAM call to show the policy there,
        # the denial is confirmed once the policy has had the settle interval to reach IAM.
        [iam_denied] = [c for c in denied if c.action == "iam:ListUsers"]
        assert iam_denied.actual is Verdict.DENY and iam_denied.passed
        assert run.verdict is RunVerdict.FAILED  # the reader's allowed get was denied
        keys = [row for row in store.get_run(run_id).resources if row.kind == "iam_access_key"]
        assert len(keys) == 2 and all(row.state is ResourceState.DELETED for row in keys)
    _no_keys_left(aws, run_id)


class Explode:
    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == "PutObject":
            raise RuntimeError("the process is going down")


def test_keys_are_deleted_when_verify_fails_half_way(aws, sqlite_url) -> None:
    with open_store(sqlite_url) as store:
        run_id = _provisioned(store)
        with pytest.raises(RuntimeError):
            verify(
                store,
                make_aws(REGION, call_hooks=[Explode()]),
                run_id=run_id,
            )
        run = store.get_run(run_id)
        assert run.status is RunStatus.FAILED
        # Stopped part-way: not passed, whatever the checks made before the stop said.
        assert run.verdict is RunVerdict.INCOMPLETE
        assert run.attempts[-1].phase == "verify" and "RuntimeError" in (
            run.attempts[-1].error or ""
        )
        keys = [row for row in run.resources if row.kind == "iam_access_key"]
        # The writer's key, and the reader's if it was made alongside: all gone.
        assert keys and all(row.state is ResourceState.DELETED for row in keys)
    _no_keys_left(aws, run_id)


def test_keys_left_by_a_killed_verify_are_removed_before_the_next(aws, sqlite_url) -> None:
    """AWS allows two keys per user. A verify killed right after creating the writer's key leaves
    it behind; with one more key on the writer, the next verify's CreateAccessKey would fail with
    LimitExceeded, were the writer's keys not removed first."""
    with open_store(sqlite_url) as store:
        run_id = _provisioned(store)
    # One call at a time: call 1 is sts:GetCallerIdentity, call 2 the writer's CreateAccessKey.
    status = cli_in_fork(
        ["verify", "--run-id", run_id, "--database-url", sqlite_url, "--concurrency", "1"],
        [KillAt("after-call", 2)],
    )
    assert os.WIFSIGNALED(status)
    iam = admin_client(aws, "iam")
    iam.create_access_key(UserName=f"job-{run_id}-writer")
    assert len(iam.list_access_keys(UserName=f"job-{run_id}-writer")["AccessKeyMetadata"]) == 2

    with open_store(sqlite_url) as store:
        run = verify(store, make_aws(REGION), run_id=run_id)
        assert run.status is RunStatus.VERIFIED
        keys = [row for row in run.resources if row.kind == "iam_access_key"]
        assert len(keys) == 3 and {row.state for row in keys} == {ResourceState.DELETED}
    _no_keys_left(aws, run_id)
