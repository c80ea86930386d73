"""The command line: parse, call one function, render, map errors to exit codes.

Global options may stand before or after the command name; each is declared once and attached to
the group and to every command, and whichever is given last wins.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from job.config import Settings
from job.errors import BadInput, JobError
from job.ledger.states import RunStatus
from job.logs import configure as configure_logging

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("job")


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None or value == 0:
        return value
    store = ctx.find_root().obj
    if param.name == "verbosity":
        store["verbosity"] = store.get("verbosity", 0) + value
    else:
        store[param.name] = value
    return value


def global_options(function: F) -> F:
    options = [
        click.option(
            "--database-url",
            metavar="URL",
            help="Ledger URL [env JOB_DATABASE_URL; default sqlite:///job.db].",
        ),
        click.option("--region", metavar="REGION", help="AWS region [env AWS_REGION]."),
        click.option(
            "--prefix",
            metavar="PREFIX",
            help="Start of every created resource's name [env JOB_PREFIX; default job].",
        ),
        click.option(
            "--output",
            type=click.Choice(["text", "json"]),
            help="Output format [env JOB_OUTPUT; default text].",
        ),
        click.option(
            "--permissions-boundary",
            metavar="ARN",
            help="A managed policy applied as every created user's permissions boundary "
            "[env JOB_PERMISSIONS_BOUNDARY].",
        ),
        click.option(
            "--concurrency",
            metavar="N",
            help="At most N AWS calls at once [env JOB_CONCURRENCY; default 10].",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            help="Logs on stderr as lines or as one JSON object each [env JOB_LOG_FORMAT].",
        ),
        click.option(
            "--metrics-file",
            metavar="PATH",
            help="Write Prometheus text-format metrics here when the command ends "
            "[env JOB_METRICS_FILE].",
        ),
        click.option(
            "--emulator",
            is_flag=True,
            default=None,
            help="Use an in-process AWS emulator (moto) [env JOB_EMULATOR=1].",
        ),
        click.option(
            "-v",
            "--verbose",
            "verbosity",
            count=True,
            help="More logs on stderr: -v info, -vv debug.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    # Parsed into ctx.meta by _remember, not passed to the function.
    for param in getattr(function, "__click_params__", [])[-len(options) :]:
        param.expose_value = False
        param.callback = _remember
        param.is_eager = False
    return function


def settings_from(ctx: click.Context) -> Settings:
    """The validated settings, from every global option given anywhere on the line; also sets up
    logging, which needs them, and the metrics the command will leave behind."""
    given = ctx.find_root().obj
    settings = Settings.load(**{k: v for k, v in given.items() if not k.startswith("_")})
    given["_status_line"] = configure_logging(
        settings.log_level, settings.log_format, settings.output
    )
    if settings.metrics_file is not None:
        from job.files import check_writable
        from job.metrics import Observation

        check_writable(settings.metrics_file, "--metrics-file")
        given["_settings"] = settings
        given["_observation"] = Observation(ctx.command_path.removeprefix("job "), settings.prefix)
    return settings


def observation(ctx: click.Context) -> Any:
    """The metrics being gathered for --metrics-file, or None."""
    return ctx.find_root().obj.get("_observation")


def junit_path(value: str | None) -> str | None:
    from job.files import check_writable

    return None if value is None else check_writable(value, "--junit-xml")


@dataclass
class Concern:
    """The run a command concerns and, when it failed, why: what its reports must say."""

    run_id: str | None = None
    error: str | None = None


@contextmanager
def reporting(ctx: click.Context, store: Any, junit_xml: str | None = None) -> Iterator[Concern]:
    """Around a command's work on one run: when it ends, however it ends, the run goes into the
    metrics and the JUnit report. The command sets the run's id as soon as it knows it."""
    concern = Concern()
    try:
        yield concern
    except JobError as failure:
        concern.error = failure.message
        raise
    finally:
        if concern.run_id and (junit_xml is not None or observation(ctx) is not None):
            _report_run(ctx, store, concern.run_id, junit_xml, concern.error)


def _report_run(
    ctx: click.Context, store: Any, run_id: str, junit_xml: str | None, error: str | None
) -> None:
    from job.junit import write_junit

    try:
        run = store.get_run(run_id)
        checks = store.latest_checks(run)
        observed = observation(ctx)
        if observed is not None:
            observed.observe_run(run, checks)
            observed.ledger_resources_live = store.count_live_resources()
        if junit_xml is not None:
            write_junit(junit_xml, run, checks, error)
    except (JobError, OSError) as failure:
        # The command's own outcome matters more; the missing report is said, not raised over it.
        message = failure.message if isinstance(failure, JobError) else str(failure)
        log.error("could not write the reports of run %s: %s", run_id, message)


@dataclass
class Runtime:
    """What a command works with: the ledger, its store, and a maker of the job's AWS principal
    for a region. Given a run's region, that region is used whatever --region or AWS_REGION say
    (the run's resources live there); given None, the settings' region or boto3's own choice."""

    ledger: Any
    store: Any
    make_aws: Callable[[str | None], Any]


@contextmanager
def runtime(settings: Settings) -> Iterator[Runtime]:
    from job.aws.session import make_aws
    from job.ledger.store import Store
    from job.runtime import Ledger

    with ExitStack() as stack:
        ledger = Ledger(settings.database_url).open()
        stack.callback(ledger.dispose)
        store = Store(stack.enter_context(ledger.session()))
        if not settings.emulator:
            yield Runtime(
                ledger,
                store,
                lambda region: make_aws(
                    region or settings.region, propagation_timeout=settings.propagation_timeout
                ),
            )
            return
        from job.emulator import InProcessEmulator

        emulator = InProcessEmulator()
        credentials = emulator.start()
        stack.callback(emulator.stop)
        log.info("using the in-process AWS emulator at %s", credentials.endpoint_url)
        yield Runtime(
            ledger,
            store,
            lambda region: make_aws(
                region or settings.region or "us-east-1",
                credentials.endpoint_url,
                aws_access_key_id=credentials.access_key_id,
                aws_secret_access_key=credentials.secret_access_key,
                propagation_timeout=settings.propagation_timeout,
            ),
        )


def run_options(settings: Settings) -> Any:
    from job.scenario import RunOptions

    return RunOptions(settings.permissions_boundary, settings.require_tls)


def emit(settings: Settings, document: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(document) if settings.output == "json" else text)


class JobGroup(click.Group):
    """Every command and subgroup under it takes the global options too."""

    def command(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Command]:
        decorator = super().command(*args, **kwargs)
        return lambda function: decorator(global_options(function))

    def group(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Group]:
        kwargs.setdefault("cls", JobGroup)
        decorator = super().group(*args, **kwargs)
        return lambda function: decorator(global_options(function))


@click.group(cls=JobGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
def cli() -> None:
    """Provision AWS resources, prove their permissions, tear them down; every resource is recorded
    in a ledger first, so nothing is ever left behind.

    Example: job run --emulator
    """


JUNIT_XML = click.option(
    "--junit-xml",
    metavar="PATH",
    help="Also write the checks as a JUnit XML report here (one test case per check).",
)


@cli.command("run")
@click.option("--keep", is_flag=True, help="Leave the resources in place (skip teardown).")
@JUNIT_XML
@click.pass_context
def run_command(ctx: click.Context, keep: bool, junit_xml: str | None) -> None:
    """Provision, verify, then tear down (always, unless --keep).

    Exit code: verify's (0 all checks passed, 1 a check failed), or 4 when teardown could not
    finish.

    Example: job run
    """
    from job.phases.run import run_all
    from job.report import run_dict, run_text

    settings = settings_from(ctx)
    junit_xml = junit_path(junit_xml)
    with runtime(settings) as job, reporting(ctx, job.store, junit_xml) as concern:
        store = job.store
        outcome = run_all(
            store,
            job.make_aws(None),
            prefix=settings.prefix,
            options=run_options(settings),
            hold=job.ledger.hold,
            keep=keep,
            started=lambda run_id: setattr(concern, "run_id", run_id),
            concurrency=settings.concurrency,
        )
        if outcome.error is not None:  # returned as an exit code, not raised: reports still say it
            concern.error = outcome.error.message
        run = store.get_run(outcome.run.id)
        checks = store.latest_checks(run)
        document = run_dict(run, checks)
        text = run_text(run, checks)
        if outcome.error is not None:
            document["error"] = outcome.error.message
            text += f"\nerror: {outcome.error.message}"
        document["exit_code"] = outcome.exit_code
        emit(settings, document, text)
    ctx.exit(outcome.exit_code)


@cli.command("provision")
@click.option("--run-id", help="Resume this run instead of starting a new one.")
@click.pass_context
def provision_command(ctx: click.Context, run_id: str | None) -> None:
    """Start a new run (or resume one) and create its resources; prints the run id.

    Example: job provision
    """
    from job.phases.provision import provision, start_run
    from job.report import run_dict

    settings = settings_from(ctx)
    with runtime(settings) as job, reporting(ctx, job.store) as concern:
        if run_id is None:
            aws = job.make_aws(None)
            run_id = start_run(job.store, aws, settings.prefix, run_options(settings)).id
        else:
            aws = job.make_aws(job.store.get_run(run_id).region)
        concern.run_id = run_id
        with job.ledger.hold(run_id):
            run = provision(job.store, aws, run_id=run_id, concurrency=settings.concurrency)
        # Text output is the run id alone, so that scripts can say RUN=$(job provision).
        emit(settings, run_dict(run, []), run.id)


@cli.command("verify")
@click.option("--run-id", required=True, help="The run to verify.")
@JUNIT_XML
@click.pass_context
def verify_command(ctx: click.Context, run_id: str, junit_xml: str | None) -> None:
    """Check every principal's real permissions against the expected matrix (exit 1 if any differ).

    Example: job verify --run-id abc123
    """
    from job.phases.verify import verify
    from job.report import run_dict, run_text

    settings = settings_from(ctx)
    junit_xml = junit_path(junit_xml)
    with runtime(settings) as job, reporting(ctx, job.store, junit_xml) as concern:
        aws = job.make_aws(job.store.get_run(run_id).region)
        concern.run_id = run_id
        with job.ledger.hold(run_id):
            run = verify(job.store, aws, run_id=run_id, concurrency=settings.concurrency)
        checks = job.store.latest_checks(run)
        emit(settings, run_dict(run, checks), run_text(run, checks, show_resources=False))
    ctx.exit(0 if all(check.passed for check in checks) else 1)


@cli.command("teardown")
@click.option("--run-id", help="The run to tear down.")
@click.option("--stale", is_flag=True, help="Tear down every idle run that is not torn down.")
@click.option(
    "--older-than",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="With --stale: idle for longer than this (e.g. 30m, 6h, 2d).",
)
@click.pass_context
def teardown_command(ctx: click.Context, run_id: str | None, stale: bool, older_than: str) -> None:
    """Delete everything a run created or may have created. Idempotent; safe after any crash.

    With --stale, tear down every run not yet torn down whose last activity is older than
    --older-than; runs another process holds are skipped. Several of these may run at once.

    Example: job teardown --run-id abc123
    """
    from job.config import parse_duration
    from job.phases.stale import teardown_stale
    from job.phases.teardown import teardown
    from job.report import run_dict, run_text, stale_text

    settings = settings_from(ctx)
    if (run_id is None) == (not stale):
        raise BadInput("give either --run-id ID or --stale: `job teardown --help` shows both")
    if run_id is None:
        idle = parse_duration(older_than)
        with runtime(settings) as job:
            outcomes = teardown_stale(
                job.store,
                job.make_aws,
                older_than=idle,
                hold=job.ledger.hold,
                concurrency=settings.concurrency,
            )
            observed = observation(ctx)
            if observed is not None:
                observed.observe_stale(outcome.outcome for outcome in outcomes)
                observed.ledger_resources_live = job.store.count_live_resources()
        failed = [outcome for outcome in outcomes if outcome.outcome == "failed"]
        document = {
            "status": "error" if failed else "ok",
            "runs": [vars(outcome) for outcome in outcomes],
        }
        emit(settings, document, stale_text(outcomes))
        ctx.exit(4 if failed else 0)
    with runtime(settings) as job, reporting(ctx, job.store) as concern:
        aws = job.make_aws(job.store.get_run(run_id).region)
        concern.run_id = run_id
        with job.ledger.hold(run_id):
            run = teardown(job.store, aws, run_id=run_id, concurrency=settings.concurrency)
        emit(settings, run_dict(run, []), run_text(run, []))


@cli.command("sweep")
@click.option(
    "--older-than",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="With --execute: delete only what was created longer ago than this.",
)
@click.option("--execute", is_flag=True, help="Delete what is found (default: only list it).")
@click.pass_context
def sweep_command(ctx: click.Context, older_than: str, execute: bool) -> None:
    """Find resources tagged as this job's (of this --prefix) that the ledger does not account for.

    Lists them (a dry run) unless --execute, which deletes those that carry the job's managed-by
    tag and are older than --older-than.

    Example: job sweep --older-than 6h --execute
    """
    from job.config import parse_duration
    from job.phases.sweep import sweep
    from job.report import orphans_text

    settings = settings_from(ctx)
    idle = parse_duration(older_than)
    with runtime(settings) as job:
        orphans = sweep(
            job.store,
            job.make_aws(None),
            prefix=settings.prefix,
            older_than=idle,
            execute=execute,
            concurrency=settings.concurrency,
        )
    failed = [orphan for orphan in orphans if orphan.action == "failed"]
    document = {
        "status": "error" if failed else "ok",
        "executed": execute,
        "resources": [
            {**vars(orphan), "created_at": orphan.created_at.isoformat()} for orphan in orphans
        ],
    }
    emit(settings, document, orphans_text(orphans, execute))
    ctx.exit(4 if failed else 0)


@cli.command("runner-policy")
@click.pass_context
def runner_policy_command(ctx: click.Context) -> None:
    """Print the least-privilege IAM policy that the job's own credentials need, for --prefix,
    with ARNs in the partition of --region (aws, aws-cn, aws-us-gov, ...).

    Example: job runner-policy --prefix canary --region eu-west-1 > runner-policy.json
    """
    from job.aws.session import partition_for
    from job.permissions import runner_policy

    settings = settings_from(ctx)
    # The policy document itself, in either output mode: it is what an operator pastes.
    policy = runner_policy(settings.prefix, partition_for(settings.region))
    click.echo(json.dumps(policy, indent=2))


@cli.group("runs")
def runs_group() -> None:
    """Look at the runs in the ledger."""


def _ledger_store(settings: Settings) -> Any:
    from job.ledger.store import Store
    from job.runtime import Ledger

    @contextmanager
    def opened() -> Iterator[Any]:
        ledger = Ledger(settings.database_url).open()
        try:
            with ledger.session() as session:
                yield Store(session)
        finally:
            ledger.dispose()

    return opened()


@runs_group.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in RunStatus]),
    help="Only runs with this status.",
)
@click.pass_context
def runs_list_command(ctx: click.Context, status: str | None) -> None:
    """The runs in the ledger, newest first.

    Example: job runs list --status failed
    """
    from job.report import run_summary, runs_text

    settings = settings_from(ctx)
    with _ledger_store(settings) as store:
        runs = store.list_runs(RunStatus(status) if status else None)
    # One rendering only: a ledger may hold many thousands of runs.
    if settings.output == "json":
        click.echo(json.dumps({"status": "ok", "runs": [run_summary(run) for run in runs]}))
    else:
        click.echo(runs_text(runs))


@runs_group.command("show")
@click.argument("run_id")
@click.pass_context
def runs_show_command(ctx: click.Context, run_id: str) -> None:
    """One run: status, phases, resources with their states, checks.

    Example: job runs show abc123
    """
    from job.report import run_dict, run_text

    settings = settings_from(ctx)
    with _ledger_store(settings) as store:
        run = store.get_run(run_id)
        checks = store.latest_checks(run)
        emit(settings, run_dict(run, checks), run_text(run, checks))


@cli.group("db")
def db_group() -> None:
    """Manage the ledger's schema."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade_command(ctx: click.Context) -> None:
    """Apply ledger migrations (every other command does this by itself first).

    Example: job db upgrade
    """
    from job.runtime import Ledger, describe

    settings = settings_from(ctx)
    ledger = Ledger(settings.database_url)
    try:
        ledger.open()
    finally:
        ledger.dispose()
    emit(settings, {"status": "ok"}, f"ledger at {describe(settings.database_url)} is up to date")


class Terminated(BaseException):
    """SIGTERM (a scheduler stopping the job) unwinds the stack like Ctrl-C does, so that what
    must happen on the way out happens: verify deletes its keys, the attempt is recorded, the hold
    is released. Only kill -9 skips all that, and teardown copes with it."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the cleanup short
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit codes from the contract, one-line errors, no tracebacks."""
    given: dict[str, Any] = {}  # the global options, filled in while click parses
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        with cli.make_context(
            "job", list(sys.argv[1:] if argv is None else argv), obj=given
        ) as ctx:
            cli.invoke(ctx)
        code = 0
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.format_message())
        code = 0
    except click.ClickException as error:
        code = _fail(given, error.format_message(), 2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = _fail(given, _STOPPED.format("interrupted"), 130)
    except Terminated:
        code = _fail(given, _STOPPED.format("terminated (SIGTERM)"), 143)
    except JobError as error:
        code = _fail(given, error.message, error.exit_code)
    finally:
        status_line = given.get("_status_line")
        if status_line is not None:
            status_line.clear()
        if in_main_thread:  # main() may be called in-process (tests, embedding): put it back
            signal.signal(signal.SIGTERM, previous)
    if given.get("_observation") is not None:
        code = _write_metrics(given, code)
    sys.exit(code)


def _write_metrics(given: dict[str, Any], code: int) -> int:
    from job.metrics import write_metrics

    try:
        write_metrics(given["_settings"].metrics_file, given["_observation"], code)
    except OSError as error:
        # Checked writable when the command started, so rare; on stderr even with --output json,
        # whose one object on stdout is already out.
        click.echo(f"job: error: cannot write the metrics file: {error}", err=True)
        return max(code, 4)
    return code


_STOPPED = (
    "{}; what was done is recorded: run the same command again, or `job teardown --run-id ID`"
)


def _fail(given: dict[str, Any], message: str, exit_code: int) -> int:
    message = " ".join(message.split())
    if (given.get("output") or os.environ.get("JOB_OUTPUT")) == "json":
        click.echo(json.dumps({"status": "error", "error": message, "exit_code": exit_code}))
    else:
        click.echo(f"job: error: {message}", err=True)
    return exit_code
