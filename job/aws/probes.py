"""The calls verify makes with a principal's own credentials: one per action it checks, each with
the IAM actions a principal needs for it to succeed declared beside it, and what each answer says
about the principal's permission.

A probe returns when AWS allowed the call and raises when it did not. Only an authorization refusal
is a denial. Anything else is no answer about permissions at all: S3 answers NoSuchBucket (404) for
a bucket that does not exist to anyone, before it looks at who asks, so a probe aimed at a missing
bucket proves nothing either way.
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from job.aws.session import Aws

ProbeCall = Callable[[Aws, str | None, str | None], None]


@dataclass(frozen=True)
class Probe:
    # The action a scenario's expectation names (the registry's key).
    action: str
    # The call, as the principal: (its Aws, the bucket, the key) -> None, or an AWS error.
    call: ProbeCall
    # The IAM actions a principal's policies must allow for the call to succeed.
    needs: tuple[str, ...]
    # True when no IAM policy can deny the call: a scenario may only expect it allowed.
    always_allowed: bool = False
    # Whether the call is aimed at a bucket (and then, perhaps, an object in it).
    on_bucket: bool = True
    # Whether an allowed call leaves an object behind (at the key it is aimed at): the bucket's
    # teardown then deletes that key with the bucket's own objects.
    writes_object: bool = False
    # Whether the call reads the object at its key. Its denial means something only if the object
    # is there: S3 answers a missing key with 403 AccessDenied, not 404, to a caller without
    # s3:ListBucket, so a scenario may aim it only at a key it creates.
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (Permissions)
    reads_object: bool = False
    # Whether an allowed call changes the object it is aimed at (overwrites or deletes it): verify
    # runs such checks only after every check that reads that object, so that no verdict depends
    # on the order AWS happens to see the calls in.
    mutates_object: bool = False

    @property
    def service(self) -> str:
        """The service the call is authorized by ("s3", "iam", "sts"): a principal's policy
        reaches each one separately."""
        return self.action.partition(":")[0].lower()


def _get_object(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def _put_object(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"written by job verify")


def _delete_object(aws: Aws, bucket: str | None, key: str | None) -> None:
    # Aimed at a key that does not exist: a wrongly allowed delete destroys nothing (S3 answers
    # 204 to an allowed delete of a missing key).
    aws.client("s3").delete_object(Bucket=bucket, Key=key)


def _list_bucket(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("s3").list_objects_v2(Bucket=bucket, MaxKeys=1)


def _list_users(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("iam").list_users(MaxItems=1)


def _get_caller_identity(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("sts").get_caller_identity()


PROBES: dict[str, Probe] = {
    probe.action: probe
    for probe in (
        Probe("s3:GetObject", _get_object, ("s3:GetObject",), reads_object=True),
        Probe(
            "s3:PutObject",
            _put_object,
            ("s3:PutObject",),
            writes_object=True,
            mutates_object=True,
        ),
        Probe("s3:DeleteObject", _delete_object, ("s3:DeleteObject",), mutates_object=True),
        # ListObjectsV2 is authorized as s3:ListBucket, on the bucket.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
        Probe("s3:ListBucket", _list_bucket, ("s3:ListBucket",)),
        Probe("iam:ListUsers", _list_users, ("iam:ListUsers",), on_bucket=False),
        # "No permissions are required to perform this operation. If an administrator attaches a
        # policy to your identity that explicitly denies access to the sts:GetCallerIdentity
        # action, you can still perform this operation."
        # https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
        Probe(
            "sts:GetCallerIdentity",
            _get_caller_identity,
            (),
            always_allowed=True,
            on_bucket=False,
        ),
    )
}


def probe(aws: Aws, action: str, bucket: str | None = None, key: str | None = None) -> None:
    PROBES[action].call(aws, bucket, key)
