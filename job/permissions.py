"""`job runner-policy`: the least-privilege IAM policy the job's own credentials need.

Built from the permissions each resource kind declares beside its AWS calls (job.aws.*), plus
those of the listings sweep makes (declared beside them too, in job.aws.iam.listing and
job.aws.s3), and scoped to the job's own names wherever IAM allows a resource there. What probe
users and roles do in verify is theirs, not the runner's (assuming a role is the runner's:
sts:AssumeRole, declared by the role kind), and sts:GetCallerIdentity needs no permission at all.

Every IAM write it grants acts on the job's own users, groups, roles and policies: by their ARNs,
or, where IAM authorizes the call on something else (detaching the job's policy from whatever
holds it: a group, a role or a user, someone else's included), by a Condition on iam:PolicyARN
naming the job's policies. Only account-wide listings are granted on "*" unconditioned. What
someone else hung on one of the job's principals from outside (a membership of someone else's
group, an MFA device, an instance profile) is removed only with the separate janitor grant
(`janitor=True`, `--janitor`): its calls act on that someone else's group, device or profile,
which no ARN of the job's can name.
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html

Given the kinds a scenario uses, the policy holds only what those kinds need: a scenario without
roles gets no role permissions but the sweep's listing of them (iam:ListRoles, iam:ListRoleTags).
The sweep's listings are always there, so that a leaked role is found whatever the scenario.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from job.aws.handler import Scope
from job.aws.iam.common import JANITOR
from job.aws.iam.listing import LISTING_PERMISSIONS as IAM_LISTING_PERMISSIONS
from job.aws.kinds import HANDLERS
from job.aws.s3 import LISTING_PERMISSIONS as S3_LISTING_PERMISSIONS
from job.naming import IAM_PATH
from job.vocabulary import ResourceKind


def _statements(prefix: str, partition: str) -> dict[Scope, tuple[str, dict[str, Any] | None]]:
    """Each scope's resource and condition, in the order the policy lists their statements."""
    iam = f"arn:{partition}:iam::*"
    users = f"{iam}:user{IAM_PATH}{prefix}-*"
    policies = f"{iam}:policy{IAM_PATH}{prefix}-*"
    return {
        Scope.UNSCOPED: ("*", None),
        Scope.JOB_POLICY_ATTACHMENTS: ("*", {"ArnLike": {"iam:PolicyARN": policies}}),
        Scope.JOB_POLICIES: (policies, None),
        Scope.JOB_ROLES: (f"{iam}:role{IAM_PATH}{prefix}-*", None),
        Scope.JOB_USERS: (users, None),
        Scope.JOB_GROUPS: (f"{iam}:group{IAM_PATH}{prefix}-*", None),
        Scope.JOB_BUCKETS: (f"arn:{partition}:s3:::{prefix}-*", None),
        Scope.JOB_OBJECTS: (f"arn:{partition}:s3:::{prefix}-*/*", None),
        Scope.JANITOR_GROUPS: (f"{iam}:group/*", None),
        Scope.JANITOR_JOB_USERS: (users, None),
        Scope.JANITOR_MFA_DEVICES: (f"{iam}:mfa/*", None),
        Scope.JANITOR_INSTANCE_PROFILES: (f"{iam}:instance-profile/*", None),
    }


def _declared(kinds: Collection[ResourceKind] | None, janitor: bool) -> set[tuple[str, Scope]]:
    """(action, scope) for what the handlers of `kinds` (None: every kind) declare, the janitor's
    only with `janitor`, and for the sweep's listings, which every runner makes whatever its
    scenario."""
    declared = set(IAM_LISTING_PERMISSIONS.items()) | set(S3_LISTING_PERMISSIONS.items())
    for kind, handler in HANDLERS.items():
        if kinds is not None and kind not in kinds:
            continue
        for verb, actions in handler.permissions.items():
            if verb != JANITOR or janitor:
                declared.update(
                    (action, handler.scopes.get(action, handler.scope)) for action in actions
                )
    return declared


def required_actions(
    kinds: Collection[ResourceKind] | None = None, *, janitor: bool = False
) -> set[str]:
    """What the handlers of `kinds` (None: every kind) declare, and the sweep's listings, which
    every runner makes whatever its scenario; the janitor's actions too with `janitor`."""
    return {action for action, _ in _declared(kinds, janitor)}


def runner_policy(
    prefix: str = "job",
    partition: str = "aws",
    without: frozenset[str] = frozenset(),
    kinds: Collection[ResourceKind] | None = None,
    *,
    janitor: bool = False,
    existing_roles: Collection[str] = (),
) -> dict[str, Any]:
    """One statement per resource and condition, actions sorted: stable output to diff and
    review. `kinds` narrows it to what a scenario creates (job.scenario_file.scenario_kinds);
    None is every kind the job knows, what a janitor tearing down any run needs. `janitor` adds,
    after the same statements, the grant that removes what others hung on the job's principals.
    `existing_roles` (a scenario's roles.NAME.existing ARNs) are the runner's to assume in verify,
    and nothing else: the run never changes them."""
    by_statement: dict[Scope, set[str]] = defaultdict(set)
    for action, scope in _declared(kinds, janitor):
        if action not in without:
            by_statement[scope].add(action)
    statements = []
    for scope, (resource, condition) in _statements(prefix, partition).items():
        if scope not in by_statement:
            continue
        statement: dict[str, Any] = {
            "Sid": scope.value,
            "Effect": "Allow",
            "Action": sorted(by_statement[scope]),
            "Resource": resource,
        }
        if condition is not None:
            statement["Condition"] = condition
        statements.append(statement)
    if existing_roles:
        statements.append(
            {
                "Sid": "AssumeExistingRoles",
                "Effect": "Allow",
                "Action": ["sts:AssumeRole"],
                "Resource": sorted(set(existing_roles)),
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}
