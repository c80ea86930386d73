"""S3's 409 OperationAborted, through the AWS-like layer (tests/awslike.py): S3 refuses a bucket
configuration write that meets another one still in progress on the same bucket
(terraform-provider-aws#7628), and may answer it to CreateBucket and DeleteBucket too.
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList

Provision writes a bucket's settings one after another, other buckets meanwhile, and asks again
whatever S3 answers OperationAborted."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from job.emulator import EmulatorCredentials
from tests.awslike import AwsLike
from tests.helpers import admin_client, invoke, leftovers

pytestmark = pytest.mark.usefixtures("aws")

# What provision writes on each bucket after creating it. Not the TLS-only policy: on the
# emulator's plain http:// endpoint it would deny the teardown everything (JOB_REQUIRE_TLS is 0);
# it is written by the same code as the others.
CONFIGURATION_WRITES = (
    "PutBucketTagging",
    "PutPublicAccessBlock",
    "PutBucketOwnershipControls",
    "PutBucketEncryption",
)


@dataclass
class Spans:
    """When each bucket configuration write was sent and answered, as the job saw it: botocore
    hands one call's before-call and after-call handlers the same context."""

    writes: list[tuple[str, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hooks(self) -> list[Any]:
        return [_Sent(), _Answered(self)]

    def by_bucket(self) -> dict[str, list[tuple[float, float]]]:
        spans: dict[str, list[tuple[float, float]]] = {}
        for bucket, sent, answered in self.writes:
            spans.setdefault(bucket, []).append((sent, answered))
        return {bucket: sorted(times) for bucket, times in spans.items()}


@dataclass
class _Sent:
    event: str = "before-call"

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        context["sent"] = time.monotonic()


@dataclass
class _Answered:
    spans: Spans
    event: str = "after-call"

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name in CONFIGURATION_WRITES:
            with self.spans.lock:
                self.spans.writes.append(
                    (context["arguments"]["Bucket"], context["sent"], time.monotonic())
                )


def test_a_buckets_settings_are_written_one_at_a_time_and_buckets_side_by_side(
    aws: EmulatorCredentials, aws_like: AwsLike, sqlite_url: str, capsys
) -> None:
    # Each write held in flight a while, so that two sent side by side surely meet.
    aws_like.bucket_configuration_seconds = 0.3
    spans = Spans()

    provisioned = invoke(capsys, "provision", "--database-url", sqlite_url, hooks=spans.hooks())

    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()
    # The layer refuses (and logs) any write that met another in flight on its bucket.
    assert [line for line in aws_like.refusals if line.startswith("concurrent configuration")] == []
    by_bucket = spans.by_bucket()
    assert sorted(by_bucket) == [f"job-{run_id}-data", f"job-{run_id}-elsewhere"]
    for bucket, times in by_bucket.items():
        assert len(times) == len(CONFIGURATION_WRITES), bucket
        pairs = itertools.pairwise(times)
        assert all(answered <= next_sent for (_, answered), (next_sent, _) in pairs), bucket
    # ...while the two buckets were set up side by side, not one after the other.
    data, elsewhere = by_bucket.values()
    assert data[0][0] < elsewhere[-1][1] and elsewhere[0][0] < data[-1][1]
    s3 = admin_client(aws, "s3")
    for bucket in by_bucket:
        assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    torn = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url)
    assert torn.exit_code == 0, torn.stderr
    assert leftovers(aws, run_id) == []


def test_operation_aborted_is_asked_again_wherever_s3_answers_it(
    aws: EmulatorCredentials, aws_like: AwsLike, sqlite_url: str, capsys
) -> None:
    """Every bucket write provision and teardown make is refused once: each is asked again, and
    the run is whole and then gone."""
    refused_once = ["s3:CreateBucket", *(f"s3:{name}" for name in CONFIGURATION_WRITES)]
    aws_like.operation_aborted_next = dict.fromkeys([*refused_once, "s3:DeleteBucket"], 1)

    provisioned = invoke(capsys, "provision", "--database-url", sqlite_url)

    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()
    torn = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url)
    assert torn.exit_code == 0, torn.stderr
    assert leftovers(aws, run_id) == []
    fired = sorted(line.split(" ")[2] for line in aws_like.refusals if "OperationAborted" in line)
    assert fired == sorted([*refused_once, "s3:DeleteBucket"])
    assert set(aws_like.operation_aborted_next.values()) == {0}
