"""Customer-managed policies, and their attachments to users, groups and roles."""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    GONE,
    creating,
    delete_entity,
    ignore_gone,
    ignoring_gone,
    listed,
    pages,
    remove_all,
    unless_gone,
)
from job.aws.iam.groups import inspect_group
from job.aws.iam.listing import FoundUnderPath
from job.aws.iam.roles import inspect_role
from job.aws.iam.users import inspect_user
from job.aws.retry import until_consistent
from job.kinds import (
    GroupPolicyAttachmentAttributes,
    PolicyAttributes,
    RolePolicyAttachmentAttributes,
    UserPolicyAttachmentAttributes,
)
from job.naming import IAM_PATH
from job.vocabulary import ResourceKind


def _entities(iam: Any, arn: str) -> list[tuple[str, dict[str, str]]]:
    """Who a policy is attached to: ("user", {"UserName": ...}), and groups and roles alike."""
    entities: list[tuple[str, dict[str, str]]] = []
    for page in iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=arn):
        for kind, key, name in (
            ("user", "PolicyUsers", "UserName"),
            ("group", "PolicyGroups", "GroupName"),
            ("role", "PolicyRoles", "RoleName"),
        ):
            entities += [(kind, {name: entity[name]}) for entity in page.get(key, [])]
    return entities


class PolicyHandler(FoundUnderPath, NothingToConfigure):
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_POLICY
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:CreatePolicy", "iam:TagPolicy"),
        "inspect": ("iam:ListPolicyTags",),
        "delete": (
            "iam:ListEntitiesForPolicy",
            "iam:DetachUserPolicy",
            "iam:DetachGroupPolicy",
            "iam:DetachRolePolicy",
            "iam:ListPolicyVersions",
            "iam:DeletePolicyVersion",
            "iam:DeletePolicy",
        ),
    }
    scope: ClassVar[Scope] = Scope.JOB_POLICIES
    # Detached from whatever holds the job's policy: the holder may be anyone's.
    scopes: ClassVar[Mapping[str, Scope]] = {
        "iam:DetachUserPolicy": Scope.JOB_POLICY_ATTACHMENTS,
        "iam:DetachGroupPolicy": Scope.JOB_POLICY_ATTACHMENTS,
        "iam:DetachRolePolicy": Scope.JOB_POLICY_ATTACHMENTS,
    }

    listing = ("list_policies", "Policies", "PolicyName", {"Scope": "Local"})

    def tags_of(self, iam: Any, entity: dict[str, Any]) -> list[dict[str, Any]]:
        return list(iam.list_policy_tags(PolicyArn=entity["Arn"])["Tags"])

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        attributes = subject.attributes_as(PolicyAttributes)
        with creating(subject.name):
            policy = iam.create_policy(
                PolicyName=subject.name,
                Path=IAM_PATH,
                PolicyDocument=json.dumps(attributes.document),
                Description=attributes.description,
                Tags=target.tags(),
            )["Policy"]
        return Created(policy["Arn"])

    def inspect(self, target: Target, subject: Subject) -> Found:
        iam = target.aws.client("iam")
        arn = target.iam_arn("policy", subject.name)
        tags = unless_gone(
            lambda: tag_dict(list(pages(iam, "list_policy_tags", "Tags", PolicyArn=arn)))
        )
        if tags is None:
            return ABSENT
        return judge_tags(
            target, tags, arn, untagged_is_ours=False, what=f"IAM policy {subject.name}"
        )

    def delete(self, target: Target, subject: Subject) -> None:
        iam = target.aws.client("iam")
        arn = subject.physical_id or target.iam_arn("policy", subject.name)
        # AWS refuses to delete a policy that is attached anywhere, or has old versions.
        detach_and_prune = partial(
            remove_all,
            (
                partial(_entities, iam, arn),
                lambda entity: partial(
                    getattr(iam, f"detach_{entity[0]}_policy"), **entity[1], PolicyArn=arn
                ),
            ),
            (
                # The default version goes with the policy itself.
                lambda: [
                    version
                    for version in listed(iam, "list_policy_versions", "Versions", PolicyArn=arn)
                    if not version["IsDefaultVersion"]
                ],
                lambda version: partial(
                    iam.delete_policy_version, PolicyArn=arn, VersionId=version["VersionId"]
                ),
            ),
        )
        with ignoring_gone():
            delete_entity(
                target,
                f"policy {subject.name}",
                partial(iam.delete_policy, PolicyArn=arn),
                detach_and_prune,
            )


class _Attachment(NothingToConfigure):
    """A managed policy attached to a user, a group or a role (the owner). It cannot carry tags;
    it is ours when its owner is. The three kinds differ only in the IAM calls' names."""

    # "user", "group" or "role": IAM's AttachUserPolicy, AttachGroupPolicy, AttachRolePolicy...
    owner: ClassVar[str]
    attributes: ClassVar[
        type[
            UserPolicyAttachmentAttributes
            | GroupPolicyAttachmentAttributes
            | RolePolicyAttachmentAttributes
        ]
    ]

    def _names(self, subject: Subject) -> tuple[dict[str, str], str]:
        attributes = subject.attributes_as(self.attributes)
        owner_name = getattr(attributes, f"{self.owner}_name")
        return {f"{self.owner.title()}Name": owner_name}, attributes.policy_arn

    def _inspect_owner(self, target: Target, name: str) -> Found:
        inspect = {"user": inspect_user, "group": inspect_group, "role": inspect_role}[self.owner]
        return inspect(target, name)

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        owner, policy_arn = self._names(subject)
        attach = getattr(iam, f"attach_{self.owner}_policy")
        # Attaching twice is not an error in IAM, so a retried create is harmless.
        with refused_means_not_created():
            until_consistent(
                lambda: attach(**owner, PolicyArn=policy_arn),
                retry_on={GONE},
                # An owner or policy created a moment ago may not be visible to the next call yet.
                timeout=target.propagation_timeout,
                what=f"{self.owner} {next(iter(owner.values()))} and policy {policy_arn}",
            )
        return Created(f"{next(iter(owner.values()))}|{policy_arn}")

    def inspect(self, target: Target, subject: Subject) -> Found:
        owner, policy_arn = self._names(subject)
        owner_name = next(iter(owner.values()))
        found = self._inspect_owner(target, owner_name)
        if found.presence is not Presence.OURS:
            # No owner, no attachment; a foreign owner's attachments are not ours to judge.
            return found if found.presence is Presence.FOREIGN else ABSENT
        iam = target.aws.client("iam")
        listing = f"list_attached_{self.owner}_policies"
        attached = unless_gone(
            lambda: {p["PolicyArn"] for p in pages(iam, listing, "AttachedPolicies", **owner)}
        )
        if attached is None:  # the owner went since it was inspected
            return ABSENT
        return (
            Found(Presence.OURS, f"{owner_name}|{policy_arn}") if policy_arn in attached else ABSENT
        )

    def delete(self, target: Target, subject: Subject) -> None:
        owner, policy_arn = self._names(subject)
        iam = target.aws.client("iam")
        ignore_gone(getattr(iam, f"detach_{self.owner}_policy"), **owner, PolicyArn=policy_arn)


class AttachmentHandler(_Attachment):
    """A managed policy attached to a user."""

    owner = "user"
    attributes = UserPolicyAttachmentAttributes
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_USER_POLICY_ATTACHMENT
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:AttachUserPolicy",),
        "inspect": ("iam:ListUserTags", "iam:ListAttachedUserPolicies"),
        "delete": ("iam:DetachUserPolicy",),
    }
    scope: ClassVar[Scope] = Scope.JOB_USERS


class RoleAttachmentHandler(_Attachment):
    """A managed policy attached to a role."""

    owner = "role"
    attributes = RolePolicyAttachmentAttributes
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_ROLE_POLICY_ATTACHMENT
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:AttachRolePolicy",),
        "inspect": ("iam:ListRoleTags", "iam:ListAttachedRolePolicies"),
        "delete": ("iam:DetachRolePolicy",),
    }
    scope: ClassVar[Scope] = Scope.JOB_ROLES


class GroupAttachmentHandler(_Attachment):
    """A managed policy attached to a group: the group's own policy of the run, or an existing
    one (attached, never changed, detached at teardown)."""

    owner = "group"
    attributes = GroupPolicyAttachmentAttributes
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_GROUP_POLICY_ATTACHMENT
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:AttachGroupPolicy",),
        "inspect": ("iam:GetGroup", "iam:ListAttachedGroupPolicies"),
        "delete": ("iam:DetachGroupPolicy",),
    }
    # IAM authorizes these on the group.
    scope: ClassVar[Scope] = Scope.JOB_GROUPS
