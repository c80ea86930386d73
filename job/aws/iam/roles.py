"""IAM roles, the sessions verify assumes, and the revocation of those sessions."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from job.aws.handler import (
    ABSENT,
    Created,
    Found,
    NothingToConfigure,
    Presence,
    Scope,
    Subject,
    Target,
    judge_tags,
    refused_means_not_created,
    tag_dict,
)
from job.aws.iam.common import (
    JANITOR,
    creating,
    delete_entity,
    ignore_gone,
    ignoring_gone,
    listed,
    pages,
    policies_of,
    principal_tags,
    remove_all,
    remove_foreign,
    unless_gone,
)
from job.aws.iam.listing import FoundUnderPath
from job.aws.retry import until_consistent
from job.kinds import PrincipalAttributes, SessionRevocationAttributes
from job.naming import IAM_PATH
from job.vocabulary import ResourceKind


def trust_policy(target: Target) -> dict[str, Any]:
    """Who may assume the run's roles: principals of the job's own account whose identity
    policies allow sts:AssumeRole on the role (the job's runner policy does). Trusting the
    account's root delegates to those identity policies; it does not let the root user alone in.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{target.partition}:iam::{target.account_id}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


class RoleHandler(FoundUnderPath, NothingToConfigure):
    """A role the job's own principal assumes in verify, to probe with the role's permissions."""

    kind: ClassVar[ResourceKind] = ResourceKind.IAM_ROLE
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:CreateRole", "iam:TagRole"),
        "inspect": ("iam:ListRoleTags",),
        "delete": (
            "iam:ListAttachedRolePolicies",
            "iam:DetachRolePolicy",
            "iam:ListRolePolicies",
            "iam:DeleteRolePolicy",
            "iam:ListInstanceProfilesForRole",
            "iam:DeleteRole",
        ),
        JANITOR: ("iam:RemoveRoleFromInstanceProfile",),
        # Not a verb of the handler: what verify does with a role (job.phases.verify).
        "assume": ("sts:AssumeRole",),
    }
    scope: ClassVar[Scope] = Scope.JOB_ROLES
    scopes: ClassVar[Mapping[str, Scope]] = {
        "iam:RemoveRoleFromInstanceProfile": Scope.JANITOR_INSTANCE_PROFILES,
    }

    # A leaked role is as bad as a leaked user: whoever its trust lets in gets its rights.
    listing = ("list_roles", "Roles", "RoleName", {})

    def tags_of(self, iam: Any, entity: dict[str, Any]) -> list[dict[str, Any]]:
        return list(iam.list_role_tags(RoleName=entity["RoleName"])["Tags"])

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        params: dict[str, Any] = {
            "RoleName": subject.name,
            "Path": IAM_PATH,
            "AssumeRolePolicyDocument": json.dumps(trust_policy(target)),
            # AWS's default too; said here because assume_role clamps its sessions to it.
            "MaxSessionDuration": ROLE_MAX_SESSION_SECONDS,
            "Description": f"job run {target.run_id}",
            # Tagged by the create call itself, like a user: an untagged role is not ours.
            "Tags": target.tags() + principal_tags(subject.attributes_as(PrincipalAttributes)),
        }
        if boundary := subject.attributes_as(PrincipalAttributes).permissions_boundary:
            params["PermissionsBoundary"] = boundary
        with creating(subject.name):
            role = iam.create_role(**params)["Role"]
        return Created(role["Arn"])

    def inspect(self, target: Target, subject: Subject) -> Found:
        return inspect_role(target, subject.name)

    def delete(self, target: Target, subject: Subject) -> None:
        # DeleteRole answers DeleteConflict while any of these remain ("you must delete the items
        # attached to the role manually, or the deletion fails"); moto deletes the role anyway.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_manage_delete.html
        # https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteRole.html
        iam = target.aws.client("iam")
        name = subject.name
        detach_all = partial(
            remove_all,
            *policies_of(iam, "role", name),
            (
                partial(
                    listed,
                    iam,
                    "list_instance_profiles_for_role",
                    "InstanceProfiles",
                    RoleName=name,
                ),
                # The job makes no instance profile: any is somebody else's, and only the role
                # is taken out of it.
                lambda profile: partial(
                    remove_foreign,
                    iam.remove_role_from_instance_profile,
                    f"role {name} is in instance profile {profile['InstanceProfileName']},"
                    " which the job did not put it in",
                    f"aws iam remove-role-from-instance-profile --role-name {name}"
                    f" --instance-profile-name {profile['InstanceProfileName']}",
                    RoleName=name,
                    InstanceProfileName=profile["InstanceProfileName"],
                ),
            ),
        )
        with ignoring_gone():
            delete_entity(
                target, f"role {name}", partial(iam.delete_role, RoleName=name), detach_all
            )


def inspect_role(target: Target, name: str) -> Found:
    iam = target.aws.client("iam")
    tags = unless_gone(lambda: tag_dict(list(pages(iam, "list_role_tags", "Tags", RoleName=name))))
    if tags is None:
        return ABSENT
    return judge_tags(
        target, tags, target.iam_arn("role", name), untagged_is_ours=False, what=f"IAM role {name}"
    )


# What AWS answers, for a while after CreateRole (or a change to its trust policy), to an
# AssumeRole of the new role: the role or its trust is not known everywhere yet. IAM "uses a
# distributed computing model called eventual consistency. Any change that you make in IAM ...
# takes time to become visible from all possible endpoints."
# https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
ROLE_NOT_YET_ASSUMABLE = frozenset({"AccessDenied", "InvalidClientTokenId"})
# How long a role session verify asks for may last: at least the shortest STS grants (900 s, and
# assume_role's default when its caller names no duration), at most the role's MaxSessionDuration,
# which the job sets at CreateRole to one hour: the longest a session may be asked for when the
# job's own credentials are themselves a role session (role chaining caps it at one hour, whatever
# the role's setting), and short, since a session cannot be revoked one by one, only outlived or
# denied (REVOKE_SESSIONS_POLICY). Between the two, the caller's need: verify's propagation window.
# https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html ("DurationSeconds",
# role chaining included) and .../IAM/latest/APIReference/API_CreateRole.html ("MaxSessionDuration")
ROLE_SESSION_SECONDS = 900
ROLE_MAX_SESSION_SECONDS = 3600


@dataclass(frozen=True)
class RoleSession:
    """An assumed role's temporary credentials: kept in memory for verify, never written."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: datetime | None = None


def session_seconds(wanted: float) -> int:
    """A role session's DurationSeconds for a need of `wanted` seconds, within what STS grants the
    job's roles: ROLE_SESSION_SECONDS to ROLE_MAX_SESSION_SECONDS (asking outside it fails)."""
    return min(max(math.ceil(wanted), ROLE_SESSION_SECONDS), ROLE_MAX_SESSION_SECONDS)


def assume_role(
    target: Target,
    role_name: str,
    session_name: str,
    duration_seconds: float = ROLE_SESSION_SECONDS,
    session_policy: Mapping[str, Any] | None = None,
    existing_arn: str | None = None,
) -> RoleSession:
    """The job's own principal assumes one of the run's roles (RoleHandler.permissions "assume")
    for a session of `duration_seconds`, clamped to what STS grants (session_seconds), retrying
    while AWS does not know the new role or its trust yet, up to the propagation timeout; then the
    last refusal is raised. A session that expires before the caller is done is not renewed here:
    the caller assumes the role again when AWS answers ExpiredToken. A `session_policy` cuts the
    session's permissions down to what both it and the role's policies allow.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session

    An `existing_arn` (a role the run did not make, scenario roles.NAME.existing) is asked once:
    nothing about it is new, so a refusal is its trust or the runner's policy, not AWS catching
    up."""
    sts = target.aws.client("sts")
    arn = existing_arn or target.iam_arn("role", role_name)
    params: dict[str, Any] = {
        "RoleArn": arn,
        "RoleSessionName": session_name,
        "DurationSeconds": session_seconds(duration_seconds),
    }
    if session_policy is not None:
        params["Policy"] = json.dumps(session_policy, separators=(",", ":"))
    answer = until_consistent(
        lambda: sts.assume_role(**params),
        retry_on=ROLE_NOT_YET_ASSUMABLE if existing_arn is None else frozenset(),
        timeout=target.propagation_timeout,
        what=f"role {role_name} to be assumable",
    )
    credentials = answer["Credentials"]
    return RoleSession(
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
        credentials.get("Expiration"),
    )


# The inline policy AWS's "Revoke active sessions" puts on a role: deny everything to sessions
# issued before a moment. Sessions assumed later are not affected, so the role keeps working for the
# next verify. https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_revoke-sessions.html
REVOKE_SESSIONS_POLICY = "AWSRevokeOlderSessions"


def revoke_sessions_document(issued_before: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Action": "*",
                "Resource": "*",
                "Condition": {"DateLessThan": {"aws:TokenIssueTime": issued_before}},
            }
        ],
    }


class SessionRevocationHandler(NothingToConfigure):
    """The revoke-older-sessions inline policy verify --measure-revocation puts on one of the run's
    roles, to time how long AWS takes to refuse a session it has already issued. Ours when its role
    is; it goes with the role too (RoleHandler.delete removes inline policies)."""

    kind: ClassVar[ResourceKind] = ResourceKind.IAM_ROLE_SESSION_REVOCATION
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:PutRolePolicy",),
        "inspect": ("iam:ListRoleTags", "iam:GetRolePolicy"),
        "delete": ("iam:DeleteRolePolicy",),
    }
    scope: ClassVar[Scope] = Scope.JOB_ROLES

    def create(self, target: Target, subject: Subject) -> Created:
        attributes = subject.attributes_as(SessionRevocationAttributes)
        role = attributes.role_name
        document = revoke_sessions_document(attributes.issued_before)
        with refused_means_not_created():
            target.aws.client("iam").put_role_policy(
                RoleName=role, PolicyName=subject.name, PolicyDocument=json.dumps(document)
            )
        return Created(f"{role}|{subject.name}")

    def inspect(self, target: Target, subject: Subject) -> Found:
        role = subject.attributes_as(SessionRevocationAttributes).role_name
        found = inspect_role(target, role)
        if found.presence is not Presence.OURS:
            return found if found.presence is Presence.FOREIGN else ABSENT
        iam = target.aws.client("iam")
        if unless_gone(lambda: iam.get_role_policy(RoleName=role, PolicyName=subject.name)) is None:
            return ABSENT
        return Found(Presence.OURS, f"{role}|{subject.name}")

    def delete(self, target: Target, subject: Subject) -> None:
        ignore_gone(
            target.aws.client("iam").delete_role_policy,
            RoleName=subject.attributes_as(SessionRevocationAttributes).role_name,
            PolicyName=subject.name,
        )
