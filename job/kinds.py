"""What the job knows of each resource kind apart from its AWS calls (job.aws.kinds pairs each with
its handler): what it hangs off, what takes it away with itself, who makes it, whether sweep looks
for it. Scenario compilation, teardown's order, the kinds a scenario needs and sweep read these
declarations, and none of them names a kind of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol, Self, TypeVar

from job.vocabulary import ResourceKind


@dataclass(frozen=True, kw_only=True)
class Attributes:
    """What a resource of a kind needs beyond its name, as the scenario compiles it, the ledger
    keeps it (a JSON column) and the kind's handler reads it: one dataclass per kind."""

    def to_json(self) -> dict[str, Any]:
        """For the ledger and `--output json`: a field left unset (None) is left out, so that
        a row says only what was chosen."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Self:
        """A ledger row's JSON as the kind's attributes. A key the kind no longer reads (a row
        an older job wrote) is passed over; a required one missing is a TypeError naming it."""
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in (data or {}).items() if name in known})


@dataclass(frozen=True, kw_only=True)
class BucketAttributes(Attributes):
    # The job's bucket policy refuses every request not made over TLS (job.scenario.RunOptions).
    require_tls: bool = True
    # Every key the run may write into it, so teardown deletes them without listing the
    # bucket. None: a row from before they were recorded, or one sweep found: listed and emptied.
    keys: list[str] | None = None
    # The scenario's bucket policy (resolved), written with the job's own lock-down statements.
    policy: dict[str, Any] | None = None
    # The ARNs of the run's users and roles that policy names: S3 refuses a policy naming a
    # principal that does not exist, so the bucket is made after them.
    principals: list[str] | None = None


@dataclass(frozen=True, kw_only=True)
class ObjectAttributes(Attributes):
    bucket: str
    key: str
    body: str = ""


@dataclass(frozen=True, kw_only=True)
class PrincipalAttributes(Attributes):
    """A user's or a role's: the ARN of the policy set as its permissions boundary, if any."""

    permissions_boundary: str | None = None
    # The scenario's own tags (for aws:PrincipalTag conditions), beside the job's.
    tags: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class PolicyAttributes(Attributes):
    document: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class UserPolicyAttachmentAttributes(Attributes):
    user_name: str
    policy_arn: str


@dataclass(frozen=True, kw_only=True)
class AccessKeyAttributes(Attributes):
    user_name: str


@dataclass(frozen=True, kw_only=True)
class RolePolicyAttachmentAttributes(Attributes):
    role_name: str
    policy_arn: str


@dataclass(frozen=True, kw_only=True)
class SessionRevocationAttributes(Attributes):
    role_name: str
    # Sessions issued before this moment (ISO 8601, UTC, whole seconds) are refused.
    issued_before: str


@dataclass(frozen=True, kw_only=True)
class GroupAttributes(Attributes):
    """A group needs nothing beyond its name: its policies are attachments, its users
    memberships, each a resource of its own."""


@dataclass(frozen=True, kw_only=True)
class GroupPolicyAttachmentAttributes(Attributes):
    group_name: str
    policy_arn: str


@dataclass(frozen=True, kw_only=True)
class GroupMembershipAttributes(Attributes):
    user_name: str
    group_name: str


A = TypeVar("A", bound=Attributes)


@dataclass(frozen=True)
class Reference:
    """Other resources one hangs off: their kind, and the attribute that names them (by name, or
    by an ARN whose last part is the name; a list attribute names several)."""

    kind: ResourceKind
    attribute: str


@dataclass(frozen=True)
class Kind:
    kind: ResourceKind
    attributes: type[Attributes]
    # What must exist before it is made, and outlive it: made after these, deleted before them.
    hangs_off: tuple[Reference, ...] = ()
    # Deleting that one takes this one with it (an object goes with its bucket): teardown
    # settles this row once that one's delete is done, with no call of its own.
    carried_by: Reference | None = None
    # Verify makes it for every resource of that kind (an access key for a user), so a scenario
    # with one needs this kind too; provision makes everything else.
    made_by_verify_for: ResourceKind | None = None
    # When `job sweep` looks for it (by the job's tags, whatever the ledger says), the wave it is
    # deleted in: waves go one after another, a wave's deletes at once. None: sweep does not look
    # for it (it goes with what it hangs off).
    sweep_wave: int | None = None

    def references(self) -> tuple[Reference, ...]:
        return self.hangs_off + ((self.carried_by,) if self.carried_by else ())


KINDS: dict[ResourceKind, Kind] = {
    kind.kind: kind
    for kind in (
        Kind(
            ResourceKind.S3_BUCKET,
            BucketAttributes,
            hangs_off=(
                Reference(ResourceKind.IAM_USER, "principals"),
                Reference(ResourceKind.IAM_ROLE, "principals"),
            ),
            sweep_wave=2,
        ),
        Kind(
            ResourceKind.S3_OBJECT,
            ObjectAttributes,
            carried_by=Reference(ResourceKind.S3_BUCKET, "bucket"),
        ),
        # Users and roles are swept first: deleting them detaches the policies (a role's delete
        # takes its inline policies and instance profiles off too), which can then go.
        # A principal is made after the policy of the run that is its permissions boundary.
        Kind(
            ResourceKind.IAM_USER,
            PrincipalAttributes,
            hangs_off=(Reference(ResourceKind.IAM_POLICY, "permissions_boundary"),),
            sweep_wave=0,
        ),
        Kind(ResourceKind.IAM_POLICY, PolicyAttributes, sweep_wave=1),
        Kind(
            ResourceKind.IAM_USER_POLICY_ATTACHMENT,
            UserPolicyAttachmentAttributes,
            hangs_off=(
                Reference(ResourceKind.IAM_USER, "user_name"),
                Reference(ResourceKind.IAM_POLICY, "policy_arn"),
            ),
        ),
        Kind(
            ResourceKind.IAM_ACCESS_KEY,
            AccessKeyAttributes,
            hangs_off=(Reference(ResourceKind.IAM_USER, "user_name"),),
            made_by_verify_for=ResourceKind.IAM_USER,
        ),
        Kind(
            ResourceKind.IAM_ROLE,
            PrincipalAttributes,
            hangs_off=(Reference(ResourceKind.IAM_POLICY, "permissions_boundary"),),
            sweep_wave=0,
        ),
        Kind(
            ResourceKind.IAM_ROLE_POLICY_ATTACHMENT,
            RolePolicyAttachmentAttributes,
            hangs_off=(
                Reference(ResourceKind.IAM_ROLE, "role_name"),
                Reference(ResourceKind.IAM_POLICY, "policy_arn"),
            ),
        ),
        # Put on a role only by verify --measure-revocation, and taken off again by it.
        Kind(
            ResourceKind.IAM_ROLE_SESSION_REVOCATION,
            SessionRevocationAttributes,
            hangs_off=(Reference(ResourceKind.IAM_ROLE, "role_name"),),
            made_by_verify_for=ResourceKind.IAM_ROLE,
        ),
        # Swept with the users: deleting a group takes its members out and its policies off
        # first (IAM refuses DeleteGroup otherwise), so that the policies can go in the next wave.
        Kind(ResourceKind.IAM_GROUP, GroupAttributes, sweep_wave=0),
        Kind(
            ResourceKind.IAM_GROUP_POLICY_ATTACHMENT,
            GroupPolicyAttachmentAttributes,
            hangs_off=(
                Reference(ResourceKind.IAM_GROUP, "group_name"),
                Reference(ResourceKind.IAM_POLICY, "policy_arn"),
            ),
        ),
        Kind(
            ResourceKind.IAM_GROUP_MEMBERSHIP,
            GroupMembershipAttributes,
            hangs_off=(
                Reference(ResourceKind.IAM_USER, "user_name"),
                Reference(ResourceKind.IAM_GROUP, "group_name"),
            ),
        ),
    )
}


def _check(kinds: Mapping[ResourceKind, Kind]) -> None:
    """At import: every kind is declared, and every reference names a field of the referring
    kind's attributes (a renamed field would otherwise silently drop an order)."""
    if set(kinds) != set(ResourceKind):
        raise ImportError(f"resource kinds without a declaration: {set(ResourceKind) - set(kinds)}")
    for kind in kinds.values():
        known = {f.name for f in fields(kind.attributes)}
        for reference in kind.references():
            if reference.attribute not in known:
                raise ImportError(
                    f"{kind.kind} refers to {reference.kind} by {reference.attribute!r},"
                    f" which {kind.attributes.__name__} does not have"
                )


_check(KINDS)


def attributes_of(resource: _Resource) -> Attributes:
    """A scenario's resource's attributes, or a ledger row's JSON read as its kind's."""
    if isinstance(resource.attributes, Attributes):
        return resource.attributes
    return KINDS[ResourceKind(resource.kind)].attributes.of(resource.attributes)


def read_as(attributes: Attributes | None, kind: type[A]) -> A:
    """`attributes` as the kind's own, as its handler reads them; None (nothing known but a
    resource's name, as sweep finds it): the kind's defaults, so a kind with required attributes
    cannot be acted on by name alone."""
    if attributes is None:
        return kind.of(None)
    if not isinstance(attributes, kind):
        raise TypeError(f"{kind.__name__} expected, not {type(attributes).__name__}")
    return attributes


def _names(value: Any) -> set[str]:
    """What a reference's value may match: a name, or an ARN, whose last part is the name; of
    each, for a list."""
    values = value if isinstance(value, list) else [value]
    return {name for item in values if item for name in (str(item), str(item).rsplit("/", 1)[-1])}


class _Resource(Protocol):
    """A scenario's resource or a ledger row: what the dependencies are read from."""

    @property
    def kind(self) -> Any: ...
    @property
    def logical_name(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def attributes(self) -> Any: ...


R = TypeVar("R", bound=_Resource)


def needs(resources: Sequence[_Resource]) -> dict[str, list[str]]:
    """For each resource (by logical name), the logical names of those it hangs off or is carried
    by, in its kind's order: read from the resources' own kinds and attributes, so that the same
    holds for a scenario being compiled and for the ledger rows of any run, whatever its
    scenario called things."""
    by_name: dict[tuple[ResourceKind, str], list[str]] = {}
    for resource in resources:
        # A created row is named by its ARN too (an attachment names its policy so).
        physical_id: str | None = getattr(resource, "physical_id", None)
        for name in {resource.name, physical_id or resource.name}:
            by_name.setdefault((ResourceKind(resource.kind), name), []).append(
                resource.logical_name
            )
    found: dict[str, list[str]] = {}
    for resource in resources:
        attributes = attributes_of(resource)
        wanted: list[str] = []
        for reference in KINDS[ResourceKind(resource.kind)].references():
            for name in sorted(_names(getattr(attributes, reference.attribute))):
                for logical_name in by_name.get((reference.kind, name), []):
                    if logical_name != resource.logical_name and logical_name not in wanted:
                        wanted.append(logical_name)
        found[resource.logical_name] = wanted
    return found


def teardown_needs(rows: Sequence[_Resource]) -> dict[str, set[str]]:
    """For each of a run's ledger rows (by logical name), the rows that must be deleted before it:
    those that hang off it."""
    blockers: dict[str, set[str]] = {row.logical_name: set() for row in rows}
    for dependent, needed in needs(rows).items():
        for logical_name in needed:
            blockers[logical_name].add(dependent)
    return blockers


def carried(resources: Sequence[R]) -> list[tuple[R, R]]:
    """(carrier, carried): each resource among `resources` that another one's delete takes with
    it (an object, its bucket's), with that one. A resource whose carrier is not among them (a
    bucket that is not the run's) is carried by nothing."""
    by_name = {(ResourceKind(r.kind), r.name): r for r in resources}
    pairs = []
    for resource in resources:
        reference = KINDS[ResourceKind(resource.kind)].carried_by
        if reference is None:
            continue
        name = str(getattr(attributes_of(resource), reference.attribute))
        carrier = by_name.get((reference.kind, name))
        if carrier is not None:
            pairs.append((carrier, resource))
    return pairs


def with_verify_kinds(kinds: set[ResourceKind]) -> set[ResourceKind]:
    """`kinds` (what provision makes) and what verify makes for them."""
    return kinds | {
        kind.kind
        for kind in KINDS.values()
        if kind.made_by_verify_for is not None and kind.made_by_verify_for in kinds
    }


def sweep_kinds() -> list[ResourceKind]:
    """The kinds sweep looks for, in the order it lists them: by wave, then as declared."""
    swept = [kind for kind in KINDS.values() if kind.sweep_wave is not None]
    return [kind.kind for kind in sorted(swept, key=lambda kind: kind.sweep_wave or 0)]


def sweep_waves() -> list[set[ResourceKind]]:
    """The kinds sweep looks for, by the wave they are deleted in, in order."""
    waves: dict[int, set[ResourceKind]] = {}
    for kind in KINDS.values():
        if kind.sweep_wave is not None:
            waves.setdefault(kind.sweep_wave, set()).add(kind.kind)
    return [waves[wave] for wave in sorted(waves)]
