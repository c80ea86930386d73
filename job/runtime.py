"""The composition root: one `App` per command line holds what commands work with, the settings,
the ledger and its store, and the maker of the job's AWS principal, each built on first use, and
is the one place where any failure becomes a one-line error and the contract's exit code.

Tests build an App with their own botocore call hooks (to count calls, inject faults or kill the
process at a chosen call) instead of patching a module.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from job.config import CommandLine, OutputFormat, Settings
from job.errors import JobError, LedgerError, first_line
from job.logs import StatusLine
from job.logs import configure as configure_logging

if TYPE_CHECKING:  # imported when first used: `job --help` needs none of them
    from job.aws.session import Aws
    from job.ledger.engine import Ledger
    from job.ledger.store import Store
    from job.metrics import Observation

log = logging.getLogger("job")

CallHook = Callable[..., Any]


class App:
    """What every command works with. `command_line` is filled in while click parses it (global
    options may stand anywhere); everything else is made from it when first asked for and closed
    by `close`, in the reverse order."""

    def __init__(
        self, *, call_hooks: Sequence[CallHook] = (), environ: Mapping[str, str] | None = None
    ) -> None:
        self.command_line = CommandLine()
        # The command's name without "job ", for the metrics ("runs list"); set by the CLI.
        self.command = ""
        # The run the command is working on, once it knows (for the hint when it is stopped).
        self.run_id: str | None = None
        # botocore event handlers put on every AWS client the job makes (see job.aws.session).
        self.call_hooks = tuple(call_hooks)
        self._environ = os.environ if environ is None else environ
        self._settings: Settings | None = None
        self._ledger: Ledger | None = None
        self._store: Store | None = None
        self._emulator_aws: Callable[[str | None], Aws] | None = None
        self._closing = ExitStack()
        self.status_line: StatusLine | None = None
        self.observation: Observation | None = None

    @property
    def settings(self) -> Settings:
        """Validated once, before anything is created; sets up logging and the metrics too."""
        if self._settings is None:
            settings = Settings.of(self.command_line, self._environ)
            self.status_line = configure_logging(
                settings.log_level, settings.log_format, settings.output
            )
            if settings.metrics_file is not None:
                from job.files import check_writable
                from job.metrics import Observation

                check_writable(settings.metrics_file, "--metrics-file")
                self.observation = Observation(self.command, settings.prefix)
            self._settings = settings
        return self._settings

    @property
    def output(self) -> OutputFormat:
        """The output format, even when the settings could not be loaded (an error is then
        printed in the format asked for)."""
        if self._settings is not None:
            return self._settings.output
        asked = self.command_line.output or self._environ.get("JOB_OUTPUT")
        return OutputFormat.JSON if asked == OutputFormat.JSON else OutputFormat.TEXT

    @property
    def ledger(self) -> Ledger:
        """Opened, and its schema brought up to date, on first use."""
        if self._ledger is None:
            from job.ledger.engine import Ledger

            ledger = Ledger(self.settings.database_url)
            self._closing.callback(ledger.dispose)
            self._ledger = ledger.open()
        return self._ledger

    @property
    def store(self) -> Store:
        if self._store is None:
            from job.ledger.store import Store

            self._store = Store(self._closing.enter_context(self.ledger.session()))
        return self._store

    def aws(self, region: str | None = None) -> Aws:
        """The job's own principal. Given a run's region, that region whatever --region or
        AWS_REGION say (the run's resources live there); given None, the settings' region or
        boto3's own choice. With --emulator, the in-process emulator, started on first use."""
        settings = self.settings
        if settings.emulator:
            return self._emulator()(region or settings.region or "us-east-1")
        from job.aws.session import make_aws

        return make_aws(
            region or settings.region,
            call_hooks=self.call_hooks,
            propagation_timeout=settings.propagation_timeout,
            deny_settle=settings.deny_settle,
        )

    def _emulator(self) -> Callable[[str | None], Aws]:
        if self._emulator_aws is None:
            from job.aws.session import make_aws
            from job.emulator import InProcessEmulator

            emulator = InProcessEmulator()
            credentials = emulator.start()
            self._closing.callback(emulator.stop)
            log.info("using the in-process AWS emulator at %s", credentials.endpoint_url)
            timeout, settle = self.settings.propagation_timeout, self.settings.deny_settle

            def aws(region: str | None) -> Aws:
                return make_aws(
                    region,
                    credentials.endpoint_url,
                    call_hooks=self.call_hooks,
                    aws_access_key_id=credentials.access_key_id,
                    aws_secret_access_key=credentials.secret_access_key,
                    propagation_timeout=timeout,
                    deny_settle=settle,
                )

            self._emulator_aws = aws
        return self._emulator_aws

    @contextmanager
    def held_run(
        self, run_id: str, found: Callable[[str], None] = lambda run_id: None
    ) -> Iterator[Aws]:
        """Open an existing run: read it (BadInput when unknown; then `found` hears its id, for
        reports that must name it whatever happens next), make AWS for the run's own region, and
        hold the run for the block (RunHeld, exit 3, when another process does)."""
        run = self.store.get_run(run_id)
        found(run.id)
        aws = self.aws(run.region)
        with self.ledger.hold(run_id):
            yield aws

    def close(self) -> None:
        """Release everything opened, quietly: a ledger that went away must not raise a second
        error over the first."""
        try:
            self._closing.close()
        except Exception as error:
            log.warning("could not close the ledger cleanly: %s", first_line(error))
        if self.status_line is not None:
            self.status_line.clear()

    def failure(self, error: Exception) -> JobError:
        """The error boundary: whatever a command raised, as a JobError with a one-line message
        and the contract's exit code. Libraries are asked only when their modules were imported
        (an error cannot come from a module that never loaded)."""
        if isinstance(error, JobError):
            return error
        sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
        if sqlalchemy_errors is not None and isinstance(error, sqlalchemy_errors.SQLAlchemyError):
            from job.ledger.engine import ledger_failure

            return ledger_failure(self.settings.database_url, error, "the ledger failed")
        alembic_errors = sys.modules.get("alembic.util.exc")
        if alembic_errors is not None and isinstance(error, alembic_errors.CommandError):
            return LedgerError(
                f"the ledger's schema could not be brought up to date: {first_line(error)}; "
                "run `job db upgrade` with the newest job"
            )
        botocore_errors = sys.modules.get("botocore.exceptions")
        if botocore_errors is not None and isinstance(
            error, (botocore_errors.BotoCoreError, botocore_errors.ClientError)
        ):
            from job.aws.session import describe_aws_error

            return describe_aws_error(error, "calling AWS")
        if isinstance(error, OSError):
            where = f" ({error.filename})" if error.filename else ""
            return JobError(
                f"{error.strerror or first_line(error)}{where}; check the file or the network and "
                "run the same command again"
            )
        # A bug: the contract still holds (one line, exit 4); the traceback is in the debug log.
        log.debug("unexpected error", exc_info=error)
        return JobError(
            f"unexpected {type(error).__name__}: {first_line(error)}; this is a bug in job: run "
            "the same command with -vv and report what it prints"
        )
