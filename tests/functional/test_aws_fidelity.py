"""What AWS does and moto does not, and what the job does about it. Every test here goes through
the AWS-like layer (tests/awslike.py) and failed on the job before it handled the behaviour it
names: a run that is green on moto must not fail, or leak, on AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from job.aws.session import make_aws
from job.emulator import EmulatorCredentials
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from tests.awslike import AwsLike
from tests.conftest import REGION
from tests.faults import CallLog, Crash, FailTimes
from tests.helpers import EMULATED, admin_client, invoke, leftovers, open_store

pytestmark = pytest.mark.usefixtures("aws")


@dataclass
class CrashAfterFirst:
    """Dies right after the first `operation` has been answered: AWS did it, the job never heard."""

    operation: str
    event: str = "after-call"

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == self.operation:
            raise Crash(f"killed after {model.name}")


@dataclass
class Arguments:
    """The arguments of every call of `operation`."""

    operation: str
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name == self.operation:
            self.calls.append(dict(context["arguments"]))


def test_a_missing_bucket_is_an_error_and_never_passes_a_check(
    aws: EmulatorCredentials, aws_like: AwsLike, sqlite_url: str, capsys, monkeypatch
) -> None:
    """S3 answers NoSuchBucket before it looks at permissions. The denial on the decoy bucket
    holds only because the decoy exists; without it the check is an error, not a pass."""
    run_id = invoke(capsys, "provision", "--database-url", sqlite_url).stdout.strip()
    decoy = f"job-{run_id}-elsewhere"
    s3 = admin_client(aws, "s3")
    s3.delete_object(Bucket=decoy, Key="probe/fixture.txt")
    s3.delete_bucket(Bucket=decoy)
    # verify waits out NoSuchBucket on the run's own buckets (it may be S3's lag): not for long.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "2s")

    verified = invoke(
        capsys, "verify", "--run-id", run_id, "--database-url", sqlite_url, "--output", "json"
    )

    # No cell answered otherwise than expected, but two have no answer: incomplete, exit 4.
    assert verified.exit_code == 4, verified.stderr
    assert verified.json()["verdict"] == "incomplete"
    failed = [c for c in verified.json()["checks"] if not c["passed"]]
    assert [(c["action"], c["resource"], c["actual"], c["detail"]) for c in failed] == [
        ("s3:GetObject", f"arn:aws:s3:::{decoy}/probe/fixture.txt", "error", "NoSuchBucket")
    ] * 2
    assert any("NoSuchBucket" in line and decoy in line for line in aws_like.refusals)
    torn = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url)
    assert torn.exit_code == 0, torn.stderr
    assert leftovers(aws, run_id) == []


def test_provision_waits_out_the_new_bucket_lag(
    aws: EmulatorCredentials, aws_lag: AwsLike, sqlite_url: str, capsys
) -> None:
    provisioned = invoke(capsys, "provision", "--database-url", sqlite_url)

    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()
    assert any("PutBucketTagging" in line for line in aws_lag.refusals), aws_lag.refusals
    s3 = admin_client(aws, "s3")
    for bucket in (f"job-{run_id}-data", f"job-{run_id}-elsewhere"):
        assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
        assert s3.get_object(Bucket=bucket, Key="probe/fixture.txt")["Body"].read()
    assert (
        invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url).exit_code == 0
    )
    assert leftovers(aws, run_id) == []


def test_teardown_right_after_create_bucket_waits_for_the_bucket(
    aws: EmulatorCredentials, aws_lag: AwsLike, sqlite_url: str
) -> None:
    """Killed right after CreateBucket, torn down at once: S3 still answers NoSuchBucket for the
    new bucket. Taking that for "already gone" would leave an untagged bucket sweep cannot find."""
    # A window the teardown surely starts in, however loaded the machine (the fixture's 1 s
    # passed before it did in a clean-clone CI run); teardown waits it out either way.
    aws_lag.bucket_creation_lag = 5.0
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        with pytest.raises(Crash):
            provision(
                store,
                make_aws(REGION, call_hooks=[CrashAfterFirst("CreateBucket")]),
                run_id=run.id,
                concurrency=1,
            )
    with open_store(sqlite_url) as store:  # a new process: only the ledger survives
        torn = teardown(store, make_aws(REGION), run_id=run.id)
        assert {row.state.value for row in torn.resources} == {"deleted"}
    assert any("HeadBucket" in line for line in aws_lag.refusals), aws_lag.refusals
    assert leftovers(aws, run.id) == []


def test_an_existing_run_uses_its_own_region_whatever_the_environment_says(
    aws: EmulatorCredentials, sqlite_url: str, capsys, monkeypatch
) -> None:
    provisioned = invoke(capsys, "provision", "--region", "eu-west-1", "--database-url", sqlite_url)
    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()
    # A janitor's environment names another region, as the compose file and CronJobs do.
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    verified = invoke(capsys, "verify", "--run-id", run_id, "--database-url", sqlite_url)
    assert verified.exit_code == 0, verified.stderr

    stale = invoke(
        capsys, "teardown", "--stale", "--older-than", "0s", "--database-url", sqlite_url
    )

    assert stale.exit_code == 0, stale.stdout + stale.stderr
    assert leftovers(aws, run_id) == []


@pytest.mark.parametrize(
    ("region", "partition"),
    [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("eu-west-1", "aws")],
)
def test_runner_policy_names_the_regions_partition(capsys, region: str, partition: str) -> None:
    printed = invoke(capsys, "runner-policy", "--region", region)

    assert printed.exit_code == 0, printed.stderr
    resources = [s["Resource"] for s in json.loads(printed.stdout)["Statement"]]
    scoped = [resource for resource in resources if resource != "*"]
    assert len(scoped) >= 4
    assert all(resource.startswith(f"arn:{partition}:") for resource in scoped), scoped


def test_runner_policy_refuses_an_unknown_region(capsys) -> None:
    printed = invoke(capsys, "runner-policy", "--region", "mars-north-1")
    assert printed.exit_code == 2
    assert "unknown AWS region 'mars-north-1'" in printed.stderr


@pytest.mark.parametrize("prefix", ["sthree", "sthree-configurator", "xn--canary", "amzn-s3-demo"])
def test_a_prefix_that_makes_a_reserved_bucket_name_is_bad_input(
    aws: EmulatorCredentials, capsys, prefix: str, tmp_path: Path
) -> None:
    result = invoke(capsys, "run", "--prefix", prefix)

    assert result.exit_code == 2
    assert f"invalid prefix {prefix!r}: S3 reserves bucket names starting" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "job.db").exists(), "nothing was recorded"
    assert admin_client(aws, "s3").list_buckets(MaxBuckets=1000).get("Buckets", []) == []


def test_iam_waits_follow_the_propagation_setting(aws: EmulatorCredentials, sqlite_url) -> None:
    """IAM's "not found yet" is waited out for as long as configured, not a fixed 30 seconds."""
    never = FailTimes({"AttachUserPolicy"}, "NoSuchEntity", times=1_000)
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        short = make_aws(REGION, call_hooks=[never], propagation_timeout=timedelta(seconds=1))
        with pytest.raises(Exception, match="NoSuchEntity"):
            provision(store, short, run_id=run.id, concurrency=1)
        tries_in_one_second = never.seen
        never.seen = 0
        longer = make_aws(REGION, call_hooks=[never], propagation_timeout=timedelta(seconds=3))
        with pytest.raises(Exception, match="NoSuchEntity"):
            provision(store, longer, run_id=run.id, concurrency=1)
        # At once, 0.2 s later, every 0.5 s (each up to a fifth sooner) and at the deadline: 4
        # or 5 tries in one second (fewer if calls are slow), up to 10 in three.
        assert 3 <= tries_in_one_second <= 5
        assert tries_in_one_second < never.seen <= 10
        # The attachment's outcome is unknown to teardown (an answer, not a refusal): it looks
        # for it for the window's length, so a short one.
        teardown(store, short, run_id=run.id)
    assert leftovers(aws, run.id) == []


def test_bucket_listings_ask_for_pages(aws: EmulatorCredentials, aws_like: AwsLike, capsys) -> None:
    """AWS refuses unpaginated ListBuckets in accounts allowed over 10,000 buckets; the layer
    refuses them always, so every listing the job makes must page."""
    listings = Arguments("ListBuckets")
    swept = invoke(capsys, "sweep", "--output", "json", hooks=[listings])

    assert swept.exit_code == 0, swept.stderr
    assert listings.calls == [{"MaxBuckets": 1000, "Prefix": "job-"}]
    assert not [line for line in aws_like.refusals if "ListBuckets" in line]


def test_a_create_aws_refuses_is_recorded_as_never_made(
    aws: EmulatorCredentials, sqlite_url: str
) -> None:
    """An authorization refusal of the create call itself means nothing was made: the row is
    marked deleted at once, and teardown neither looks for it nor waits for it to appear (it
    would, for the whole propagation window, for a create whose outcome it cannot know)."""
    refused = FailTimes({"CreatePolicy"}, "AccessDenied", times=1_000)
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        with pytest.raises(Exception, match="lack iam:CreatePolicy"):
            provision(store, make_aws(REGION, call_hooks=[refused]), run_id=run.id)
        rows = {row.logical_name: row for row in store.get_run(run.id).resources}
        policies = [rows[name] for name in ("writer-policy", "reader-policy") if name in rows]
        assert policies, "at least one policy was tried"
        for row in policies:
            assert row.state.value == "deleted"
            assert "AccessDenied" in (row.error or "")
        calls = CallLog()
        teardown(store, make_aws(REGION, call_hooks=[calls]), run_id=run.id)
    assert "ListPolicyTags" not in calls.names
    assert leftovers(aws, run.id) == []
