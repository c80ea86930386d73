"""The states runs, resources, phase attempts and checks go through, as the ledger stores them
(by value, as plain strings) and as `--output json` shows them."""

from __future__ import annotations

import enum

# Verdicts are the scenario's words too; they live where the scenario can use them without the
# ledger, and are named here with the other states the ledger stores.
from job.vocabulary import Verdict

__all__ = ["Outcome", "Phase", "ResourceState", "RunStatus", "Verdict"]


class RunStatus(enum.StrEnum):
    PROVISIONING = "provisioning"
    PROVISIONED = "provisioned"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    VERIFY_FAILED = "verify_failed"
    TEARING_DOWN = "tearing_down"
    TORN_DOWN = "torn_down"
    FAILED = "failed"


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
