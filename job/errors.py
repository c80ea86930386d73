"""The job's errors. Each carries the exit code the contract gives it, and a one-line message that
names the problem and the fix; the CLI prints that line and nothing else (no traceback)."""

from __future__ import annotations


class JobError(Exception):
    """Could not finish because of AWS or the ledger; what was done is recorded (exit 4)."""

    exit_code = 4

    def __init__(self, message: str) -> None:
        # One line, always: operators grep logs and CI shows the first line only.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class BadInput(JobError):
    """Usage error, unknown run id, invalid option value or configuration (exit 2)."""

    exit_code = 2


class RunHeld(JobError):
    """Another process holds the run (exit 3); nothing was changed."""

    exit_code = 3


class AwsError(JobError):
    """AWS refused or failed past retries (exit 4)."""


class LedgerError(JobError):
    """The ledger could not be read or written (exit 4)."""


class NotOurs(JobError):
    """A resource exists under our deterministic name but does not carry this run's tags."""
