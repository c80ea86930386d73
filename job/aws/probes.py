"""The calls verify makes with a principal's own keys: one per action it checks.

A probe returns when AWS authorised the call and raises ClientError when it refused it. A call
aimed at something that does not exist is still an answer about permissions: S3 and IAM authorise
before they look, so "no such bucket" means the principal was allowed to ask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from job.aws.session import Aws, error_code

AUTHORISED_BUT_ABSENT = {"NoSuchBucket", "NoSuchKey", "NoSuchEntity"}


def _get_object(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def _put_object(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"written by job verify")


def _delete_object(aws: Aws, bucket: str | None, key: str | None) -> None:
    # Aimed at a key that does not exist: a wrongly allowed delete destroys nothing.
    aws.client("s3").delete_object(Bucket=bucket, Key=key)


def _list_bucket(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("s3").list_objects_v2(Bucket=bucket, MaxKeys=1)


def _list_users(aws: Aws, bucket: str | None, key: str | None) -> None:
    aws.client("iam").list_users(MaxItems=1)


PROBES: dict[str, Callable[[Aws, str | None, str | None], None]] = {
    "s3:GetObject": _get_object,
    "s3:PutObject": _put_object,
    "s3:DeleteObject": _delete_object,
    "s3:ListBucket": _list_bucket,
    "iam:ListUsers": _list_users,
}


def probe(aws: Aws, action: str, bucket: str | None = None, key: str | None = None) -> Any:
    try:
        PROBES[action](aws, bucket, key)
    except ClientError as error:
        if error_code(error) not in AUTHORISED_BUT_ABSENT:
            raise
