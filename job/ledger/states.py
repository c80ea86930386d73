"""The states runs, resources, phase attempts and checks go through, as the ledger stores them
(by value, as plain strings) and as `--output json` shows them."""

from __future__ import annotations

import enum

# Verdicts are the scenario's words too; they live where the scenario can use them without the
# ledger, and are named here with the other states the ledger stores.
from job.vocabulary import Verdict

__all__ = ["ItemStatus", "Outcome", "Phase", "ResourceState", "RunStatus", "RunVerdict", "Verdict"]


class RunStatus(enum.StrEnum):
    PROVISIONING = "provisioning"
    PROVISIONED = "provisioned"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    VERIFY_FAILED = "verify_failed"
    TEARING_DOWN = "tearing_down"
    TORN_DOWN = "torn_down"
    FAILED = "failed"


class RunVerdict(enum.StrEnum):
    """What a run's latest verify proved, kept for good (through teardown): `passed` when every
    cell of the scenario answered `allow` or `deny` as expected; `failed` when some cell answered
    the other way; `incomplete` when none did, but some cell has no `allow`/`deny` answer (it was
    not run, or AWS answered something else). A verify that stops part-way is `incomplete`, never
    `passed`: the verdict is judged against every cell of the scenario, not the checks recorded."""

    PASSED = "passed"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


class ResourceState(enum.StrEnum):
    PENDING = "pending"  # recorded; the create call may or may not have happened
    CREATED = "created"
    DELETING = "deleting"
    DELETED = "deleted"


class Phase(enum.StrEnum):
    """What a phase attempt was an attempt at."""

    PROVISION = "provision"
    VERIFY = "verify"
    TEARDOWN = "teardown"


class Outcome(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ItemStatus(enum.StrEnum):
    """Where one (account, region) item of a fleet batch is: not yet claimed, claimed by a worker
    (or by one that died: the next worker takes it over), or done with a verdict."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
