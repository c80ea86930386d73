"""S3 buckets and the objects the job puts in them; and the listing that finds the job's buckets
whatever the ledger says (for `job sweep`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, ClassVar, TypeVar

from botocore.exceptions import ClientError

from job.aws.handler import (
    ABSENT,
    AlreadyExists,
    Created,
    Found,
    NothingToConfigure,
    Presence,
    Scope,
    Subject,
    Tagged,
    Target,
    judge_tags,
    refused_means_not_created,
    tag_dict,
)
from job.aws.retry import delete_clearing, until_consistent
from job.aws.session import Aws, error_code
from job.errors import NotOurs
from job.kinds import BucketAttributes, ObjectAttributes
from job.naming import s3_arn
from job.parallel import fan_out
from job.scenario import JOB_BUCKET_NAME
from job.vocabulary import ResourceKind

BUCKET_GONE = {"NoSuchBucket", "404", "NotFound"}
NEW_BUCKET_NOT_FOUND = {"NoSuchBucket"}
# S3's 409 for a bucket write that meets another one still in progress on the bucket (its
# configuration written at once, a name deleted a moment ago created again): nothing was done,
# and the same call succeeds once the other is over. botocore does not retry it.
# https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList
BUCKET_BUSY = {"OperationAborted"}
# A bucket policy naming a principal S3 does not know (yet).
PRINCIPAL_NOT_KNOWN = {"MalformedPolicy"}
OBJECT_GONE = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
T = TypeVar("T")
log = logging.getLogger(__name__)
DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
# ListBuckets pages of the most S3 returns. AWS refuses unpaginated ListBuckets for accounts whose
# bucket quota was raised above 10,000, so every listing asks for pages.
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListBuckets.html
LIST_BUCKETS_PAGE = 1000
# What list_buckets and bucket_tags need, beyond the kinds' own verbs.
LISTING_PERMISSIONS: Mapping[str, Scope] = {
    "s3:ListAllMyBuckets": Scope.UNSCOPED,
    "s3:GetBucketTagging": Scope.JOB_BUCKETS,
}


def bucket_arn(target: Target, bucket: str, key: str | None = None) -> str:
    return s3_arn(target.partition, bucket, key)


def tls_only_policy(target: Target, bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyWithoutTLS",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn(target, bucket), bucket_arn(target, bucket, "*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def bucket_policy(
    target: Target, bucket: str, attributes: BucketAttributes
) -> dict[str, Any] | None:
    """The policy the job writes on a bucket: its own lock-down (TLS only), then the scenario's
    statements. A Deny of the job's is never weakened by them: an explicit deny wins."""
    statements: list[Any] = []
    if attributes.require_tls:
        statements += tls_only_policy(target, bucket)["Statement"]
    if attributes.policy is not None:
        written = attributes.policy["Statement"]
        statements += [written] if isinstance(written, dict) else list(written)
    if not statements:
        return None
    version = (attributes.policy or {}).get("Version", "2012-10-17")
    return {"Version": version, "Statement": statements}


def _put_policy(
    target: Target, bucket: str, policy: dict[str, Any], names_principals: bool
) -> None:
    """PutBucketPolicy on a bucket made a moment ago. A policy naming principals made a moment
    ago too may be refused while S3 does not know them yet (MalformedPolicy, "Invalid principal
    in policy"): IAM is eventually consistent. The scenario's policy passed validation, so that
    refusal is asked again for up to the propagation timeout, as a new bucket's NoSuchBucket is.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency"""
    retry_on = (
        NEW_BUCKET_NOT_FOUND | BUCKET_BUSY | (PRINCIPAL_NOT_KNOWN if names_principals else set())
    )
    until_consistent(
        lambda: target.aws.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy)),
        retry_on=retry_on,
        timeout=target.propagation_timeout,
        what=f"bucket {bucket}'s policy",
    )


def list_buckets(s3: Any, prefix: str = "") -> Iterator[dict[str, Any]]:
    """The account's buckets whose names start with `prefix`, page by page."""
    params: dict[str, Any] = {"PaginationConfig": {"PageSize": LIST_BUCKETS_PAGE}}
    if prefix:
        params["Prefix"] = prefix
    for page in s3.get_paginator("list_buckets").paginate(**params):
        yield from page.get("Buckets", [])


def bucket_tags(s3: Any, bucket: str) -> dict[str, str]:
    """A bucket's tags. ClientError when it has none, is gone, or is in another region."""
    return tag_dict(s3.get_bucket_tagging(Bucket=bucket)["TagSet"])


def _own_buckets(s3: Any, name: str) -> set[str]:
    return {bucket["Name"] for bucket in list_buckets(s3, prefix=name)}


def on_new_bucket(target: Target, bucket: str, call: Callable[..., T], **params: Any) -> T:
    """`call(Bucket=bucket, **params)` on a bucket this run has just created, waiting out S3's
    NoSuchBucket: for a while after CreateBucket, S3 may not know the bucket on every endpoint
    (terraform-provider-aws retries the same for two minutes); and its OperationAborted, while
    another write on the bucket is still in progress.
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel"""
    return until_consistent(
        lambda: call(Bucket=bucket, **params),
        retry_on=NEW_BUCKET_NOT_FOUND | BUCKET_BUSY,
        timeout=target.propagation_timeout,
        what=f"bucket {bucket}",
    )


def while_busy(target: Target, bucket: str, call: Callable[[], T]) -> T:
    """`call()`, a write on `bucket`, asked again while S3 answers OperationAborted, for up to
    the propagation timeout: another write on the bucket, or on its name, is still going on."""
    return until_consistent(
        call, retry_on=BUCKET_BUSY, timeout=target.propagation_timeout, what=f"bucket {bucket}"
    )


def _answer(call: Callable[[], T]) -> Callable[[], tuple[T | None, ClientError | None]]:
    """`call`, made to return AWS's refusal rather than raise it: for calls made side by side
    whose answers are read together."""

    def made() -> tuple[T | None, ClientError | None]:
        try:
            return call(), None
        except ClientError as error:
            return None, error

    return made


def inspect_bucket(target: Target, bucket: str, *also: Callable[[], Any]) -> Found:
    """Whether the bucket is there and the run's. HeadBucket (whose account holds it) and
    GetBucketTagging (whose run) are asked at once, with `also` (calls of the caller's, their
    outcomes the caller's to read again) beside them."""
    s3 = target.aws.client("s3")
    (_, head_error), (tagging, tagging_error), *_ = fan_out(
        [
            _answer(lambda: s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=target.account_id)),
            _answer(lambda: s3.get_bucket_tagging(Bucket=bucket)),
            *also,
        ]
    )
    if head_error is not None:
        code = error_code(head_error)
        if code in BUCKET_GONE:
            return ABSENT
        # A 403 means another account holds the name (names are global), or that we may not
        # look at our own bucket. Only the first is a stranger; taking the second for one would
        # mark a live bucket deleted and leave it behind.
        if code in ("403", "AccessDenied") and bucket not in _own_buckets(s3, bucket):
            return Found(
                Presence.FOREIGN, None, f"bucket {bucket} is another account's; left alone"
            )
        raise head_error
    if tagging_error is None:
        tags = tag_dict(tagging["TagSet"])
    elif error_code(tagging_error) == "NoSuchTagSet":
        tags = {}
    elif error_code(tagging_error) in BUCKET_GONE:
        return ABSENT
    else:
        raise tagging_error
    return judge_tags(
        target, tags, bucket_arn(target, bucket), untagged_is_ours=True, what=f"bucket {bucket}"
    )


def _delete_versions(s3: Any, bucket: str, prefix: str | None = None) -> None:
    """Every version and delete marker (a versioned bucket keeps them all), in batches."""
    params: dict[str, Any] = {"Bucket": bucket}
    if prefix is not None:
        params["Prefix"] = prefix
    for page in s3.get_paginator("list_object_versions").paginate(**params):
        _delete_entries(
            s3,
            bucket,
            [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
                if prefix is None or item["Key"] == prefix
            ],
        )


def _delete_entries(s3: Any, bucket: str, entries: list[dict[str, str]]) -> None:
    """DeleteObjects, in batches; a key or version already gone is no error."""
    for start in range(0, len(entries), DELETE_BATCH):
        answer = s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": entries[start : start + DELETE_BATCH], "Quiet": True},
        )
        failed = [e for e in answer.get("Errors", []) if e.get("Code") not in OBJECT_GONE]
        if failed:
            raise ClientError(
                {"Error": {"Code": failed[0]["Code"], "Message": failed[0].get("Message", "")}},
                "DeleteObjects",
            )


class BucketHandler:
    kind: ClassVar[ResourceKind] = ResourceKind.S3_BUCKET
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": (
            "s3:CreateBucket",
            "s3:PutBucketTagging",
            "s3:PutBucketPublicAccessBlock",
            "s3:PutBucketOwnershipControls",
            "s3:PutEncryptionConfiguration",
            "s3:PutBucketPolicy",
        ),
        "inspect": ("s3:ListBucket", "s3:GetBucketTagging", "s3:ListAllMyBuckets"),
        "delete": (
            "s3:ListBucketVersions",
            "s3:ListBucketMultipartUploads",
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:DeleteBucket",
        ),
    }
    scope: ClassVar[Scope] = Scope.JOB_BUCKETS
    scopes: ClassVar[Mapping[str, Scope]] = {
        # Emptying the bucket acts on its objects and uploads.
        "s3:AbortMultipartUpload": Scope.JOB_OBJECTS,
        "s3:DeleteObject": Scope.JOB_OBJECTS,
        "s3:DeleteObjectVersion": Scope.JOB_OBJECTS,
        "s3:ListAllMyBuckets": Scope.UNSCOPED,
    }

    def create(self, target: Target, subject: Subject) -> Created:
        s3 = target.aws.client("s3")
        params: dict[str, Any] = {"Bucket": subject.name}
        # us-east-1 is the one region that rejects a LocationConstraint naming itself.
        if target.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": target.region}
        try:
            with refused_means_not_created():
                while_busy(target, subject.name, partial(s3.create_bucket, **params))
        except ClientError as error:
            code = error_code(error)
            if code == "BucketAlreadyOwnedByYou":
                raise AlreadyExists(subject.name) from None
            if code == "BucketAlreadyExists":
                raise NotOurs(
                    f"bucket name {subject.name} is taken by another AWS account; start a new run "
                    "(its name will differ) or choose another --prefix"
                ) from None
            raise
        return Created(bucket_arn(target, subject.name))

    def configure(self, target: Target, subject: Subject) -> None:
        """Tag the bucket, then lock it down, one setting after another: none needs another, but
        S3 refuses a bucket's configuration writes made at once, the second meeting the first
        still in progress with 409 OperationAborted (terraform-provider-aws#7628). One answered
        so all the same (someone else at the bucket) is asked again, each for up to the
        propagation timeout. Other buckets, the objects and IAM are made meanwhile. Idempotent:
        provision runs it after the create, or again on a bucket it adopts from an earlier
        attempt (perhaps killed half way through this). A crash before the tagging leaves the
        bucket untagged: the write-ahead row is then the proof it is ours.

        The bucket's objects are put meanwhile, not after: they are not left exposed before
        these settings land, since AWS makes every new bucket private on its own (Block Public
        Access on, ACLs disabled, since April 2023) and encrypts every new object (SSE-S3, since
        January 2023); the settings here restate that for the bucket's life, and add what AWS
        does not (the TLS-only policy).
        https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-block-public-access.html
        https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html
        https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingServerSideEncryption.html"""
        tag = partial(
            on_new_bucket,
            target,
            subject.name,
            target.aws.client("s3").put_bucket_tagging,
            Tagging={"TagSet": target.tags()},
        )
        settings: list[Callable[[], object]] = [tag, *self._lock_down(target, subject)]
        for setting in settings:
            setting()

    @staticmethod
    def _lock_down(target: Target, subject: Subject) -> list[Callable[[], object]]:
        s3, bucket = target.aws.client("s3"), subject.name
        settings: list[tuple[Callable[..., object], dict[str, Any]]] = [
            (
                s3.put_public_access_block,
                {
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": True,
                        "RestrictPublicBuckets": True,
                    }
                },
            ),
            (
                s3.put_bucket_ownership_controls,
                {"OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}},
            ),
            (
                s3.put_bucket_encryption,
                {
                    "ServerSideEncryptionConfiguration": {
                        "Rules": [
                            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                        ]
                    }
                },
            ),
        ]
        attributes = subject.attributes_as(BucketAttributes)
        calls: list[Callable[[], object]] = [
            partial(on_new_bucket, target, bucket, call, **params) for call, params in settings
        ]
        policy = bucket_policy(target, bucket, attributes)
        if policy is not None:
            calls.append(partial(_put_policy, target, bucket, policy, bool(attributes.principals)))
        return calls

    def inspect(self, target: Target, subject: Subject) -> Found:
        return inspect_bucket(target, subject.name)

    def find_tagged(
        self, aws: Aws, prefix: str, partition: str, skip: Callable[[str], bool]
    ) -> Iterator[Tagged]:
        s3 = aws.client("s3")
        for bucket in list_buckets(s3, prefix=f"{prefix}-"):
            name = bucket["Name"]
            # Named as the job names buckets: another name under the prefix is not the job's.
            if not JOB_BUCKET_NAME.fullmatch(name) or skip(name):
                continue
            try:
                tags = bucket_tags(s3, name)
            except ClientError as error:
                # Untagged, gone, or in another region (answered by a redirect): not ours to judge.
                log.info("not judging bucket %s: %s", name, error_code(error))
                continue
            yield Tagged(name, s3_arn(partition, name), tags, bucket["CreationDate"])

    def delete(self, target: Target, subject: Subject) -> None:
        """The keys the run may have written (recorded with the bucket), then the bucket. Only
        when S3 refuses it (BucketNotEmpty: somebody else's object, a version, an upload) is the
        bucket listed and emptied of everything, and deleted again. A row from before the keys
        were recorded is emptied first, as S3 requires."""
        s3 = target.aws.client("s3")
        bucket = subject.name
        keys = subject.attributes_as(BucketAttributes).keys
        empty = partial(self._empty, s3, bucket)
        try:
            if keys is None:
                empty()
                clearings: tuple[Callable[[], None], ...] = ()
            else:
                _delete_entries(s3, bucket, [{"Key": key} for key in keys])
                clearings = (empty,)
            delete_clearing(
                partial(
                    while_busy,
                    target,
                    bucket,
                    partial(s3.delete_bucket, Bucket=bucket, ExpectedBucketOwner=target.account_id),
                ),
                *clearings,
                refused="BucketNotEmpty",
                what=f"bucket {bucket}",
            )
        except ClientError as error:
            if error_code(error) not in BUCKET_GONE:
                raise

    @staticmethod
    def _empty(s3: Any, bucket: str) -> None:
        """Every object version and delete marker, and every unfinished multipart upload."""

        def abort_uploads() -> None:
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                for upload in page.get("Uploads", []):
                    s3.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )

        # Both must be done before DeleteBucket; neither needs the other.
        fan_out([abort_uploads, partial(_delete_versions, s3, bucket)])


class ObjectHandler(NothingToConfigure):
    """An object the job itself puts in its bucket. Objects carry no tags we rely on: an object is
    ours when its bucket is."""

    kind: ClassVar[ResourceKind] = ResourceKind.S3_OBJECT
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("s3:PutObject",),
        "inspect": ("s3:ListBucket", "s3:GetBucketTagging", "s3:GetObject"),
        "delete": ("s3:ListBucketVersions", "s3:DeleteObject", "s3:DeleteObjectVersion"),
    }
    scope: ClassVar[Scope] = Scope.JOB_OBJECTS
    scopes: ClassVar[Mapping[str, Scope]] = {
        # Its bucket's questions, asked to judge whose the object is.
        "s3:ListBucket": Scope.JOB_BUCKETS,
        "s3:GetBucketTagging": Scope.JOB_BUCKETS,
        "s3:ListBucketVersions": Scope.JOB_BUCKETS,
    }

    def create(self, target: Target, subject: Subject) -> Created:
        attributes = subject.attributes_as(ObjectAttributes)
        bucket, key = attributes.bucket, attributes.key
        with refused_means_not_created():
            on_new_bucket(
                target,
                bucket,
                target.aws.client("s3").put_object,
                Key=key,
                Body=attributes.body.encode(),
                ExpectedBucketOwner=target.account_id,
            )
        return Created(bucket_arn(target, bucket, key))

    def inspect(self, target: Target, subject: Subject) -> Found:
        attributes = subject.attributes_as(ObjectAttributes)
        bucket, key = attributes.bucket, attributes.key
        # Asked beside the bucket's own questions; its answer counts only if the bucket is ours.
        head: list[ClientError | None] = []
        s3 = target.aws.client("s3")

        def head_object() -> None:
            head.append(_answer(lambda: s3.head_object(Bucket=bucket, Key=key))()[1])

        owner = inspect_bucket(target, bucket, head_object)
        if owner.presence is not Presence.OURS:
            return owner if owner.presence is Presence.FOREIGN else ABSENT
        [error] = head
        if error is not None:
            if error_code(error) in OBJECT_GONE | BUCKET_GONE:
                return ABSENT
            raise error
        return Found(Presence.OURS, bucket_arn(target, bucket, key))

    def delete(self, target: Target, subject: Subject) -> None:
        try:
            attributes = subject.attributes_as(ObjectAttributes)
            _delete_versions(target.aws.client("s3"), attributes.bucket, prefix=attributes.key)
        except ClientError as error:
            if error_code(error) not in BUCKET_GONE:
                raise
