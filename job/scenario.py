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

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from job.config import MAX_PREFIX_LENGTH
from job.kinds import Attributes
from job.naming import RUN_ID_LENGTH, RUN_ID_PATTERN, Naming
from job.probes import PROBES, Aim
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


def job_iam_name(prefix: str | None = None, run_id: str | None = None) -> re.Pattern[str]:
    """The names the job gives IAM entities, <prefix>-<run id>-<logical name>: of one prefix or
    any, of one run or any run id the job makes (the run id is the group `run_id`). What tells a
    group of the job's from anyone else's, with its path: IAM cannot tag a group."""
    any_prefix = f"[a-z0-9-]{{1,{MAX_PREFIX_LENGTH}}}"
    return re.compile(
        rf"{any_prefix if prefix is None else re.escape(prefix)}-"
        rf"(?P<run_id>{RUN_ID_PATTERN if run_id is None else re.escape(run_id)})-"
        rf"(?=[a-z0-9-]{{1,{MAX_PRINCIPAL_LOGICAL_NAME}}}$){LOGICAL_NAME_PATTERN}"
    )


@dataclass(frozen=True)
class ResourceSpec:
    kind: ResourceKind
    logical_name: str
    name: str
    attributes: Attributes
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
    # The request context the cell sets (job.probes.Probe.context), as canonical JSON: two
    # cells differing only in it are two cells. "" when it sets none.
    context: str = ""

    @property
    def context_values(self) -> dict[str, Any]:
        return dict(json.loads(self.context)) if self.context else {}

    @property
    def aim(self) -> Aim:
        """Where the probe is aimed: the bucket and key, or the role at `resource`."""
        if self.bucket is not None:
            return Aim(self.bucket, self.key)
        return Aim(role_arn=self.resource) if PROBES[self.action].on_role else Aim()

    def resource_arn(self, naming: Naming) -> str:
        if self.bucket is None:
            return self.resource or "*"
        return naming.s3_arn(self.bucket, self.key)


@dataclass(frozen=True)
class Scenario:
    resources: tuple[ResourceSpec, ...]
    expectations: tuple[Expectation, ...]
    # By role (logical name): the session policy verify passes to AssumeRole, resolved.
    session_policies: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    # By role (logical name): the ARN of an existing role verify assumes as it is. The run
    # refers to it and owns nothing of it: no ledger row, so teardown and sweep cannot touch it.
    existing_roles: Mapping[str, str] = field(default_factory=dict)

    @property
    def principals(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.principal for e in self.expectations))

    def principal_kind(self, principal: str) -> ResourceKind:
        """IAM_USER (verify makes it an access key) or IAM_ROLE (verify assumes it: one of the
        run's, or an existing one)."""
        if principal in self.existing_roles:
            return ResourceKind.IAM_ROLE
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
