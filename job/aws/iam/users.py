"""IAM users, and the access keys verify gives them."""

from __future__ import annotations

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
    JANITOR,
    creating,
    delete_entity,
    deleting,
    ignore_gone,
    ignoring_gone,
    is_runs_group,
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
from job.kinds import AccessKeyAttributes, PrincipalAttributes
from job.naming import IAM_PATH
from job.parallel import fan_out
from job.vocabulary import ResourceKind


class UserHandler(FoundUnderPath, NothingToConfigure):
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
    scope: ClassVar[Scope] = Scope.JOB_USERS
    scopes: ClassVar[Mapping[str, Scope]] = {
        "iam:RemoveUserFromGroup": Scope.JANITOR_GROUPS,
        "iam:DeactivateMFADevice": Scope.JANITOR_JOB_USERS,
        "iam:DeleteVirtualMFADevice": Scope.JANITOR_MFA_DEVICES,
    }

    listing = ("list_users", "Users", "UserName", {})

    def tags_of(self, iam: Any, entity: dict[str, Any]) -> list[dict[str, Any]]:
        return list(iam.list_user_tags(UserName=entity["UserName"])["Tags"])

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        attributes = subject.attributes_as(PrincipalAttributes)
        params: dict[str, Any] = {
            "UserName": subject.name,
            "Path": IAM_PATH,
            "Tags": target.tags() + principal_tags(attributes),
        }
        if boundary := attributes.permissions_boundary:
            params["PermissionsBoundary"] = boundary
        with creating(subject.name):
            user = iam.create_user(**params)["User"]
        return Created(user["Arn"])

    def inspect(self, target: Target, subject: Subject) -> Found:
        return inspect_user(target, subject.name)

    def delete(self, target: Target, subject: Subject) -> None:
        iam = target.aws.client("iam")
        name = subject.name
        usual = partial(
            remove_all,
            (
                partial(listed, iam, "list_access_keys", "AccessKeyMetadata", UserName=name),
                lambda key: partial(
                    iam.delete_access_key, UserName=name, AccessKeyId=key["AccessKeyId"]
                ),
            ),
            *policies_of(iam, "user", name),
            (
                # AWS refuses DeleteUser while the user is in a group. A group of this run's is
                # left by a membership a crash left unfinished (the group kinds' grant covers
                # it); any other group is someone else's.
                # https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteUser.html
                partial(listed, iam, "list_groups_for_user", "Groups", UserName=name),
                lambda group: (
                    partial(iam.remove_user_from_group, UserName=name, GroupName=group["GroupName"])
                    if is_runs_group(group, target.run_id)
                    else partial(
                        remove_foreign,
                        iam.remove_user_from_group,
                        f"user {name} is in group {group['GroupName']},"
                        " which the job did not put it in",
                        f"aws iam remove-user-from-group --user-name {name}"
                        f" --group-name {group['GroupName']}",
                        UserName=name,
                        GroupName=group["GroupName"],
                    )
                ),
            ),
            # Nothing to list: a login profile is deleted, or it was not there.
            (deleting(iam.delete_login_profile, UserName=name), None),
        )
        with ignoring_gone():
            delete_entity(
                target,
                f"user {name}",
                partial(iam.delete_user, UserName=name),
                usual,
                partial(self._remove_rare_blockers, iam, name),
            )

    @staticmethod
    def _remove_rare_blockers(iam: Any, name: str) -> None:
        # The job enables no MFA device: any is someone else's. As AWS's own steps for deleting
        # a user do, it is deactivated, and a virtual one deleted.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_users_remove.html
        for device in pages(iam, "list_mfa_devices", "MFADevices", UserName=name):
            serial = device["SerialNumber"]
            remove_foreign(
                iam.deactivate_mfa_device,
                f"user {name} has MFA device {serial}, which the job did not enable",
                f"aws iam deactivate-mfa-device --user-name {name} --serial-number {serial}",
                UserName=name,
                SerialNumber=serial,
            )
            if serial.startswith("arn:"):  # virtual devices are IAM resources of their own
                remove_foreign(
                    iam.delete_virtual_mfa_device,
                    f"virtual MFA device {serial}, taken off user {name}, is left",
                    f"aws iam delete-virtual-mfa-device --serial-number {serial}",
                    SerialNumber=serial,
                )
        for cert in pages(iam, "list_signing_certificates", "Certificates", UserName=name):
            ignore_gone(
                iam.delete_signing_certificate, UserName=name, CertificateId=cert["CertificateId"]
            )
        for ssh in pages(iam, "list_ssh_public_keys", "SSHPublicKeys", UserName=name):
            ignore_gone(
                iam.delete_ssh_public_key, UserName=name, SSHPublicKeyId=ssh["SSHPublicKeyId"]
            )
        # Not paginated in the API.
        answer = iam.list_service_specific_credentials(UserName=name)
        for credential in answer.get("ServiceSpecificCredentials", []):
            ignore_gone(
                iam.delete_service_specific_credential,
                UserName=name,
                ServiceSpecificCredentialId=credential["ServiceSpecificCredentialId"],
            )


def inspect_user(target: Target, name: str) -> Found:
    iam = target.aws.client("iam")
    tags = unless_gone(lambda: tag_dict(list(pages(iam, "list_user_tags", "Tags", UserName=name))))
    if tags is None:
        return ABSENT
    return judge_tags(
        target, tags, target.iam_arn("user", name), untagged_is_ours=False, what=f"IAM user {name}"
    )


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
    scope: ClassVar[Scope] = Scope.JOB_USERS

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        user = subject.attributes_as(AccessKeyAttributes).user_name
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
            for key in pages(
                iam,
                "list_access_keys",
                "AccessKeyMetadata",
                UserName=subject.attributes_as(AccessKeyAttributes).user_name,
            )
        ]

    def inspect(self, target: Target, subject: Subject) -> Found:
        owner = inspect_user(target, subject.attributes_as(AccessKeyAttributes).user_name)
        if owner.presence is not Presence.OURS:
            return owner if owner.presence is Presence.FOREIGN else ABSENT
        keys = unless_gone(lambda: self._key_ids(target, subject))
        return Found(Presence.OURS, keys[0]) if keys else ABSENT

    def delete(self, target: Target, subject: Subject) -> None:
        """The key whose id the create heard is deleted while the user's keys are listed, at once;
        then whatever else the listing found (a key whose CreateAccessKey answer was lost)."""
        iam = target.aws.client("iam")
        user = subject.attributes_as(AccessKeyAttributes).user_name
        known = subject.physical_id

        def delete_known() -> None:
            if known is not None:
                ignore_gone(iam.delete_access_key, UserName=user, AccessKeyId=known)

        with ignoring_gone():
            _, listed = fan_out([delete_known, lambda: self._key_ids(target, subject)])
            for key_id in listed:
                if key_id != known:
                    ignore_gone(iam.delete_access_key, UserName=user, AccessKeyId=key_id)
