"""The calls verify makes with a principal's own credentials, one per action declared in
job.probes, and what each answer says about the principal's permission.

A probe returns when AWS allowed the call and raises when it did not. Only an authorization refusal
is a denial. Anything else is no answer about permissions at all: S3 answers NoSuchBucket (404) for
a bucket that does not exist to anyone, before it looks at who asks, so a probe aimed at a missing
bucket proves nothing either way.
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from job.aws.session import Aws, error_code
from job.probes import PROBES, Aim

# (credentials, where it is aimed, the cell's request context: job.probes.Probe.context's names)
ProbeCall = Callable[[Aws, Aim, Mapping[str, Any]], None]


def _get_object(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("s3").get_object(Bucket=aim.bucket, Key=aim.key)["Body"].read()


def _put_object(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    params: dict[str, Any] = {
        "Bucket": aim.bucket,
        "Key": aim.key,
        "Body": b"written by job verify",
    }
    if "server_side_encryption" in context:
        params["ServerSideEncryption"] = context["server_side_encryption"]
    if "tags" in context:
        params["Tagging"] = urlencode(context["tags"])
    aws.client("s3").put_object(**params)


def _delete_object(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    # Aimed at a key that does not exist: a wrongly allowed delete destroys nothing (S3 answers
    # 204 to an allowed delete of a missing key).
    aws.client("s3").delete_object(Bucket=aim.bucket, Key=aim.key)


def _list_bucket(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    params: dict[str, Any] = {"Bucket": aim.bucket, "MaxKeys": 1}
    if "prefix" in context:
        params["Prefix"] = context["prefix"]
    if "delimiter" in context:
        params["Delimiter"] = context["delimiter"]
    aws.client("s3").list_objects_v2(**params)


def _get_object_tagging(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("s3").get_object_tagging(Bucket=aim.bucket, Key=aim.key)


def _put_object_tagging(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("s3").put_object_tagging(
        Bucket=aim.bucket,
        Key=aim.key,
        Tagging={"TagSet": [{"Key": "job-verify", "Value": "tagged"}]},
    )


def _get_bucket_policy(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    try:
        aws.client("s3").get_bucket_policy(Bucket=aim.bucket)
    except ClientError as error:
        # Asked, and answered: there is no policy. Only an allowed caller hears this.
        if error_code(error) != "NoSuchBucketPolicy":
            raise


def _list_all_my_buckets(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("s3").list_buckets(MaxBuckets=1)


def _list_roles(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("iam").list_roles(MaxItems=1)


def _list_users(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("iam").list_users(MaxItems=1)


def _get_role(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("iam").get_role(RoleName=aim.role_name)


def _assume_role(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    # The shortest session STS gives; its credentials are dropped here, never kept or logged.
    aws.client("sts").assume_role(
        RoleArn=str(aim.role_arn), RoleSessionName="job-verify-probe", DurationSeconds=900
    )


def _get_caller_identity(aws: Aws, aim: Aim, context: Mapping[str, Any]) -> None:
    aws.client("sts").get_caller_identity()


CALLS: dict[str, ProbeCall] = {
    "s3:GetObject": _get_object,
    "s3:PutObject": _put_object,
    "s3:DeleteObject": _delete_object,
    "s3:ListBucket": _list_bucket,
    "s3:GetObjectTagging": _get_object_tagging,
    "s3:PutObjectTagging": _put_object_tagging,
    "s3:GetBucketPolicy": _get_bucket_policy,
    "s3:ListAllMyBuckets": _list_all_my_buckets,
    "iam:ListUsers": _list_users,
    "iam:ListRoles": _list_roles,
    "iam:GetRole": _get_role,
    "sts:AssumeRole": _assume_role,
    "sts:GetCallerIdentity": _get_caller_identity,
}
# Every declared probe has its call and every call its declaration: a mismatch fails at import.
if set(CALLS) != set(PROBES):
    raise ImportError(
        f"probes declared but not callable, or the reverse: {set(CALLS) ^ set(PROBES)}"
    )


def probe(
    aws: Aws, action: str, aim: Aim | None = None, context: Mapping[str, Any] | None = None
) -> None:
    CALLS[action](aws, aim or Aim(), context or {})
