"""What every resource kind provides, and how a kind tells the job's resources from anyone else's.

A kind is one handler with four idempotent verbs: `create` (the one create call; raises
AlreadyExists when the name is taken), `configure` (the settings a resource needs once it exists:
provision makes them after create, or after adopting what an earlier attempt created),
`inspect` (is it there, and is it this run's?) and `delete` ("already gone" is success). Each
handler declares the IAM actions its verbs need, beside the code that calls them.

The verbs know nothing of where the caller keeps its records: they take a Subject, what the caller
knows of the resource, and return what they learned (Created, Found) for the caller to keep.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from botocore.exceptions import ClientError

from job.aws.session import Aws, is_denial
from job.kinds import A, Attributes, read_as
from job.naming import iam_arn
from job.vocabulary import ResourceKind

MANAGED_BY_KEY = "job:managed-by"
MANAGED_BY_VALUE = "job"
RUN_ID_KEY = "job:run-id"


@dataclass(frozen=True)
class Target:
    """Where a run's resources live and how to recognise them."""

    aws: Aws
    run_id: str
    account_id: str
    partition: str

    @property
    def region(self) -> str:
        return self.aws.region

    @property
    def propagation_timeout(self) -> timedelta:
        """How long to wait for AWS to show a change this run made (see job.config)."""
        return self.aws.propagation_timeout

    @property
    def deny_settle(self) -> timedelta | None:
        """JOB_DENY_SETTLE, when given (see job.phases.verify.deny_settle)."""
        return self.aws.deny_settle

    def tags(self) -> list[dict[str, str]]:
        return [
            {"Key": MANAGED_BY_KEY, "Value": MANAGED_BY_VALUE},
            {"Key": RUN_ID_KEY, "Value": self.run_id},
        ]

    def iam_arn(self, resource_type: str, name: str) -> str:
        return iam_arn(self.partition, self.account_id, resource_type, name)


@dataclass(frozen=True)
class Subject:
    """The resource a verb acts on, as the caller knows it."""

    # The deterministic AWS name, known before the resource exists.
    name: str
    # What AWS calls it (an ARN, an access key id): None until a create has answered.
    physical_id: str | None = None
    # What the kind needs beyond the name (job.kinds: a bucket and key, a user and policy ARN, a
    # document). None: nothing is known but the name (a resource sweep found).
    attributes: Attributes | None = None

    def attributes_as(self, kind: type[A]) -> A:
        return read_as(self.attributes, kind)


class Presence(enum.Enum):
    ABSENT = "absent"
    OURS = "ours"
    FOREIGN = "foreign"  # exists under our name, but is not this run's: never touched


@dataclass(frozen=True)
class Found:
    presence: Presence
    physical_id: str | None = None
    reason: str = ""


ABSENT = Found(Presence.ABSENT)


def judge_tags(
    target: Target,
    tags: dict[str, str],
    physical_id: str,
    *,
    untagged_is_ours: bool,
    what: str,
) -> Found:
    """Ours when tagged with this run's id. Untagged counts as ours only for kinds whose tags are
    set by a second call after the create (a bucket): a crash between the two leaves it untagged,
    and the write-ahead row that named it is our proof. IAM users and policies are tagged by the
    create call itself, so an untagged one was made by somebody else."""
    run_tag = tags.get(RUN_ID_KEY)
    if run_tag == target.run_id:
        return Found(Presence.OURS, physical_id)
    if run_tag is None and not tags and untagged_is_ours:
        return Found(Presence.OURS, physical_id)
    owner = f"run {run_tag}" if run_tag else "no job run (it lacks the job's tags)"
    return Found(Presence.FOREIGN, physical_id, f"{what} belongs to {owner}; left alone")


class AlreadyExists(Exception):
    """The create call found the name taken; the caller inspects it to adopt it or refuse."""


class NotCreated(Exception):
    """AWS refused the create call itself as unauthorised: nothing was made, so there is nothing
    to wait for or look up later. (A refusal of a call after the create, such as tagging a new
    bucket, is not this: the resource exists.)"""

    def __init__(self, error: ClientError) -> None:
        super().__init__(str(error))
        self.error = error


@contextmanager
def refused_means_not_created() -> Iterator[None]:
    """Around a kind's one create call: an authorization refusal becomes NotCreated."""
    try:
        yield
    except ClientError as error:
        if is_denial(error):
            raise NotCreated(error) from None
        raise


@dataclass
class Created:
    physical_id: str
    # Only an access key has one. It lives in memory for the length of verify and is never written.
    secret: str | None = field(default=None, repr=False)


class Scope(enum.StrEnum):
    """What an action the runner needs may act on, as IAM authorizes it: one statement of `job
    runner-policy` each (the value is its Sid), with the resource (and condition) job.permissions
    gives it."""

    # account-wide listings: IAM and S3 give them no narrower resource
    UNSCOPED = "Unscoped"
    # the job's policy detached from whatever holds it, narrowed by an iam:PolicyARN condition
    JOB_POLICY_ATTACHMENTS = "JobPolicyAttachments"
    JOB_POLICIES = "JobPolicies"
    JOB_ROLES = "JobRoles"
    JOB_USERS = "JobUsers"
    JOB_GROUPS = "JobGroups"
    JOB_BUCKETS = "JobBuckets"
    JOB_OBJECTS = "JobObjects"
    # the janitor's (job.aws.iam.common.JANITOR): someone else's group, MFA device or instance
    # profile, or the job's users (DeactivateMFADevice is authorized on the user)
    JANITOR_GROUPS = "JanitorGroups"
    JANITOR_JOB_USERS = "JanitorJobUsers"
    JANITOR_MFA_DEVICES = "JanitorMFADevices"
    JANITOR_INSTANCE_PROFILES = "JanitorInstanceProfiles"


class Handler(Protocol):
    kind: ClassVar[ResourceKind]
    # IAM actions each verb needs from the job's own credentials (for `job runner-policy`).
    # configure's are under "create": it is the second half of a create. A kind may declare what a
    # phase does with it beyond the verbs too (a role's "assume", for verify).
    permissions: ClassVar[dict[str, tuple[str, ...]]]
    # What those actions act on: the kind's own resource (`scope`), but for those `scopes` names
    # (job.aws.kinds refuses, at import, a scope for an action the kind does not declare).
    scope: ClassVar[Scope]
    scopes: ClassVar[Mapping[str, Scope]]

    def create(self, target: Target, subject: Subject) -> Created: ...

    def configure(self, target: Target, subject: Subject) -> None:
        """Make the resource's settings, once it exists: after its create, or on one an earlier
        attempt created and perhaps stopped half way through setting up. What needs the
        resource may already be being made meanwhile (provision's graph)."""

    def inspect(self, target: Target, subject: Subject) -> Found: ...

    def delete(self, target: Target, subject: Subject) -> None: ...


@dataclass(frozen=True)
class Tagged:
    """One of the job's resources as a listing found it, with its tags (for `job sweep`)."""

    name: str
    physical_id: str
    tags: Mapping[str, str]
    created_at: datetime


class Sweepable(Protocol):
    """A kind `job sweep` looks for (job.kinds: sweep_wave): how it finds the job's resources of
    that kind whatever any ledger says, under `prefix`, reading the tags only of those `skip`
    does not account for (so an account with thousands costs a tag read per stranger)."""

    def find_tagged(
        self, aws: Aws, prefix: str, partition: str, skip: Callable[[str], bool]
    ) -> Iterator[Tagged]: ...


class NothingToConfigure:
    """For the kinds whose one create call makes them whole."""

    scopes: ClassVar[Mapping[str, Scope]] = {}

    def configure(self, target: Target, subject: Subject) -> None:
        pass


def tag_dict(tags: list[dict[str, Any]]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag["Value"]) for tag in tags}
