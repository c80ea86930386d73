"""What a run creates, and the permissions it expects each principal to have. A run's scenario
comes from a scenario file (job.scenario_file), by default the built-in seed
(job/scenarios/seed.yaml): a bucket, a writer who may put and get objects, a reader who may only
get them, and a decoy bucket that neither may read, so that "nothing beyond its bucket" is a real
check.

The scenario is data. Provision creates `resources`, each once what it `needs` exists (independent
ones at once); teardown deletes each once nothing that needs it is left; verify checks
`expectations` with each principal's own keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from job.config import MAX_PREFIX_LENGTH
from job.naming import RUN_ID_LENGTH, RUN_ID_PATTERN, Naming
from job.vocabulary import ResourceKind, Verdict

# A resource's logical name in a scenario file (a bucket, a user, a role): lowercase letters and
# digits, single '-' between them, so that "<prefix>-<run id>-<name>" is a valid bucket and IAM
# name. A run id is ten characters (job.naming) and a prefix at most 20, so a
# name has room for 31 characters in a bucket's 63 and 32 in an IAM user's or role's 64.
LOGICAL_NAME_PATTERN = "[a-z0-9](-?[a-z0-9])*"
MAX_BUCKET_LOGICAL_NAME = 63 - MAX_PREFIX_LENGTH - RUN_ID_LENGTH - 2
MAX_PRINCIPAL_LOGICAL_NAME = 64 - MAX_PREFIX_LENGTH - RUN_ID_LENGTH - 2
# The ledger's column for a logical name (an object's is "<bucket>/<key>").
MAX_RESOURCE_LOGICAL_NAME = 64
# Any run's bucket names, so that `job sweep` can tell them from other buckets under the prefix:
# the prefix, a run id (as job.naming makes them) and any
# logical name a scenario file may give a bucket. Sweep still deletes only what carries the job's
# tags.
JOB_BUCKET_NAME = re.compile(
    rf"[a-z0-9-]{{1,{MAX_PREFIX_LENGTH}}}-{RUN_ID_PATTERN}-"
    rf"(?=[a-z0-9-]{{1,{MAX_BUCKET_LOGICAL_NAME}}}$){LOGICAL_NAME_PATTERN}"
)


@dataclass(frozen=True)
class ResourceSpec:
    kind: ResourceKind
    logical_name: str
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    # Logical names of what must exist before this can be created (and must outlive it).
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expectation:
    principal: str  # the logical name of an IAM user or role resource
    action: str
    expected: Verdict
    bucket: str | None = None  # a bucket's real name, when the probe is aimed at one
    key: str | None = None
    # Otherwise what the probe is aimed at, as written: an ARN, or "*".
    resource: str | None = None

    def resource_arn(self, naming: Naming) -> str:
        if self.bucket is None:
            return self.resource or "*"
        return naming.s3_arn(self.bucket, self.key)


@dataclass(frozen=True)
class Scenario:
    resources: tuple[ResourceSpec, ...]
    expectations: tuple[Expectation, ...]

    @property
    def principals(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.principal for e in self.expectations))

    def principal_kind(self, principal: str) -> ResourceKind:
        """IAM_USER (verify makes it an access key) or IAM_ROLE (verify assumes it)."""
        for spec in self.resources:
            if spec.logical_name == principal and spec.kind in (
                ResourceKind.IAM_USER,
                ResourceKind.IAM_ROLE,
            ):
                return spec.kind
        raise KeyError(f"no user or role {principal!r} in the scenario")


@dataclass(frozen=True)
class RunOptions:
    """Choices made when a run starts, kept with the run in the ledger."""

    # Applied to every user the run creates: the most its policies can ever grant.
    permissions_boundary: str | None = None
    # A bucket policy that denies every request not made over TLS. Off only against a plain-HTTP
    # endpoint (an emulator), where no request could satisfy it.
    require_tls: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"permissions_boundary": self.permissions_boundary, "require_tls": self.require_tls}

    @classmethod
    def of(cls, run: Any) -> RunOptions:
        options = run.options or {}
        return cls(options.get("permissions_boundary"), bool(options.get("require_tls", True)))


def teardown_needs(rows: Sequence[Any]) -> dict[str, set[str]]:
    """For each of a run's ledger rows (by logical name), the rows that must be deleted before it:
    those that need it. Read from the rows alone, not from a scenario: a run's logical names are
    whatever its scenario called things when it ran (older runs said "bucket" and "fixture"), and
    what one resource needs of another is in its attributes. An object needs its bucket; an
    attachment its user or role and its policy; an access key its user; a session revocation its
    role."""
    by_name: dict[tuple[ResourceKind, str], list[str]] = {}
    for row in rows:
        by_name.setdefault((row.kind, row.name), []).append(row.logical_name)
        if row.kind == ResourceKind.IAM_POLICY and row.physical_id:
            # Created: its ARN, which attachments name it by.
            by_name.setdefault((row.kind, row.physical_id), []).append(row.logical_name)
    blockers: dict[str, set[str]] = {row.logical_name: set() for row in rows}
    for row in rows:
        for need in _needed(row):
            for logical_name in by_name.get(need, []):
                if logical_name != row.logical_name:
                    blockers[logical_name].add(row.logical_name)
    return blockers


def _needed(row: Any) -> list[tuple[ResourceKind, str]]:
    """What a row's resource hangs off, as (kind, name) of other rows."""
    attributes = row.attributes or {}
    if row.kind == ResourceKind.S3_OBJECT:
        return [(ResourceKind.S3_BUCKET, attributes.get("bucket", ""))]
    if row.kind == ResourceKind.IAM_ACCESS_KEY:
        return [(ResourceKind.IAM_USER, attributes.get("user_name", ""))]
    if row.kind == ResourceKind.IAM_ROLE_SESSION_REVOCATION:
        return [(ResourceKind.IAM_ROLE, attributes.get("role_name", ""))]
    owner = {
        ResourceKind.IAM_USER_POLICY_ATTACHMENT: (ResourceKind.IAM_USER, "user_name"),
        ResourceKind.IAM_ROLE_POLICY_ATTACHMENT: (ResourceKind.IAM_ROLE, "role_name"),
    }.get(row.kind)
    if owner is None:
        return []
    policy_arn = str(attributes.get("policy_arn", ""))
    return [
        (owner[0], attributes.get(owner[1], "")),
        (ResourceKind.IAM_POLICY, policy_arn),
        # A policy row not yet created has no ARN: its name is the ARN's last path part.
        (ResourceKind.IAM_POLICY, policy_arn.rsplit("/", 1)[-1]),
    ]
