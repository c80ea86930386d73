"""What the IAM kinds share: pages, "already exists" and "no such entity", and deletes.

Deleting a user is the subtle part: AWS refuses DeleteUser (DeleteConflict) while anything hangs
off the user. The job asks first and clears only when refused (`delete_entity`): in a teardown
the ledger's own rows (keys, attachments) are gone before their user, so DeleteUser usually just
works, and the listings that find blockers cost round trips only when there are some. Refused, the
usual blockers (keys, attached and inline policies, login profile, groups) are removed; refused
again, the rare ones (MFA devices, signing certificates, SSH keys, service-specific credentials).
A role is the same: AWS refuses DeleteRole while managed policies are attached to it, inline
policies are in it, or an instance profile holds it; and a policy while it is attached anywhere or
has versions besides its default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from job.aws.handler import AlreadyExists, Target, refused_means_not_created
from job.aws.retry import delete_clearing
from job.aws.session import ForeignBlocker, error_code, is_denial
from job.kinds import PrincipalAttributes
from job.naming import IAM_PATH
from job.parallel import fan_out
from job.scenario import job_iam_name

T = TypeVar("T")
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


def pages(client: Any, operation: str, key: str, **params: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(key, [])


def listed(client: Any, operation: str, key: str, **params: Any) -> list[Any]:
    return list(pages(client, operation, key, **params))


Removal = Callable[[Any], Callable[[], object]]


def remove_all(*listings: tuple[Callable[[], list[Any]], Removal | None]) -> None:
    """Take off everything that hangs off an IAM entity, which AWS would refuse to delete with
    anything on it: every listing at once, then every removal at once (one already gone is
    fine). A listing's removal makes, for one item it listed, the call that takes it off."""
    found = fan_out([listing for listing, _ in listings])
    fan_out(
        [
            partial(ignore_gone, remove(item))
            for (_, remove), items in zip(listings, found, strict=True)
            if remove is not None
            for item in items
        ]
    )


def policies_of(iam: Any, owner: str, name: str) -> list[tuple[Callable[[], list[Any]], Removal]]:
    """A user's or role's (`owner`) managed and inline policies, for `remove_all`: IAM names
    the calls alike for both (ListAttachedUserPolicies, DetachRolePolicy...)."""
    entity = {f"{owner.title()}Name": name}
    return [
        (
            partial(listed, iam, f"list_attached_{owner}_policies", "AttachedPolicies", **entity),
            lambda policy: partial(
                getattr(iam, f"detach_{owner}_policy"), **entity, PolicyArn=policy["PolicyArn"]
            ),
        ),
        (
            partial(listed, iam, f"list_{owner}_policies", "PolicyNames", **entity),
            lambda policy: partial(
                getattr(iam, f"delete_{owner}_policy"), **entity, PolicyName=policy
            ),
        ),
    ]


def deleting(call: Any, **params: Any) -> Callable[[], list[Any]]:
    """A deletion with nothing to list first, made with the listings; it lists nothing."""

    def delete() -> list[Any]:
        ignore_gone(call, **params)
        return []

    return delete


def delete_entity(
    target: Target, what: str, delete: Callable[[], object], *clearings: Callable[[], None]
) -> None:
    """An IAM entity's delete, clearing what blocks it only when refused (see delete_clearing;
    moto, which deletes regardless, is made to refuse in the tests: tests.faults.StrictAws)."""
    delete_clearing(
        delete, *clearings, refused=CONFLICT, what=what, settle=target.propagation_timeout
    )


@contextmanager
def creating(name: str) -> Iterator[None]:
    """Around a create call: AWS's refusal means nothing was made (NotCreated), and IAM's
    EntityAlreadyExists is AlreadyExists, which provision answers by adopting what is ours."""
    try:
        with refused_means_not_created():
            yield
    except ClientError as error:
        if error_code(error) == "EntityAlreadyExists":
            raise AlreadyExists(name) from None
        raise


def unless_gone(call: Callable[[], T]) -> T | None:
    """`call()`, or None when IAM answers that what it acts on does not exist (NoSuchEntity)."""
    try:
        return call()
    except ClientError as error:
        if error_code(error) == GONE:
            return None
        raise


@contextmanager
def ignoring_gone() -> Iterator[None]:
    """Around a delete: what it acts on may be gone already (NoSuchEntity), as it wanted."""
    try:
        yield
    except ClientError as error:
        if error_code(error) != GONE:
            raise


def ignore_gone(call: Any, **params: Any) -> None:
    with ignoring_gone():
        call(**params)


def remove_foreign(call: Any, blocker: str, by_hand: str, **params: Any) -> None:
    """Take off one of the job's principals something someone else hung on it (JANITOR): AWS
    refuses (AccessDenied) a runner without the janitor grant, and the refusal becomes one that
    names the blocker and the two ways to remove it."""
    try:
        ignore_gone(call, **params)
    except ClientError as error:
        if not is_denial(error):
            raise
        raise ForeignBlocker(
            error, blocker, f"remove it by hand ({by_hand}), {JANITOR_FIX}"
        ) from None


def principal_tags(attributes: PrincipalAttributes) -> list[dict[str, str]]:
    """The scenario's tags of a user or role, in the form IAM's create calls take."""
    return [{"Key": key, "Value": value} for key, value in sorted((attributes.tags or {}).items())]


def is_runs_group(group: Mapping[str, Any], run_id: str) -> bool:
    """A group as IAM lists or gets it (Path, GroupName): one the job made for run `run_id`. IAM
    cannot tag a group, so its path and its name, which the job gives it, stand in for the tags
    (job.aws.iam.groups)."""
    return group["Path"] == IAM_PATH and bool(
        job_iam_name(run_id=run_id).fullmatch(group["GroupName"])
    )
