"""The actions verify can check, declared: for each, the IAM actions a principal needs for its call
to succeed, and what its call does to an object. job.aws.probes makes the calls; scenario files,
the runner policy and verify's ordering read these declarations without any AWS client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Probe:
    # The action a scenario's expectation names (the registry's key).
    action: str
    # The IAM actions a principal's policies must allow for the call to succeed.
    needs: tuple[str, ...]
    # True when no IAM policy can deny the call: a scenario may only expect it allowed.
    always_allowed: bool = False
    # Whether the call is aimed at a bucket, and then whether at an object in it (its key); or
    # at a role (role:NAME of the run's, or an existing role's ARN).
    on_bucket: bool = True
    on_object: bool = False
    on_role: bool = False
    # Whether an allowed call leaves an object behind (at the key it is aimed at): the bucket's
    # teardown then deletes that key with the bucket's own objects.
    writes_object: bool = False
    # Whether the call reads the object at its key. Its denial means something only if the object
    # is there: S3 answers a missing key with 403 AccessDenied, not 404, to a caller without
    # s3:ListBucket, so a scenario may aim it only at a key it creates.
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html (Permissions)
    reads_object: bool = False
    # What a cell may set of the call's request context, by name, with the condition key each
    # sets: a policy's Condition on that key then decides the call as it would any other's.
    context: Mapping[str, str] = field(default_factory=dict)
    # Whether an allowed call changes the object it is aimed at (overwrites or deletes it): verify
    # runs such checks only after every check that reads that object, so that no verdict depends
    # on the order AWS happens to see the calls in.
    mutates_object: bool = False
    # Whether a role the call is aimed at that does not exist answers as a denial would: a
    # denial then means something only where the role is shown to exist (job.phases.verify).
    refused_when_role_missing: bool = False

    @property
    def changes(self) -> bool:
        """Whether an allowed call changes something: such a probe is aimed only at what the run
        created (the canary never writes to, or deletes from, anything it did not make)."""
        return self.writes_object or self.mutates_object

    @property
    def service(self) -> str:
        """The service the call is authorized by ("s3", "iam", "sts"): a principal's policy
        reaches each one separately."""
        return self.action.partition(":")[0].lower()


@dataclass(frozen=True)
class Aim:
    """What a probe is aimed at: a bucket (and a key in it), or a role's ARN."""

    bucket: str | None = None
    key: str | None = None
    role_arn: str | None = None

    @property
    def role_name(self) -> str:
        """The role's name: the last part of its ARN (after its path)."""
        return str(self.role_arn).rsplit("/", 1)[-1]


PROBES: dict[str, Probe] = {
    probe.action: probe
    for probe in (
        Probe("s3:GetObject", ("s3:GetObject",), on_object=True, reads_object=True),
        Probe(
            "s3:PutObject",
            ("s3:PutObject",),
            on_object=True,
            writes_object=True,
            mutates_object=True,
            # https://docs.aws.amazon.com/AmazonS3/latest/userguide/amazon-s3-policy-keys.html
            context={
                "server_side_encryption": "s3:x-amz-server-side-encryption",
                "tags": "s3:RequestObjectTag/<key>, s3:RequestObjectTagKeys",
            },
        ),
        Probe("s3:DeleteObject", ("s3:DeleteObject",), on_object=True, mutates_object=True),
        # Like GetObject, of a key the scenario creates: a missing key answers as a denial would.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectTagging.html
        Probe("s3:GetObjectTagging", ("s3:GetObjectTagging",), on_object=True, reads_object=True),
        # Replaces the object's tags (of one the scenario creates, for the same reason): it runs
        # after every check that reads the object.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectTagging.html
        Probe(
            "s3:PutObjectTagging",
            ("s3:PutObjectTagging",),
            on_object=True,
            reads_object=True,
            mutates_object=True,
        ),
        # A bucket with no policy answers NoSuchBucketPolicy once the caller may ask: allowed.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketPolicy.html
        Probe("s3:GetBucketPolicy", ("s3:GetBucketPolicy",)),
        # ListBuckets is authorized as s3:ListAllMyBuckets, on no bucket.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListBuckets.html
        Probe("s3:ListAllMyBuckets", ("s3:ListAllMyBuckets",), on_bucket=False),
        Probe("iam:ListRoles", ("iam:ListRoles",), on_bucket=False),
        # Authorized on the role's ARN. A role that does not exist answers NoSuchEntity once the
        # caller may ask (no answer about permissions).
        # https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRole.html
        Probe("iam:GetRole", ("iam:GetRole",), on_bucket=False, on_role=True),
        # The caller's policy must allow sts:AssumeRole on the role, and the role's trust policy
        # must allow the caller (a trust naming the caller's account delegates to the caller's
        # policy; one naming the caller itself suffices in the same account). The session it
        # gives is dropped unused.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_permissions-to-switch.html
        # STS does not tell a caller whether a role exists: AssumeRole of a missing role is
        # refused with AccessDenied, as a denial is ("Cannot assume role": the role must exist
        # and its trust allow the caller).
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_roles.html
        Probe(
            "sts:AssumeRole",
            ("sts:AssumeRole",),
            on_bucket=False,
            on_role=True,
            refused_when_role_missing=True,
        ),
        # ListObjectsV2 is authorized as s3:ListBucket, on the bucket.
        # https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
        Probe(
            "s3:ListBucket",
            ("s3:ListBucket",),
            context={"prefix": "s3:prefix", "delimiter": "s3:delimiter"},
        ),
        Probe("iam:ListUsers", ("iam:ListUsers",), on_bucket=False),
        # "No permissions are required to perform this operation. If an administrator attaches a
        # policy to your identity that explicitly denies access to the sts:GetCallerIdentity
        # action, you can still perform this operation."
        # https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
        Probe(
            "sts:GetCallerIdentity",
            (),
            always_allowed=True,
            on_bucket=False,
        ),
    )
}
