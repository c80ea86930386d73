"""IAM users and roles, managed policies, their attachments, and access keys; and the listing that
finds the job's users, roles and policies whatever the ledger says (for `job sweep`).

Deleting a user is the subtle part: AWS refuses DeleteUser (DeleteConflict) while anything hangs
off the user. The job asks first and clears only when refused (`_delete_clearing`): in a teardown
the ledger's own rows (keys, attachments) are gone before their user, so DeleteUser usually just
works, and the listings that find blockers cost round trips only when there are some. Refused, the
usual blockers (keys, attached and inline policies, login profile, groups) are removed; refused
again, the rare ones (MFA devices, signing certificates, SSH keys, service-specific credentials).
A role is the same: AWS refuses DeleteRole while managed policies are attached to it, inline
policies are in it, or an instance profile holds it; and a policy while it is attached anywhere or
has versions besides its default.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from job.aws.handler import (
    ABSENT,
    AlreadyExists,
    Created,
    Found,
    NothingToConfigure,
    Presence,
    Subject,
    Target,
    judge_tags,
    refused_means_not_created,
    tag_dict,
)
from job.aws.retry import delete_clearing, until_consistent
from job.aws.session import ForeignBlocker, error_code, is_denial
from job.naming import IAM_PATH
from job.parallel import fan_out
from job.vocabulary import ResourceKind

log = logging.getLogger(__name__)
GONE = "NoSuchEntity"
# What IAM answers a delete of an entity that something still hangs off.
# https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteUser.html
CONFLICT = "DeleteConflict"
# The key under which a kind declares, beside its verbs, what its delete takes off one of the job's
# principals that someone else hung there from outside: a membership of a group, an MFA device,
# an instance profile. Those calls act on what is not the job's (IAM authorizes RemoveUserFromGroup
# on the group, DeleteVirtualMFADevice on the device, RemoveRoleFromInstanceProfile on the profile),
# so `job runner-policy` leaves them out and `job runner-policy --janitor` adds them
# (job.permissions). Without them teardown stops at such a blocker and says what to remove.
# https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
JANITOR = "janitor"
JANITOR_FIX = "or grant the job what `job runner-policy --janitor` prints"
# What the listing at the end of this module needs, beyond the kinds' own verbs.
LISTING_PERMISSIONS = (
    "iam:ListUsers",
    "iam:ListUserTags",
    "iam:ListRoles",
    "iam:ListRoleTags",
    "iam:ListPolicies",
    "iam:ListPolicyTags",
)


def _pages(client: Any, operation: str, key: str, **params: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(key, [])


def _listed(client: Any, operation: str, key: str, **params: Any) -> list[Any]:
    return list(_pages(client, operation, key, **params))


Removal = Callable[[Any], Callable[[], object]]


def _remove_all(*listings: tuple[Callable[[], list[Any]], Removal | None]) -> None:
    """Take off everything that hangs off an IAM entity, which AWS would refuse to delete with
    anything on it: every listing at once, then every removal at once (one already gone is
    fine). A listing's removal makes, for one item it listed, the call that takes it off."""
    found = fan_out([listing for listing, _ in listings])
    fan_out(
        [
            partial(_ignore_gone, remove(item))
            for (_, remove), items in zip(listings, found, strict=True)
            if remove is not None
            for item in items
        ]
    )


def _policies_of(iam: Any, owner: str, name: str) -> list[tuple[Callable[[], list[Any]], Removal]]:
    """A user's or role's (`owner`) managed and inline policies, for `_remove_all`: IAM names
    the calls alike for both (ListAttachedUserPolicies, DetachRolePolicy...)."""
    entity = {f"{owner.title()}Name": name}
    return [
        (
            partial(_listed, iam, f"list_attached_{owner}_policies", "AttachedPolicies", **entity),
            lambda policy: partial(
                getattr(iam, f"detach_{owner}_policy"), **entity, PolicyArn=policy["PolicyArn"]
            ),
        ),
        (
            partial(_listed, iam, f"list_{owner}_policies", "PolicyNames", **entity),
            lambda policy: partial(
                getattr(iam, f"delete_{owner}_policy"), **entity, PolicyName=policy
            ),
        ),
    ]


def _deleting(call: Any, **params: Any) -> Callable[[], list[Any]]:
    """A deletion with nothing to list first, made with the listings; it lists nothing."""

    def delete() -> list[Any]:
        _ignore_gone(call, **params)
        return []

    return delete


def _delete_clearing(
    target: Target, what: str, delete: Callable[[], object], *clearings: Callable[[], None]
) -> None:
    """An IAM entity's delete, clearing what blocks it only when refused (see delete_clearing;
    moto, which deletes regardless, is made to refuse in the tests: tests.faults.StrictAws)."""
    delete_clearing(
        delete, *clearings, refused=CONFLICT, what=what, settle=target.propagation_timeout
    )


def _ignore_gone(call: Any, **params: Any) -> None:
    try:
        call(**params)
    except ClientError as error:
        if error_code(error) != GONE:
            raise


def _remove_foreign(call: Any, blocker: str, by_hand: str, **params: Any) -> None:
    """Take off one of the job's principals something someone else hung on it (JANITOR): AWS
    refuses (AccessDenied) a runner without the janitor grant, and the refusal becomes one that
    names the blocker and the two ways to remove it."""
    try:
        _ignore_gone(call, **params)
    except ClientError as error:
        if not is_denial(error):
            raise
        raise ForeignBlocker(
            error, blocker, f"remove it by hand ({by_hand}), {JANITOR_FIX}"
        ) from None


class UserHandler(NothingToConfigure):
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_USER
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:CreateUser", "iam:TagUser"),
        "inspect": ("iam:ListUserTags",),
        "delete": (
            "iam:ListAccessKeys",
            "iam:DeleteAccessKey",
            "iam:ListAttachedUserPolicies",
            "iam:DetachUserPolicy",
            "iam:ListUserPolicies",
            "iam:DeleteUserPolicy",
            "iam:DeleteLoginProfile",
            "iam:ListGroupsForUser",
            "iam:ListMFADevices",
            "iam:ListSigningCertificates",
            "iam:DeleteSigningCertificate",
            "iam:ListSSHPublicKeys",
            "iam:DeleteSSHPublicKey",
            "iam:ListServiceSpecificCredentials",
            "iam:DeleteServiceSpecificCredential",
            "iam:DeleteUser",
        ),
        JANITOR: (
            "iam:RemoveUserFromGroup",
            "iam:DeactivateMFADevice",
            "iam:DeleteVirtualMFADevice",
        ),
    }

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        params: dict[str, Any] = {"UserName": subject.name, "Path": IAM_PATH, "Tags": target.tags()}
        if subject.attributes.get("permissions_boundary"):
            params["PermissionsBoundary"] = subject.attributes["permissions_boundary"]
        try:
            with refused_means_not_created():
                user = iam.create_user(**params)["User"]
        except ClientError as error:
            if error_code(error) == "EntityAlreadyExists":
                raise AlreadyExists(subject.name) from None
            raise
        return Created(user["Arn"])

    def inspect(self, target: Target, subject: Subject) -> Found:
        return inspect_user(target, subject.name)

    def delete(self, target: Target, subject: Subject) -> None:
        iam = target.aws.client("iam")
        name = subject.name
        usual = partial(
            _remove_all,
            (
                partial(_listed, iam, "list_access_keys", "AccessKeyMetadata", UserName=name),
                lambda key: partial(
                    iam.delete_access_key, UserName=name, AccessKeyId=key["AccessKeyId"]
                ),
            ),
            *_policies_of(iam, "user", name),
            (
                # The job puts its users in no group: any group is someone else's.
                partial(_listed, iam, "list_groups_for_user", "Groups", UserName=name),
                lambda group: partial(
                    _remove_foreign,
                    iam.remove_user_from_group,
                    f"user {name} is in group {group['GroupName']},"
                    " which the job did not put it in",
                    f"aws iam remove-user-from-group --user-name {name}"
                    f" --group-name {group['GroupName']}",
                    UserName=name,
                    GroupName=group["GroupName"],
                ),
            ),
            # Nothing to list: a login profile is deleted, or it was not there.
            (_deleting(iam.delete_login_profile, UserName=name), None),
        )
        try:
            _delete_clearing(
                target,
                f"user {name}",
                partial(iam.delete_user, UserName=name),
                usual,
                partial(self._remove_rare_blockers, iam, name),
            )
        except ClientError as error:
            if error_code(error) != GONE:
                raise

    @staticmethod
    def _remove_rare_blockers(iam: Any, name: str) -> None:
        # The job enables no MFA device: any is someone else's. As AWS's own steps for deleting
        # a user do, it is deactivated, and a virtual one deleted.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html
        for device in _pages(iam, "list_mfa_devices", "MFADevices", UserName=name):
            serial = device["SerialNumber"]
            _remove_foreign(
                iam.deactivate_mfa_device,
                f"user {name} has MFA device {serial}, which the job did not enable",
                f"aws iam deactivate-mfa-device --user-name {name} --serial-number {serial}",
                UserName=name,
                SerialNumber=serial,
            )
            if serial.startswith("arn:"):  # virtual devices are IAM resources of their own
                _remove_foreign(
                    iam.delete_virtual_mfa_device,
                    f"virtual MFA device {serial}, taken off user {name}, is left",
                    f"aws iam delete-virtual-mfa-device --serial-number {serial}",
                    SerialNumber=serial,
                )
        for cert in _pages(iam, "list_signing_certificates", "Certificates", UserName=name):
            _ignore_gone(
                iam.delete_signing_certificate, UserName=name, CertificateId=cert["CertificateId"]
            )
        for ssh in _pages(iam, "list_ssh_public_keys", "SSHPublicKeys", UserName=name):
            _ignore_gone(
                iam.delete_ssh_public_key, UserName=name, SSHPublicKeyId=ssh["SSHPublicKeyId"]
            )
        # Not paginated in the API.
        answer = iam.list_service_specific_credentials(UserName=name)
        for credential in answer.get("ServiceSpecificCredentials", []):
            _ignore_gone(
                iam.delete_service_specific_credential,
                UserName=name,
                ServiceSpecificCredentialId=credential["ServiceSpecificCredentialId"],
            )


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


def inspect_user(target: Target, name: str) -> Found:
    iam = target.aws.client("iam")
    try:
        tags = tag_dict(list(_pages(iam, "list_user_tags", "Tags", UserName=name)))
    except ClientError as error:
        if error_code(error) == GONE:
            return ABSENT
        raise
    return judge_tags(
        target, tags, target.iam_arn("user", name), untagged_is_ours=False, what=f"IAM user {name}"
    )


class PolicyHandler(NothingToConfigure):
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

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        try:
            with refused_means_not_created():
                policy = iam.create_policy(
                    PolicyName=subject.name,
                    Path=IAM_PATH,
                    PolicyDocument=json.dumps(subject.attributes["document"]),
                    Description=str(subject.attributes.get("description", "")),
                    Tags=target.tags(),
                )["Policy"]
        except ClientError as error:
            if error_code(error) == "EntityAlreadyExists":
                raise AlreadyExists(subject.name) from None
            raise
        return Created(policy["Arn"])

    def inspect(self, target: Target, subject: Subject) -> Found:
        iam = target.aws.client("iam")
        arn = target.iam_arn("policy", subject.name)
        try:
            tags = tag_dict(list(_pages(iam, "list_policy_tags", "Tags", PolicyArn=arn)))
        except ClientError as error:
            if error_code(error) == GONE:
                return ABSENT
            raise
        return judge_tags(
            target, tags, arn, untagged_is_ours=False, what=f"IAM policy {subject.name}"
        )

    def delete(self, target: Target, subject: Subject) -> None:
        iam = target.aws.client("iam")
        arn = subject.physical_id or target.iam_arn("policy", subject.name)
        # AWS refuses to delete a policy that is attached anywhere, or has old versions.
        detach_and_prune = partial(
            _remove_all,
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
                    for version in _listed(iam, "list_policy_versions", "Versions", PolicyArn=arn)
                    if not version["IsDefaultVersion"]
                ],
                lambda version: partial(
                    iam.delete_policy_version, PolicyArn=arn, VersionId=version["VersionId"]
                ),
            ),
        )
        try:
            _delete_clearing(
                target,
                f"policy {subject.name}",
                partial(iam.delete_policy, PolicyArn=arn),
                detach_and_prune,
            )
        except ClientError as error:
            if error_code(error) != GONE:
                raise


class _Attachment(NothingToConfigure):
    """A managed policy attached to a user or a role (the owner). It cannot carry tags; it is
    ours when its owner is. The two kinds differ only in the IAM calls' names."""

    owner: ClassVar[str]  # "user" or "role": IAM's AttachUserPolicy, AttachRolePolicy...

    def _names(self, subject: Subject) -> tuple[dict[str, str], str]:
        owner_name = subject.attributes[f"{self.owner}_name"]
        return {f"{self.owner.title()}Name": owner_name}, subject.attributes["policy_arn"]

    def _inspect_owner(self, target: Target, name: str) -> Found:
        return (inspect_user if self.owner == "user" else inspect_role)(target, name)

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
        try:
            attached = {p["PolicyArn"] for p in _pages(iam, listing, "AttachedPolicies", **owner)}
        except ClientError as error:
            if error_code(error) == GONE:  # the owner went since it was inspected
                return ABSENT
            raise
        return (
            Found(Presence.OURS, f"{owner_name}|{policy_arn}") if policy_arn in attached else ABSENT
        )

    def delete(self, target: Target, subject: Subject) -> None:
        owner, policy_arn = self._names(subject)
        iam = target.aws.client("iam")
        _ignore_gone(getattr(iam, f"detach_{self.owner}_policy"), **owner, PolicyArn=policy_arn)


class AttachmentHandler(_Attachment):
    """A managed policy attached to a user."""

    owner = "user"
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_USER_POLICY_ATTACHMENT
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:AttachUserPolicy",),
        "inspect": ("iam:ListUserTags", "iam:ListAttachedUserPolicies"),
        "delete": ("iam:DetachUserPolicy",),
    }


class AccessKeyHandler(NothingToConfigure):
    """A probe user's access key. One stands for every key of its (the run's own) user: the id
    is only known once CreateAccessKey has answered, and an answer lost on the way (the call
    retried) leaves a key whose id the job never saw. Only verify gives the run's users keys, one
    at a time under the run's hold, so every key on them is the job's to delete."""

    kind: ClassVar[ResourceKind] = ResourceKind.IAM_ACCESS_KEY
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:CreateAccessKey",),
        "inspect": ("iam:ListUserTags", "iam:ListAccessKeys"),
        "delete": ("iam:ListAccessKeys", "iam:DeleteAccessKey"),
    }

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        user = subject.attributes["user_name"]
        with refused_means_not_created():
            key = until_consistent(
                lambda: iam.create_access_key(UserName=user)["AccessKey"],
                retry_on={GONE},
                # A user created a moment ago may not be visible to the next call yet.
                timeout=target.propagation_timeout,
                what=f"user {user}",
            )
        return Created(key["AccessKeyId"], secret=key["SecretAccessKey"])

    def _key_ids(self, target: Target, subject: Subject) -> list[str]:
        iam = target.aws.client("iam")
        return [
            key["AccessKeyId"]
            for key in _pages(
                iam,
                "list_access_keys",
                "AccessKeyMetadata",
                UserName=subject.attributes["user_name"],
            )
        ]

    def inspect(self, target: Target, subject: Subject) -> Found:
        owner = inspect_user(target, subject.attributes["user_name"])
        if owner.presence is not Presence.OURS:
            return owner if owner.presence is Presence.FOREIGN else ABSENT
        try:
            keys = self._key_ids(target, subject)
        except ClientError as error:
            if error_code(error) == GONE:
                return ABSENT
            raise
        return Found(Presence.OURS, keys[0]) if keys else ABSENT

    def delete(self, target: Target, subject: Subject) -> None:
        """The key whose id the create heard is deleted while the user's keys are listed, at once;
        then whatever else the listing found (a key whose CreateAccessKey answer was lost)."""
        iam = target.aws.client("iam")
        user = subject.attributes["user_name"]
        known = subject.physical_id

        def delete_known() -> None:
            if known is not None:
                _ignore_gone(iam.delete_access_key, UserName=user, AccessKeyId=known)

        try:
            _, listed = fan_out([delete_known, lambda: self._key_ids(target, subject)])
            for key_id in listed:
                if key_id != known:
                    _ignore_gone(iam.delete_access_key, UserName=user, AccessKeyId=key_id)
        except ClientError as error:
            if error_code(error) != GONE:
                raise


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


class RoleHandler(NothingToConfigure):
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
            "Tags": target.tags(),
        }
        if subject.attributes.get("permissions_boundary"):
            params["PermissionsBoundary"] = subject.attributes["permissions_boundary"]
        try:
            with refused_means_not_created():
                role = iam.create_role(**params)["Role"]
        except ClientError as error:
            if error_code(error) == "EntityAlreadyExists":
                raise AlreadyExists(subject.name) from None
            raise
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
            _remove_all,
            *_policies_of(iam, "role", name),
            (
                partial(
                    _listed,
                    iam,
                    "list_instance_profiles_for_role",
                    "InstanceProfiles",
                    RoleName=name,
                ),
                # The job makes no instance profile: any is somebody else's, and only the role
                # is taken out of it.
                lambda profile: partial(
                    _remove_foreign,
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
        try:
            _delete_clearing(
                target, f"role {name}", partial(iam.delete_role, RoleName=name), detach_all
            )
        except ClientError as error:
            if error_code(error) != GONE:
                raise


def inspect_role(target: Target, name: str) -> Found:
    iam = target.aws.client("iam")
    try:
        tags = tag_dict(list(_pages(iam, "list_role_tags", "Tags", RoleName=name)))
    except ClientError as error:
        if error_code(error) == GONE:
            return ABSENT
        raise
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
) -> RoleSession:
    """The job's own principal assumes one of the run's roles (RoleHandler.permissions "assume")
    for a session of `duration_seconds`, clamped to what STS grants (session_seconds), retrying
    while AWS does not know the new role or its trust yet, up to the propagation timeout; then the
    last refusal is raised. A session that expires before the caller is done is not renewed here:
    the caller assumes the role again when AWS answers ExpiredToken."""
    sts = target.aws.client("sts")
    arn = target.iam_arn("role", role_name)
    seconds = session_seconds(duration_seconds)
    answer = until_consistent(
        lambda: sts.assume_role(RoleArn=arn, RoleSessionName=session_name, DurationSeconds=seconds),
        retry_on=ROLE_NOT_YET_ASSUMABLE,
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

    def create(self, target: Target, subject: Subject) -> Created:
        role = subject.attributes["role_name"]
        document = revoke_sessions_document(subject.attributes["issued_before"])
        with refused_means_not_created():
            target.aws.client("iam").put_role_policy(
                RoleName=role, PolicyName=subject.name, PolicyDocument=json.dumps(document)
            )
        return Created(f"{role}|{subject.name}")

    def inspect(self, target: Target, subject: Subject) -> Found:
        role = subject.attributes["role_name"]
        found = inspect_role(target, role)
        if found.presence is not Presence.OURS:
            return found if found.presence is Presence.FOREIGN else ABSENT
        try:
            target.aws.client("iam").get_role_policy(RoleName=role, PolicyName=subject.name)
        except ClientError as error:
            if error_code(error) == GONE:
                return ABSENT
            raise
        return Found(Presence.OURS, f"{role}|{subject.name}")

    def delete(self, target: Target, subject: Subject) -> None:
        _ignore_gone(
            target.aws.client("iam").delete_role_policy,
            RoleName=subject.attributes["role_name"],
            PolicyName=subject.name,
        )


class RoleAttachmentHandler(_Attachment):
    """A managed policy attached to a role."""

    owner = "role"
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_ROLE_POLICY_ATTACHMENT
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:AttachRolePolicy",),
        "inspect": ("iam:ListRoleTags", "iam:ListAttachedRolePolicies"),
        "delete": ("iam:DetachRolePolicy",),
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
    for user in _pages(iam, "list_users", "Users", PathPrefix=IAM_PATH):
        yield Listed(ResourceKind.IAM_USER, user["UserName"], user["Arn"], user["CreateDate"])


def list_job_roles(iam: Any) -> Iterator[Listed]:
    """Every role under the job's IAM path, page by page. A leaked role is as bad as a leaked
    user: whoever its trust policy lets in gets its permissions."""
    for role in _pages(iam, "list_roles", "Roles", PathPrefix=IAM_PATH):
        yield Listed(ResourceKind.IAM_ROLE, role["RoleName"], role["Arn"], role["CreateDate"])


def list_job_policies(iam: Any) -> Iterator[Listed]:
    """Every customer-managed policy under the job's IAM path, page by page."""
    for policy in _pages(iam, "list_policies", "Policies", PathPrefix=IAM_PATH, Scope="Local"):
        yield Listed(
            ResourceKind.IAM_POLICY, policy["PolicyName"], policy["Arn"], policy["CreateDate"]
        )


def listed_tags(iam: Any, listed: Listed) -> dict[str, str] | None:
    """The tags of a listed user, role or policy; None when it is gone since the listing."""
    try:
        if listed.kind is ResourceKind.IAM_USER:
            answer = iam.list_user_tags(UserName=listed.name)
        elif listed.kind is ResourceKind.IAM_ROLE:
            answer = iam.list_role_tags(RoleName=listed.name)
        else:
            answer = iam.list_policy_tags(PolicyArn=listed.arn)
    except ClientError as error:
        if error_code(error) == GONE:
            return None
        raise
    return tag_dict(answer["Tags"])
