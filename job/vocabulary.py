"""Words the layers share: the AWS layer, the scenario and the ledger each use them, and none of
them should have to import another for its vocabulary. The ledger stores them by value, as plain
strings, and `--output json` shows those values, so a value never changes without a migration."""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    """What a permission check expects, and what AWS answered."""

    ALLOW = "allow"
    DENY = "deny"
    ERROR = "error"


class ResourceKind(enum.StrEnum):
    """What sort of AWS resource a ledger row stands for; each has one handler (job.aws.kinds)."""

    S3_BUCKET = "s3_bucket"
    S3_OBJECT = "s3_object"
    IAM_USER = "iam_user"
    IAM_POLICY = "iam_policy"
    IAM_USER_POLICY_ATTACHMENT = "iam_user_policy_attachment"
    IAM_ACCESS_KEY = "iam_access_key"
    IAM_ROLE = "iam_role"
    IAM_ROLE_POLICY_ATTACHMENT = "iam_role_policy_attachment"
    # Put on a role only by verify --measure-revocation, and taken off again by it.
    IAM_ROLE_SESSION_REVOCATION = "iam_role_session_revocation"
    IAM_GROUP = "iam_group"
    IAM_GROUP_POLICY_ATTACHMENT = "iam_group_policy_attachment"
    # A user's membership of a group of the run.
    IAM_GROUP_MEMBERSHIP = "iam_group_membership"
