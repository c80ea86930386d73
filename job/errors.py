"""The job's errors. Each carries the exit code the contract gives it, and a one-line message that
names the problem and the fix; the CLI prints that line and nothing else (no traceback)."""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    """The contract's exit codes (CONTRACT.md, "Exit codes"), and a stopped command's."""

    DONE = 0
    # verify ran and a permission differed from what was expected (verdict failed)
    FAILED = 1
    BAD_INPUT = 2
    HELD = 3
    # AWS or the ledger stopped the work, or a verify could not answer every check (incomplete)
    NOT_FINISHED = 4
    # as a shell reports a command killed by the signal: 128 + its number
    INTERRUPTED = 128 + signal.SIGINT
    TERMINATED = 128 + signal.SIGTERM


class JobError(Exception):
    """Could not finish because of AWS or the ledger; what was done is recorded (exit 4)."""

    exit_code = ExitCode.NOT_FINISHED

    def __init__(self, message: str) -> None:
        # One line, always: operators grep logs and CI shows the first line only.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


def first_line(error: BaseException) -> str:
    """The first line of what a library says about a failure (the database driver's message,
    when SQLAlchemy wraps one), or the error's type when it says nothing."""
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


class BadInput(JobError):
    """Usage error, unknown run id, invalid option value or configuration (exit 2)."""

    exit_code = ExitCode.BAD_INPUT


class RunHeld(JobError):
    """Another process holds the run (exit 3); nothing was changed."""

    exit_code = ExitCode.HELD


class AwsError(JobError):
    """AWS refused or failed past retries (exit 4)."""


class LedgerError(JobError):
    """The ledger could not be read or written (exit 4)."""


class NotOurs(JobError):
    """A resource exists under our deterministic name but does not carry this run's tags."""
