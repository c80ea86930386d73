"""What `job run` no longer waits for, and the guarantees that still hold: a teardown in the same
hold as the provision skips the second ownership look, and only then; a bucket's objects are
settled with their bucket, after a crash too."""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import nullcontext
from typing import Any

import pytest

from job.aws.session import make_aws
from job.ledger.models import ResourceState, RunStatus
from job.ledger.store import Store
from job.phases.common import CreatedHere
from job.phases.provision import provision, start_run
from job.phases.run import RunOutcome, run_all
from job.phases.teardown import teardown
from tests.faults import CallLog, Crash, DieAfter, StrictAws
from tests.helpers import EMULATED, admin_client, leftovers, open_store

REGION = "us-east-1"
pytestmark = pytest.mark.usefixtures("aws")
# The calls that ask AWS whose a resource is (the inspections of every kind the seed makes).
OWNERSHIP_LOOKS = {"ListUserTags", "ListPolicyTags", "HeadBucket", "GetBucketTagging", "HeadObject"}


# What finds the blockers of a delete AWS refused.
BLOCKER_LISTINGS = (
    "ListObjectVersions",
    "ListMultipartUploads",
    "ListAttachedUserPolicies",
    "ListUserPolicies",
    "ListGroupsForUser",
    "DeleteLoginProfile",
    "ListEntitiesForPolicy",
    "ListPolicyVersions",
)


def _strict(aws) -> StrictAws:
    return StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))


def _job_run(store: Store, *hooks: Any) -> RunOutcome:
    """A `job run` of the seed, in this process, through `hooks`; it must pass."""
    outcome = run_all(
        store,
        make_aws(REGION, call_hooks=hooks),
        prefix="job",
        options=EMULATED,
        hold=lambda run_id: nullcontext(),
    )
    assert outcome.exit_code == 0
    return outcome


def test_a_job_run_tears_down_what_it_made_without_asking_whose_it_is(aws, sqlite_url) -> None:
    calls, strict = CallLog(), _strict(aws)
    with open_store(sqlite_url) as store:
        outcome = _job_run(store, calls, strict)
        run = store.get_run(outcome.run.id)
        assert run.status is RunStatus.TORN_DOWN
        assert {row.state for row in run.resources} == {ResourceState.DELETED}
    made = Counter(calls.names)
    assert {name: made[name] for name in OWNERSHIP_LOOKS if made[name]} == {}
    # The run's objects went with their buckets: one DeleteObjects per bucket, of the keys the
    # bucket's row records, and no listing of it. Nor is anything listed before a user or policy
    # is deleted: AWS, which refuses what still has something on it, did not refuse.
    assert made["DeleteObjects"] == 2
    assert {name: made[name] for name in BLOCKER_LISTINGS if made[name]} == {}
    assert strict.refused == []
    assert leftovers(aws, outcome.run.id) == []


def test_a_teardown_outside_the_hold_that_created_looks_at_everything_first(
    aws, sqlite_url
) -> None:
    """`job teardown --run-id` (another process, another hold): no CreatedHere to trust."""
    with open_store(sqlite_url) as store:
        job_aws = make_aws(REGION)
        run = start_run(store, job_aws, "job", EMULATED)
        provision(store, job_aws, run_id=run.id, created_here=CreatedHere())
        calls = CallLog()
        teardown(store, make_aws(REGION, call_hooks=[calls, _strict(aws)]), run_id=run.id)
    made = Counter(calls.names)
    # Both users, both policies, both buckets, before deleting them.
    assert made["ListUserTags"] >= 2 and made["ListPolicyTags"] == 2
    assert made["HeadBucket"] == 2 and made["GetBucketTagging"] == 2
    assert leftovers(aws, run.id) == []


def test_a_resource_an_earlier_attempt_created_is_looked_at_again(aws, sqlite_url) -> None:
    """Only what this hold made is trusted: after a crash, a resumed provision in a new hold
    vouches for nothing the dead one made."""
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        with pytest.raises(Crash):
            provision(
                store,
                make_aws(REGION, call_hooks=[DieAfter("AttachUserPolicy")]),
                run_id=run.id,
                concurrency=1,
            )
        created_here = CreatedHere()
        provision(store, make_aws(REGION), run_id=run.id, created_here=created_here)
        rows = store.get_run(run.id).resources
        earlier = [row for row in rows if row.kind in ("iam_user", "iam_policy", "s3_bucket")]
        assert earlier and not any(row in created_here for row in earlier)
        assert any(row in created_here for row in rows), "what this attempt made is trusted"
        calls = CallLog()
        teardown(
            store,
            make_aws(REGION, call_hooks=[calls, _strict(aws)]),
            run_id=run.id,
            created_here=created_here,
        )
    made = Counter(calls.names)
    assert made["HeadBucket"] == 2 and made["ListPolicyTags"] == 2
    assert leftovers(aws, run.id) == []


def test_objects_left_by_a_teardown_killed_after_their_bucket_went_are_settled(
    aws, sqlite_url
) -> None:
    with open_store(sqlite_url) as store:
        job_aws = make_aws(REGION)
        run = start_run(store, job_aws, "job", EMULATED)
        provision(store, job_aws, run_id=run.id)
        with pytest.raises(Crash):
            teardown(
                store,
                make_aws(REGION, call_hooks=[DieAfter("DeleteBucket")]),
                run_id=run.id,
                concurrency=1,
            )
        rows = store.get_run(run.id).resources
        objects = [row for row in rows if row.kind == "s3_object"]
        assert all(row.state is ResourceState.CREATED for row in objects)
        teardown(store, make_aws(REGION, call_hooks=[_strict(aws)]), run_id=run.id)
        assert {row.state for row in store.get_run(run.id).resources} == {ResourceState.DELETED}
        assert all(row.error is None for row in objects)
    assert leftovers(aws, run.id) == []


class AnsweredLog(CallLog):
    """The calls in the order they were answered."""

    event = "after-call"


class BucketSettingsWaitForAnObject:
    """Holds each bucket's PutBucketEncryption until some PutObject has been sent (or 5 s have
    passed): a fixture object that waited for its bucket's settings would never come, and the
    hold would time out. Keeps the order in which calls were answered."""

    event = "before-call"

    def __init__(self) -> None:
        self.object_sent = threading.Event()
        self.waited_out: list[bool] = []

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == "PutObject":
            self.object_sent.set()
        elif model.name == "PutBucketEncryption":
            self.waited_out.append(not self.object_sent.wait(timeout=5))


def test_a_buckets_objects_are_put_beside_its_settings_and_verify_waits_for_both(
    aws, sqlite_url
) -> None:
    """Provision: what needs a resource starts once it exists, not once its settings are made.
    Verify's keys still wait for every setting."""
    hold, answered = BucketSettingsWaitForAnObject(), AnsweredLog()
    with open_store(sqlite_url) as store:
        outcome = _job_run(store, hold, answered)
    assert hold.waited_out == [False, False], "a fixture was put while its bucket was set up"
    names = answered.names
    last_setting = max(i for i, name in enumerate(names) if name == "PutBucketEncryption")
    assert names.index("CreateAccessKey") > last_setting
    assert leftovers(aws, outcome.run.id) == []
