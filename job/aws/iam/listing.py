"""The listing that finds the job's users, roles and policies whatever the ledger says (for `job
sweep`): everything under the job's IAM path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from job.aws.handler import Scope, tag_dict
from job.aws.iam.common import pages, unless_gone
from job.naming import IAM_PATH
from job.vocabulary import ResourceKind

# What the listing needs, beyond the kinds' own verbs.
LISTING_PERMISSIONS: Mapping[str, Scope] = {
    "iam:ListUsers": Scope.UNSCOPED,
    "iam:ListUserTags": Scope.JOB_USERS,
    "iam:ListRoles": Scope.UNSCOPED,
    "iam:ListRoleTags": Scope.JOB_ROLES,
    "iam:ListPolicies": Scope.UNSCOPED,
    "iam:ListPolicyTags": Scope.JOB_POLICIES,
}


@dataclass(frozen=True)
class Listed:
    """A user, role or customer-managed policy under the job's IAM path, as a listing found it."""

    kind: ResourceKind
    name: str
    arn: str
    created_at: datetime


def list_job_users(iam: Any) -> Iterator[Listed]:
    """Every user under the job's IAM path, page by page."""
    for user in pages(iam, "list_users", "Users", PathPrefix=IAM_PATH):
        yield Listed(ResourceKind.IAM_USER, user["UserName"], user["Arn"], user["CreateDate"])


def list_job_roles(iam: Any) -> Iterator[Listed]:
    """Every role under the job's IAM path, page by page. A leaked role is as bad as a leaked
    user: whoever its trust policy lets in gets its permissions."""
    for role in pages(iam, "list_roles", "Roles", PathPrefix=IAM_PATH):
        yield Listed(ResourceKind.IAM_ROLE, role["RoleName"], role["Arn"], role["CreateDate"])


def list_job_policies(iam: Any) -> Iterator[Listed]:
    """Every customer-managed policy under the job's IAM path, page by page."""
    for policy in pages(iam, "list_policies", "Policies", PathPrefix=IAM_PATH, Scope="Local"):
        yield Listed(
            ResourceKind.IAM_POLICY, policy["PolicyName"], policy["Arn"], policy["CreateDate"]
        )


def listed_tags(iam: Any, listed: Listed) -> dict[str, str] | None:
    """The tags of a listed user, role or policy; None when it is gone since the listing."""
    if listed.kind is ResourceKind.IAM_USER:
        answer = unless_gone(lambda: iam.list_user_tags(UserName=listed.name))
    elif listed.kind is ResourceKind.IAM_ROLE:
        answer = unless_gone(lambda: iam.list_role_tags(RoleName=listed.name))
    else:
        answer = unless_gone(lambda: iam.list_policy_tags(PolicyArn=listed.arn))
    return None if answer is None else tag_dict(answer["Tags"])
