"""`job runner-policy`: the least-privilege IAM policy the job's own credentials need.

Built from the permissions each resource kind declares beside its AWS calls (job.aws.*), plus
those of the listings sweep makes (declared beside them too, in job.aws.iam.listing and
job.aws.s3), and scoped to the job's own names wherever IAM allows a resource there. What probe
users and roles do in verify is theirs, not the runner's (assuming a role is the runner's:
sts:AssumeRole, declared by the role kind), and sts:GetCallerIdentity needs no permission at all.

Every IAM write it grants acts on the job's own users, roles and policies: by their ARNs, or, where
IAM authorizes the call on something else (detaching the job's policy from whatever holds it: a
group, a role or a user, someone else's included), by a Condition on iam:PolicyARN naming the
job's policies. Only account-wide listings are granted on "*" unconditioned. What someone else
hung on one of the job's principals from outside (a group membership, an MFA device, an instance
profile) is removed only with the separate janitor grant (`janitor=True`, `--janitor`): its calls
act on that someone else's group, device or profile, which no ARN of the job's can name.
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html

Given the kinds a scenario uses, the policy holds only what those kinds need: a scenario without
roles gets no role permissions but the sweep's listing of them (iam:ListRoles, iam:ListRoleTags).
The sweep's listings are always there, so that a leaked role is found whatever the scenario.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from job.aws.iam.common import JANITOR
from job.aws.iam.listing import LISTING_PERMISSIONS as IAM_LISTING_PERMISSIONS
from job.aws.kinds import HANDLERS
from job.aws.s3 import LISTING_PERMISSIONS as S3_LISTING_PERMISSIONS
from job.naming import IAM_PATH
from job.vocabulary import ResourceKind

# Listings of a whole account: IAM and S3 give them no narrower resource.
UNSCOPED = {"iam:ListUsers", "iam:ListRoles", "iam:ListPolicies", "s3:ListAllMyBuckets"}
# Actions whose resource is one of the job's roles.
IAM_ROLE_ACTIONS = {
    "iam:CreateRole",
    "iam:TagRole",
    "iam:ListRoleTags",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListRolePolicies",
    "iam:DeleteRolePolicy",
    "iam:PutRolePolicy",
    "iam:GetRolePolicy",
    "iam:ListInstanceProfilesForRole",
    "iam:DeleteRole",
    "sts:AssumeRole",
}
IAM_POLICY_ACTIONS = {
    "iam:CreatePolicy",
    "iam:TagPolicy",
    "iam:ListPolicyTags",
    "iam:ListEntitiesForPolicy",
    "iam:ListPolicyVersions",
    "iam:DeletePolicyVersion",
    "iam:DeletePolicy",
}
# What the policy kind's delete does to the job's policy wherever it is attached. IAM authorizes
# each on the entity it is detached from (any group, role or user), and lets iam:PolicyARN narrow
# it to the job's own policies.
DETACH_ACTIONS = {"iam:DetachGroupPolicy", "iam:DetachRolePolicy", "iam:DetachUserPolicy"}
S3_OBJECT_ACTIONS = {
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:AbortMultipartUpload",
}
# Where IAM authorizes each janitor action (job.aws.iam.common.JANITOR): the group, the MFA
# device and the instance profile are someone else's, named as they like, so only their resource
# type can be given; DeactivateMFADevice is authorized on the user, one of the job's.
JANITOR_STATEMENTS = {
    "iam:RemoveUserFromGroup": "JanitorGroups",
    "iam:DeactivateMFADevice": "JanitorJobUsers",
    "iam:DeleteVirtualMFADevice": "JanitorMFADevices",
    "iam:RemoveRoleFromInstanceProfile": "JanitorInstanceProfiles",
}


def _statements(prefix: str, partition: str) -> dict[str, tuple[str, dict[str, Any] | None]]:
    """Each statement's Sid, resource and condition, in the order the policy lists them."""
    iam = f"arn:{partition}:iam::*"
    users = f"{iam}:user{IAM_PATH}{prefix}-*"
    policies = f"{iam}:policy{IAM_PATH}{prefix}-*"
    return {
        "Unscoped": ("*", None),
        "JobPolicyAttachments": ("*", {"ArnLike": {"iam:PolicyARN": policies}}),
        "JobPolicies": (policies, None),
        "JobRoles": (f"{iam}:role{IAM_PATH}{prefix}-*", None),
        "JobUsers": (users, None),
        "JobBuckets": (f"arn:{partition}:s3:::{prefix}-*", None),
        "JobObjects": (f"arn:{partition}:s3:::{prefix}-*/*", None),
        "JanitorGroups": (f"{iam}:group/*", None),
        "JanitorJobUsers": (users, None),
        "JanitorMFADevices": (f"{iam}:mfa/*", None),
        "JanitorInstanceProfiles": (f"{iam}:instance-profile/*", None),
    }


def _declared(
    kinds: Collection[ResourceKind] | None, janitor: bool
) -> set[tuple[ResourceKind | None, str, str]]:
    """(kind, verb, action) for what the handlers of `kinds` (None: every kind) declare, the
    janitor's only with `janitor`, and (None, "list", action) for the sweep's listings, which
    every runner makes whatever its scenario."""
    declared: set[tuple[ResourceKind | None, str, str]] = {
        (None, "list", action) for action in (*IAM_LISTING_PERMISSIONS, *S3_LISTING_PERMISSIONS)
    }
    for kind, handler in HANDLERS.items():
        if kinds is not None and kind not in kinds:
            continue
        for verb, actions in handler.permissions.items():
            if verb != JANITOR or janitor:
                declared.update((kind, verb, action) for action in actions)
    return declared


def required_actions(
    kinds: Collection[ResourceKind] | None = None, *, janitor: bool = False
) -> set[str]:
    """What the handlers of `kinds` (None: every kind) declare, and the sweep's listings, which
    every runner makes whatever its scenario; the janitor's actions too with `janitor`."""
    return {action for _, _, action in _declared(kinds, janitor)}


def _statement_for(kind: ResourceKind | None, verb: str, action: str) -> str:
    """The Sid of the statement that grants `action` for `kind`'s `verb`."""
    if verb == JANITOR:
        return JANITOR_STATEMENTS[action]
    if kind is ResourceKind.IAM_POLICY and action in DETACH_ACTIONS:
        return "JobPolicyAttachments"
    if action in UNSCOPED:
        return "Unscoped"
    if action in IAM_POLICY_ACTIONS:
        return "JobPolicies"
    if action in IAM_ROLE_ACTIONS:
        return "JobRoles"
    if action.startswith("iam:"):
        # Every other IAM action the job makes acts on one of its users (AttachUserPolicy and
        # DetachUserPolicy too: their resource is the user).
        return "JobUsers"
    return "JobObjects" if action in S3_OBJECT_ACTIONS else "JobBuckets"


def runner_policy(
    prefix: str = "job",
    partition: str = "aws",
    without: frozenset[str] = frozenset(),
    kinds: Collection[ResourceKind] | None = None,
    *,
    janitor: bool = False,
) -> dict[str, Any]:
    """One statement per resource and condition, actions sorted: stable output to diff and
    review. `kinds` narrows it to what a scenario creates (job.scenario_file.scenario_kinds);
    None is every kind the job knows, what a janitor tearing down any run needs. `janitor` adds,
    after the same statements, the grant that removes what others hung on the job's principals."""
    by_statement: dict[str, set[str]] = defaultdict(set)
    for kind, verb, action in _declared(kinds, janitor):
        if action not in without:
            by_statement[_statement_for(kind, verb, action)].add(action)
    statements = []
    for sid, (resource, condition) in _statements(prefix, partition).items():
        if sid not in by_statement:
            continue
        statement: dict[str, Any] = {
            "Sid": sid,
            "Effect": "Allow",
            "Action": sorted(by_statement[sid]),
            "Resource": resource,
        }
        if condition is not None:
            statement["Condition"] = condition
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}
