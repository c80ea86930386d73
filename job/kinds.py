"""What the job knows of each resource kind apart from its AWS calls (job.aws.kinds pairs each with
its handler): what it hangs off, what takes it away with itself, who makes it, whether sweep looks
for it. Scenario compilation, teardown's order, the kinds a scenario needs and sweep read these
declarations, and none of them names a kind of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from job.vocabulary import ResourceKind


@dataclass(frozen=True)
class Reference:
    """Another resource one hangs off: its kind, and the attribute that names it (by its name, or
    by an ARN whose last part is its name)."""

    kind: ResourceKind
    attribute: str


@dataclass(frozen=True)
class Kind:
    kind: ResourceKind
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
        Kind(ResourceKind.S3_BUCKET, sweep_wave=2),
        Kind(ResourceKind.S3_OBJECT, carried_by=Reference(ResourceKind.S3_BUCKET, "bucket")),
        # Users and roles are swept first: deleting them detaches the policies (a role's delete
        # takes its inline policies and instance profiles off too), which can then go.
        Kind(ResourceKind.IAM_USER, sweep_wave=0),
        Kind(ResourceKind.IAM_POLICY, sweep_wave=1),
        Kind(
            ResourceKind.IAM_USER_POLICY_ATTACHMENT,
            hangs_off=(
                Reference(ResourceKind.IAM_USER, "user_name"),
                Reference(ResourceKind.IAM_POLICY, "policy_arn"),
            ),
        ),
        Kind(
            ResourceKind.IAM_ACCESS_KEY,
            hangs_off=(Reference(ResourceKind.IAM_USER, "user_name"),),
            made_by_verify_for=ResourceKind.IAM_USER,
        ),
        Kind(ResourceKind.IAM_ROLE, sweep_wave=0),
        Kind(
            ResourceKind.IAM_ROLE_POLICY_ATTACHMENT,
            hangs_off=(
                Reference(ResourceKind.IAM_ROLE, "role_name"),
                Reference(ResourceKind.IAM_POLICY, "policy_arn"),
            ),
        ),
        # Put on a role only by verify --measure-revocation, and taken off again by it.
        Kind(
            ResourceKind.IAM_ROLE_SESSION_REVOCATION,
            hangs_off=(Reference(ResourceKind.IAM_ROLE, "role_name"),),
            made_by_verify_for=ResourceKind.IAM_ROLE,
        ),
    )
}
if set(KINDS) != set(ResourceKind):
    raise ImportError(f"resource kinds without a declaration: {set(ResourceKind) - set(KINDS)}")


def _named(value: str) -> set[str]:
    """What a reference's value may match: a name, or an ARN, whose last part is the name."""
    return {value, value.rsplit("/", 1)[-1]} if value else set()


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
        attributes: Mapping[str, Any] = resource.attributes or {}
        wanted: list[str] = []
        for reference in KINDS[ResourceKind(resource.kind)].references():
            for name in sorted(_named(str(attributes.get(reference.attribute, "")))):
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
        name = str((resource.attributes or {}).get(reference.attribute, ""))
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
