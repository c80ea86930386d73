"""`job runner-policy`: the least-privilege IAM policy the job's own credentials need.

Built from the permissions each resource kind declares beside its AWS calls (job.aws.*), plus
those of the listings sweep makes (declared beside them too, in job.aws.iam and job.aws.s3), and
scoped to the job's own names wherever IAM allows a resource there. What probe users and roles do
in verify is theirs, not the runner's (assuming a role is the runner's: sts:AssumeRole, declared by
the role kind), and sts:GetCallerIdentity needs no permission at all.

Given the kinds a scenario uses, the policy holds only what those kinds need: a scenario without
roles gets no role permissions but the sweep's listing of them (iam:ListRoles, iam:ListRoleTags).
The sweep's listings are always there, so that a leaked role is found whatever the scenario.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from job.aws.handler import IAM_PATH
from job.aws.iam import LISTING_PERMISSIONS as IAM_LISTING_PERMISSIONS
from job.aws.kinds import HANDLERS
from job.aws.s3 import LISTING_PERMISSIONS as S3_LISTING_PERMISSIONS
from job.vocabulary import ResourceKind

# Actions whose resource is something not the job's, or that IAM does not let a policy scope:
# listings of a whole account, and detaching our policy from a group or role someone else owns
# (IAM's resource there is the group or role; only a Condition on iam:PolicyARN could narrow it,
# and the job's policy uses none, so that it can be tried against an emulator); taking our role
# out of an instance profile, whose resource is the profile, someone else's.
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
UNSCOPED = {
    "iam:ListUsers",
    "iam:ListRoles",
    "iam:ListPolicies",
    "iam:RemoveUserFromGroup",
    "iam:DetachGroupPolicy",
    "iam:DetachRolePolicy",
    "iam:DeleteVirtualMFADevice",
    "iam:RemoveRoleFromInstanceProfile",
    "s3:ListAllMyBuckets",
}
# Actions whose resource is one of the job's roles.
IAM_ROLE_ACTIONS = {
    "iam:CreateRole",
    "iam:TagRole",
    "iam:ListRoleTags",
    "iam:AttachRolePolicy",
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
S3_OBJECT_ACTIONS = {
    "s3:PutObject",
    "s3:GetObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:AbortMultipartUpload",
}


def required_actions(kinds: Collection[ResourceKind] | None = None) -> set[str]:
    """What the handlers of `kinds` (None: every kind) declare, and the sweep's listings, which
    every runner makes whatever its scenario."""
    actions = {*IAM_LISTING_PERMISSIONS, *S3_LISTING_PERMISSIONS}
    for kind, handler in HANDLERS.items():
        if kinds is not None and kind not in kinds:
            continue
        for verb_actions in handler.permissions.values():
            actions.update(verb_actions)
    return actions


def resource_for(action: str, prefix: str, partition: str = "aws") -> str:
    path = IAM_PATH.strip("/")
    if action in UNSCOPED:
        return "*"
    if action in IAM_POLICY_ACTIONS:
        return f"arn:{partition}:iam::*:policy/{path}/{prefix}-*"
    if action in IAM_ROLE_ACTIONS:
        return f"arn:{partition}:iam::*:role/{path}/{prefix}-*"
    if action.startswith("iam:"):
        # Every other IAM action the job makes acts on one of its users (AttachUserPolicy and
        # DetachUserPolicy too: their resource is the user).
        return f"arn:{partition}:iam::*:user/{path}/{prefix}-*"
    if action in S3_OBJECT_ACTIONS:
        return f"arn:{partition}:s3:::{prefix}-*/*"
    return f"arn:{partition}:s3:::{prefix}-*"


def runner_policy(
    prefix: str = "job",
    partition: str = "aws",
    without: frozenset[str] = frozenset(),
    kinds: Collection[ResourceKind] | None = None,
) -> dict[str, Any]:
    """One statement per resource, actions sorted: stable output to diff and review. `kinds`
    narrows it to what a scenario creates (job.scenario_file.scenario_kinds); None is every kind
    the job knows, what a janitor tearing down any run needs."""
    by_resource: dict[str, list[str]] = defaultdict(list)
    for action in sorted(required_actions(kinds) - without):
        by_resource[resource_for(action, prefix, partition)].append(action)
    statements = [
        {
            "Sid": _sid(resource),
            "Effect": "Allow",
            "Action": actions,
            "Resource": resource,
        }
        for resource, actions in sorted(by_resource.items())
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def _sid(resource: str) -> str:
    if resource == "*":
        return "Unscoped"
    if ":policy/" in resource:
        return "JobPolicies"
    if ":user/" in resource:
        return "JobUsers"
    if ":role/" in resource:
        return "JobRoles"
    return "JobObjects" if resource.endswith("/*") else "JobBuckets"
