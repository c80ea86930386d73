"""IAM groups of the run, and their users' memberships (their policies' attachments are with the
other attachments, in job.aws.iam.policies).

IAM cannot tag a group: TagUser, TagRole and TagPolicy exist, no TagGroup, and the list of what
IAM tags leaves groups out (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html). So a
group cannot carry the job's tags, and what says it is the job's is what it can carry: it was
created under the job's path (/job/, where nobody else's entities are expected) with a name the
job gives this run's resources (<prefix>-<run id>-<name>; a run id is ten random characters).
A group under that name elsewhere, or one for another run, is somebody else's, and left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import ClassVar

from job.aws.handler import (
    ABSENT,
    MANAGED_BY_KEY,
    MANAGED_BY_VALUE,
    RUN_ID_KEY,
    Created,
    Found,
    NothingToConfigure,
    Presence,
    Scope,
    Subject,
    Tagged,
    Target,
    refused_means_not_created,
)
from job.aws.iam.common import (
    GONE,
    creating,
    delete_entity,
    ignoring_gone,
    is_runs_group,
    listed,
    pages,
    policies_of,
    remove_all,
    unless_gone,
)
from job.aws.iam.users import inspect_user
from job.aws.retry import until_consistent
from job.aws.session import Aws
from job.kinds import GroupMembershipAttributes
from job.naming import IAM_PATH
from job.scenario import job_iam_name
from job.vocabulary import ResourceKind


def inspect_group(target: Target, name: str) -> Found:
    iam = target.aws.client("iam")
    # GetGroup pages its members; the group itself is in every page, the first is enough.
    answer = unless_gone(lambda: iam.get_group(GroupName=name, MaxItems=1))
    if answer is None:
        return ABSENT
    group = answer["Group"]
    if is_runs_group(group, target.run_id):
        return Found(Presence.OURS, group["Arn"])
    return Found(
        Presence.FOREIGN,
        group["Arn"],
        f"IAM group {name} is not under {IAM_PATH} or not named for run {target.run_id}"
        " (a group carries no tags: its path and name are what say it is the job's); left alone",
    )


class GroupHandler(NothingToConfigure):
    kind: ClassVar[ResourceKind] = ResourceKind.IAM_GROUP
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:CreateGroup",),
        "inspect": ("iam:GetGroup",),
        "delete": (
            "iam:GetGroup",
            "iam:RemoveUserFromGroup",
            "iam:ListAttachedGroupPolicies",
            "iam:DetachGroupPolicy",
            "iam:ListGroupPolicies",
            "iam:DeleteGroupPolicy",
            "iam:DeleteGroup",
        ),
    }
    scope: ClassVar[Scope] = Scope.JOB_GROUPS

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        # No Tags: CreateGroup takes none (see the module's docstring).
        with creating(subject.name):
            group = iam.create_group(GroupName=subject.name, Path=IAM_PATH)["Group"]
        return Created(group["Arn"])

    def inspect(self, target: Target, subject: Subject) -> Found:
        return inspect_group(target, subject.name)

    def delete(self, target: Target, subject: Subject) -> None:
        """IAM refuses DeleteGroup (DeleteConflict) while the group has members or policies:
        "you must ... remove all users from the group, delete inline policies, and detach
        managed policies". In a teardown the run's memberships and attachments are gone first,
        so it is asked first and cleared only when refused; a sweep's group is cleared then.
        https://docs.aws.amazon.com/IAM/latest/APIReference/API_DeleteGroup.html"""
        iam = target.aws.client("iam")
        name = subject.name
        clear = partial(
            remove_all,
            (
                partial(listed, iam, "get_group", "Users", GroupName=name),
                # Every member of a group of the job's was put there by the job (or joined
                # someone's user to it): the group is going, and it with it.
                lambda user: partial(
                    iam.remove_user_from_group, GroupName=name, UserName=user["UserName"]
                ),
            ),
            *policies_of(iam, "group", name),
        )
        with ignoring_gone():
            delete_entity(target, f"group {name}", partial(iam.delete_group, GroupName=name), clear)

    def find_tagged(
        self, aws: Aws, prefix: str, partition: str, skip: Callable[[str], bool]
    ) -> Iterator[Tagged]:
        """The job's groups under its path and prefix, named as the job names a run's: as
        tagged with what their path and name say (the job's, and the run id in the name), since
        they can carry no tags (see the module's docstring)."""
        iam = aws.client("iam")
        pattern = job_iam_name(prefix=prefix)
        for group in pages(iam, "list_groups", "Groups", PathPrefix=IAM_PATH):
            name = group["GroupName"]
            match = pattern.fullmatch(name)
            if group["Path"] != IAM_PATH or match is None or skip(name):
                continue
            tags = {MANAGED_BY_KEY: MANAGED_BY_VALUE, RUN_ID_KEY: match["run_id"]}
            yield Tagged(name, group["Arn"], tags, group["CreateDate"])


class MembershipHandler(NothingToConfigure):
    """A user of the run in a group of the run. It carries nothing of its own: it is ours when
    both are."""

    kind: ClassVar[ResourceKind] = ResourceKind.IAM_GROUP_MEMBERSHIP
    permissions: ClassVar[dict[str, tuple[str, ...]]] = {
        "create": ("iam:AddUserToGroup",),
        "inspect": ("iam:GetGroup", "iam:ListUserTags", "iam:ListGroupsForUser"),
        "delete": ("iam:RemoveUserFromGroup",),
    }
    # IAM authorizes AddUserToGroup and RemoveUserFromGroup on the group; the user's listings on
    # the user.
    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
    scope: ClassVar[Scope] = Scope.JOB_GROUPS
    scopes: ClassVar[Mapping[str, Scope]] = {
        "iam:ListUserTags": Scope.JOB_USERS,
        "iam:ListGroupsForUser": Scope.JOB_USERS,
    }

    @staticmethod
    def _names(subject: Subject) -> tuple[str, str]:
        attributes = subject.attributes_as(GroupMembershipAttributes)
        return attributes.user_name, attributes.group_name

    def create(self, target: Target, subject: Subject) -> Created:
        iam = target.aws.client("iam")
        user, group = self._names(subject)
        # Adding a member twice is not an error in IAM, so a retried create is harmless.
        with refused_means_not_created():
            until_consistent(
                lambda: iam.add_user_to_group(GroupName=group, UserName=user),
                retry_on={GONE},
                # A user or group created a moment ago may not be visible to the next call yet.
                timeout=target.propagation_timeout,
                what=f"user {user} and group {group}",
            )
        return Created(f"{user}|{group}")

    def inspect(self, target: Target, subject: Subject) -> Found:
        user, group = self._names(subject)
        for found in (inspect_group(target, group), inspect_user(target, user)):
            if found.presence is not Presence.OURS:
                # No user or group, no membership; a foreign one's are not ours to judge.
                return found if found.presence is Presence.FOREIGN else ABSENT
        iam = target.aws.client("iam")
        groups = unless_gone(
            lambda: {
                g["GroupName"] for g in pages(iam, "list_groups_for_user", "Groups", UserName=user)
            }
        )
        if groups is None or group not in groups:
            return ABSENT
        return Found(Presence.OURS, f"{user}|{group}")

    def delete(self, target: Target, subject: Subject) -> None:
        user, group = self._names(subject)
        iam = target.aws.client("iam")
        with ignoring_gone():
            iam.remove_user_from_group(GroupName=group, UserName=user)
