"""The command line: parse, call one function, render. Each command takes the App (job.runtime)
that holds the settings, the ledger and AWS, and whose error boundary turns any failure into one
line and the contract's exit code.

Global options may stand before or after the command name; each is declared once and attached to
the group and to every command, and whichever is given last wins.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import click

from job.config import (
    DEFAULT_CONCURRENCY,
    DEFAULT_DATABASE_URL,
    DEFAULT_FLEET_ROLE,
    DEFAULT_LOG_FORMAT,
    DEFAULT_OUTPUT,
    DEFAULT_PREFIX,
    CommandLine,
    LogFormat,
    OutputFormat,
    Settings,
    parse_duration,
)
from job.errors import BadInput, ExitCode, JobError
from job.ledger.states import RunStatus, RunVerdict
from job.runtime import App, CallHook

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("job")


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is None or value == 0:
        return value
    command_line: CommandLine = ctx.find_root().obj.command_line
    assert param.name is not None and hasattr(command_line, param.name), param.name
    if param.name == "verbosity":
        command_line.verbosity += value
    else:
        setattr(command_line, param.name, value)
    return value


def global_options(function: F) -> F:
    options = [
        click.option(
            "--database-url",
            metavar="URL",
            help=f"Ledger URL [env JOB_DATABASE_URL; default {DEFAULT_DATABASE_URL}].",
        ),
        click.option("--region", metavar="REGION", help="AWS region [env AWS_REGION]."),
        click.option(
            "--prefix",
            metavar="PREFIX",
            help="Start of every created resource's name "
            f"[env JOB_PREFIX; default {DEFAULT_PREFIX}].",
        ),
        click.option(
            "--output",
            type=click.Choice([output.value for output in OutputFormat]),
            help=f"Output format [env JOB_OUTPUT; default {DEFAULT_OUTPUT}].",
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
            help="At most N AWS calls at once "
            f"[env JOB_CONCURRENCY; default {DEFAULT_CONCURRENCY}].",
        ),
        click.option(
            "--log-format",
            type=click.Choice([log_format.value for log_format in LogFormat]),
            help="Logs on stderr as lines or as one JSON object each "
            f"[env JOB_LOG_FORMAT; default {DEFAULT_LOG_FORMAT}].",
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
    # Collected into the App's options by _remember, not passed to the function.
    for param in getattr(function, "__click_params__", [])[-len(options) :]:
        param.expose_value = False
        param.callback = _remember
        param.is_eager = False
    return function


def junit_path(value: str | None) -> str | None:
    from job.files import check_writable

    return None if value is None else check_writable(value, "--junit-xml")


@dataclass
class Concern:
    """The run a command concerns and, when it failed, why: what its reports must say. The App
    hears the run's id too, so that an interrupted command names the real run in its hint."""

    app: App
    run_id: str | None = None
    error: str | None = None

    def found(self, run_id: str) -> None:
        self.run_id = self.app.run_id = run_id


@contextmanager
def reporting(app: App, junit_xml: str | None = None) -> Iterator[Concern]:
    """Around a command's work on one run: when it ends, however it ends, the run goes into the
    metrics and the JUnit report. The command sets the run's id as soon as it knows it."""
    concern = Concern(app)
    try:
        yield concern
    except JobError as failure:
        concern.error = failure.message
        raise
    finally:
        if concern.run_id and (junit_xml is not None or app.observation is not None):
            _report_run(app, concern.run_id, junit_xml, concern.error)


def _report_run(app: App, run_id: str, junit_xml: str | None, error: str | None) -> None:
    from job.junit import write_junit

    try:
        run = app.store.get_run(run_id)
        checks = app.store.latest_checks(run)
        if app.observation is not None:
            app.observation.observe_run(run, checks)
            app.observation.ledger_resources_live = app.store.count_live_resources()
        if junit_xml is not None:
            write_junit(junit_xml, run, checks, error)
    except Exception as failure:
        # The command's own outcome matters more; the missing report is said, not raised over it.
        log.error("could not write the reports of run %s: %s", run_id, app.failure(failure).message)


def run_options(settings: Settings) -> Any:
    from job.scenario import RunOptions

    return RunOptions(settings.permissions_boundary, settings.require_tls)


def emit(app: App, document: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(document) if app.output is OutputFormat.JSON else text)


def finish(app: App, document: dict[str, Any], text: str, error: str | None) -> None:
    """End a command that reports many things (runs, resources) of which some failed: its one
    document still carries a top-level one-line error and exit 4; text output says it last."""
    if error is None:
        emit(app, document, text)
        return
    code = ExitCode.NOT_FINISHED
    emit(app, {**document, "status": "error", "error": error, "exit_code": code}, text)
    if app.output is not OutputFormat.JSON:
        click.echo(f"job: error: {error}", err=True)
    raise click.exceptions.Exit(code)


def some_failed(failures: list[str], total: int, what: str) -> str | None:
    if not failures:
        return None
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    return f"{len(failures)} of {total} {what} failed: {failures[0]}{more}"


class JobGroup(click.Group):
    """Every command and subgroup under it takes the global options too, and tells the App its
    name (the metrics are labelled with it)."""

    def command(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Command]:
        decorator = super().command(*args, **kwargs)
        return lambda function: decorator(global_options(_named(function)))

    def group(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Group]:
        kwargs.setdefault("cls", JobGroup)
        decorator = super().group(*args, **kwargs)
        return lambda function: decorator(global_options(function))


def _named(function: F) -> F:
    @functools.wraps(function)
    def named(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        ctx.find_root().obj.command = ctx.command_path.removeprefix("job ")
        return function(*args, **kwargs)

    return cast(F, named)


@click.group(cls=JobGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
def cli() -> None:
    """Provision AWS resources, prove their permissions, tear them down; every resource is recorded
    in a ledger first, so nothing is ever left behind.

    Example: job run --emulator
    """


SCENARIO = click.option(
    "--scenario",
    metavar="FILE",
    expose_value=False,
    callback=_remember,
    help="The scenario file a new run proves (YAML or JSON; `job scenario schema`) "
    "[env JOB_SCENARIO; default the built-in seed].",
)

JUNIT_XML = click.option(
    "--junit-xml",
    metavar="PATH",
    help="Also write the checks as a JUnit XML report here (one test case per check).",
)

# The phases, the ledger and boto3 are imported inside the commands that use them: `job --help`
# and `job runner-policy` should not pay for SQLAlchemy's ORM and boto3 (most of a second).


MEASURE_REVOCATION = click.option(
    "--measure-revocation",
    is_flag=True,
    help="After verify deletes each user's key, time how long AWS still accepts it.",
)


@cli.command("run")
@click.option("--keep", is_flag=True, help="Leave the resources in place (skip teardown).")
@SCENARIO
@JUNIT_XML
@MEASURE_REVOCATION
@click.pass_obj
def run_command(app: App, keep: bool, junit_xml: str | None, measure_revocation: bool) -> None:
    """Provision, verify, then tear down (always, unless --keep). The run proves --scenario, or
    the built-in seed; the scenario's text is stored with the run.

    Exit code: verify's by its verdict (0 passed, 1 failed, 4 incomplete: some check not
    answered), or 4 when a phase or the teardown could not finish.

    Example: job run --scenario examples/three-principals.yaml
    """
    from job.phases.run import run_all
    from job.report import run_dict, run_text
    from job.scenario_file import source_for

    settings = app.settings
    junit_xml = junit_path(junit_xml)
    scenario = source_for(settings.scenario)  # an invalid file is refused before anything is made
    with reporting(app, junit_xml) as concern:
        outcome = run_all(
            app.store,
            app.aws(),
            prefix=settings.prefix,
            options=run_options(settings),
            hold=app.ledger.hold,
            keep=keep,
            started=concern.found,
            concurrency=settings.concurrency,
            measure_revocation=measure_revocation,
            scenario=scenario,
        )
        run = app.store.get_run(outcome.run.id)
        checks = app.store.latest_checks(run)
        document = run_dict(run, checks)
        text = run_text(run, checks)
        if outcome.error is not None:  # returned as an exit code, not raised: reports still say it
            concern.error = document["error"] = outcome.error.message
            text += f"\nerror: {outcome.error.message}"
        elif run.verdict is RunVerdict.INCOMPLETE:
            # Not an error of the job's, but the report must not be green: the verdict says why.
            concern.error = document["error"] = run.verdict_summary
        document["exit_code"] = outcome.exit_code
        emit(app, document, text)
    raise click.exceptions.Exit(outcome.exit_code)


@cli.command("provision")
@click.option("--run-id", help="Resume this run instead of starting a new one.")
@SCENARIO
@click.pass_obj
def provision_command(app: App, run_id: str | None) -> None:
    """Start a new run (or resume one) and create its resources; prints the run id. A new run
    proves --scenario, or the built-in seed; a resumed run keeps the scenario it started with.

    Example: job provision --scenario examples/three-principals.yaml
    """
    from job.phases.provision import provision, start_run
    from job.report import run_dict
    from job.scenario_file import source_for

    settings = app.settings
    with reporting(app) as concern:
        if run_id is None:
            scenario = source_for(settings.scenario)
            run_id = start_run(
                app.store, app.aws(), settings.prefix, run_options(settings), scenario
            ).id
        with app.held_run(run_id, found=concern.found) as aws:
            run = provision(app.store, aws, run_id=run_id, concurrency=settings.concurrency)
        # Text output is the run id alone, so that scripts can say RUN=$(job provision).
        emit(app, run_dict(run, []), run.id)


@cli.command("verify")
@click.option("--run-id", required=True, help="The run to verify.")
@JUNIT_XML
@MEASURE_REVOCATION
@click.pass_obj
def verify_command(app: App, run_id: str, junit_xml: str | None, measure_revocation: bool) -> None:
    """Check every principal's real permissions against the expected matrix. Exit code by the
    run's verdict: 0 passed, 1 failed (a check answered otherwise than expected), 4 incomplete
    (none differed, but some check has no answer; the summary says why).

    Example: job verify --run-id abc123
    """
    from job.phases.run import verdict_exit_code
    from job.phases.verify import verify
    from job.report import run_dict, run_text

    junit_xml = junit_path(junit_xml)
    with reporting(app, junit_xml) as concern, app.held_run(run_id, concern.found) as aws:
        run = verify(
            app.store,
            aws,
            run_id=run_id,
            concurrency=app.settings.concurrency,
            measure_revocation=measure_revocation,
        )
        checks = app.store.latest_checks(run)
        code = verdict_exit_code(run.verdict)
        document = {**run_dict(run, checks), "exit_code": code}
        if code == ExitCode.NOT_FINISHED:
            concern.error = document["error"] = run.verdict_summary
        emit(app, document, run_text(run, checks, show_resources=False))
    raise click.exceptions.Exit(code)


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
@click.pass_obj
def teardown_command(app: App, run_id: str | None, stale: bool, older_than: str) -> None:
    """Delete everything a run created or may have created. Idempotent; safe after any crash.

    With --stale, tear down every run not yet torn down whose last activity is older than
    --older-than; runs another process holds are skipped. Several of these may run at once.

    Example: job teardown --run-id abc123
    """
    from job.phases.teardown import teardown
    from job.report import run_dict, run_text

    if (run_id is None) == (not stale):
        raise BadInput("give either --run-id ID or --stale: `job teardown --help` shows both")
    if run_id is None:
        _teardown_stale(app, parse_duration(older_than))
        return
    with reporting(app) as concern, app.held_run(run_id, concern.found) as aws:
        run = teardown(app.store, aws, run_id=run_id, concurrency=app.settings.concurrency)
        emit(app, run_dict(run, []), run_text(run, []))


def _teardown_stale(app: App, idle: timedelta) -> None:
    from job.phases.stale import StaleResult, teardown_stale
    from job.report import stale_text

    outcomes = teardown_stale(
        app.store,
        app.aws,
        older_than=idle,
        hold=app.ledger.hold,
        concurrency=app.settings.concurrency,
    )
    if app.observation is not None:
        app.observation.observe_stale(outcome.outcome for outcome in outcomes)
        app.observation.ledger_resources_live = app.store.count_live_resources()
    failures = [f"run {o.run_id}: {o.error}" for o in outcomes if o.outcome is StaleResult.FAILED]
    document = {"status": "ok", "runs": [vars(outcome) for outcome in outcomes]}
    error = some_failed(failures, len(outcomes), "stale runs' teardowns")
    finish(app, document, stale_text(outcomes), error)


@cli.command("sweep")
@click.option(
    "--older-than",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="With --execute: delete only what was created longer ago than this.",
)
@click.option("--execute", is_flag=True, help="Delete what is found (default: only list it).")
@click.pass_obj
def sweep_command(app: App, older_than: str, execute: bool) -> None:
    """Find resources tagged as this job's (of this --prefix) that the ledger does not account for.

    Lists them (a dry run) unless --execute, which deletes those that carry the job's managed-by
    tag and are older than --older-than.

    Example: job sweep --older-than 6h --execute
    """
    from job.phases.sweep import SweepAction, sweep
    from job.report import orphans_text

    idle = parse_duration(older_than)
    settings = app.settings
    orphans = sweep(
        app.store,
        app.aws(),
        prefix=settings.prefix,
        older_than=idle,
        execute=execute,
        concurrency=settings.concurrency,
    )
    document = {
        "status": "ok",
        "executed": execute,
        "resources": [
            {**vars(orphan), "created_at": orphan.created_at.isoformat()} for orphan in orphans
        ],
    }
    failures = [f"{o.kind} {o.name}: {o.error}" for o in orphans if o.action is SweepAction.FAILED]
    error = some_failed(failures, len(orphans), "deletions")
    finish(app, document, orphans_text(orphans, execute), error)


@cli.command("runner-policy")
@SCENARIO
@click.option(
    "--janitor",
    is_flag=True,
    help="Add the grant that removes what others hung on the job's users and roles (a group "
    "membership, an MFA device, an instance profile); without it teardown stops and names them.",
)
@click.pass_obj
def runner_policy_command(app: App, janitor: bool) -> None:
    """Print the least-privilege IAM policy that the job's own credentials need, for --prefix,
    with ARNs in the partition of --region (aws, aws-cn, aws-us-gov, ...). With --scenario, only
    what that scenario's runs create and probe need; without, every kind the job knows (what a
    janitor tearing down runs of any scenario needs). Every IAM write in it is scoped to the job's
    own users, roles and policies; --janitor adds the statements that act on someone else's group,
    MFA device or instance profile, to take the job's principals out of them.

    Example: job runner-policy --prefix canary --region eu-west-1 > runner-policy.json
    """
    from job.aws.session import partition_for
    from job.permissions import runner_policy

    settings = app.settings
    partition = partition_for(settings.region)
    kinds = None
    existing_roles: list[str] = []
    if settings.scenario is not None:
        from job.naming import Naming
        from job.scenario_file import compile_source, read_source, scenario_kinds

        scenario = compile_source(
            read_source(settings.scenario), Naming.placeholder(settings.prefix, partition)
        )
        kinds = scenario_kinds(scenario)
        existing_roles = list(scenario.existing_roles.values())
    # The policy document itself, in either output mode: it is what an operator pastes.
    policy = runner_policy(
        settings.prefix, partition, kinds=kinds, janitor=janitor, existing_roles=existing_roles
    )
    click.echo(json.dumps(policy, indent=2))


@cli.group("runs")
def runs_group() -> None:
    """Look at the runs in the ledger."""


@runs_group.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in RunStatus]),
    help="Only runs with this status.",
)
@click.option(
    "--verdict",
    type=click.Choice([verdict.value for verdict in RunVerdict]),
    help="Only runs whose latest verify had this verdict (kept through teardown).",
)
@click.pass_obj
def runs_list_command(app: App, status: str | None, verdict: str | None) -> None:
    """The runs in the ledger, newest first, with each one's status and verdict.

    Example: job runs list --verdict failed
    """
    from job.report import run_summary, runs_text

    runs = app.store.list_runs(
        RunStatus(status) if status else None, verdict=RunVerdict(verdict) if verdict else None
    )
    # One rendering only: a ledger may hold many thousands of runs.
    if app.output is OutputFormat.JSON:
        click.echo(json.dumps({"status": "ok", "runs": [run_summary(run) for run in runs]}))
    else:
        click.echo(runs_text(runs))


@runs_group.command("show")
@click.argument("run_id")
@click.pass_obj
def runs_show_command(app: App, run_id: str) -> None:
    """One run: status, phases with their outcomes and errors, resources with their states,
    checks, and the verdict.

    Example: job runs show abc123
    """
    from job.report import run_dict, run_text

    run = app.store.get_run(run_id)
    checks = app.store.latest_checks(run)
    emit(app, run_dict(run, checks), run_text(run, checks, show_phases=True))


@cli.group("scenario")
def scenario_group() -> None:
    """Scenario files: what a run creates, and the permissions it proves."""


@scenario_group.command("validate")
@click.argument("file")
@click.pass_obj
def scenario_validate_command(app: App, file: str) -> None:
    """Check a scenario file against the schema and its cross-references: exit 0, or 2 with one
    line naming the place in the file.

    Example: job scenario validate examples/three-principals.yaml
    """
    from job.scenario_file import read_source, validate

    source = read_source(file)
    document = validate(source)
    counts = {
        section: len(document.get(section) or {})
        for section in ("buckets", "users", "groups", "roles", "expect")
    }
    emit(
        app,
        {
            "status": "ok",
            "file": file,
            "scenario_sha256": source.sha256,
            "policy_files": sorted(source.files),
            **counts,
        },
        f"{file}: valid ({counts['buckets']} buckets, {counts['users']} users, "
        f"{counts['groups']} groups, {counts['roles']} roles, {counts['expect']} checks)",
    )


@scenario_group.command("show")
@click.argument("file", required=False)
@click.option("--run-id", help="Show the scenario stored with this run, with its real names.")
@click.pass_obj
def scenario_show_command(app: App, file: str | None, run_id: str | None) -> None:
    """Print a scenario resolved: every resource with its name, every check with its ARN. FILE,
    else --scenario or JOB_SCENARIO, else the built-in seed, named with a placeholder run id for
    --prefix; or, with --run-id, what that run stored, with its real names.

    Example: job scenario show examples/three-principals.yaml --prefix canary
    """
    from job.naming import Naming
    from job.report import scenario_dict, scenario_text
    from job.scenario_file import compile_source, source_for

    settings = app.settings
    if run_id is not None:
        if file is not None:
            raise BadInput("give either a FILE or --run-id ID, not both")
        from job.phases.common import naming_of, scenario_of

        run = app.store.get_run(run_id)
        naming = naming_of(run)
        scenario = scenario_of(run)
        origin = f"run {run.id}" + ("" if run.scenario else " (the seed: it predates scenarios)")
        prefix, sha256 = run.prefix, run.scenario_sha256
    else:
        from job.aws.session import partition_for

        source = source_for(file or settings.scenario)
        naming = Naming.placeholder(settings.prefix, partition_for(settings.region))
        scenario = compile_source(source, naming, run_options(settings))
        origin, prefix, sha256 = source.origin, settings.prefix, source.sha256
    document = {
        "status": "ok",
        "run_id": run_id,
        "source": origin,
        "prefix": prefix,
        "scenario_sha256": sha256,
        "scenario": scenario_dict(scenario, naming),
    }
    headline = f"{origin}: prefix {prefix}, run id {naming.run_id}"
    emit(app, document, scenario_text(scenario, naming, headline))


@scenario_group.command("schema")
@click.pass_obj
def scenario_schema_command(app: App) -> None:
    """Print the JSON Schema (Draft 2020-12) scenario files are held to, in either output mode.

    Example: job scenario schema > scenario.schema.json
    """
    from job.scenario_file import SCHEMA

    click.echo(json.dumps(SCHEMA, indent=2))


@cli.group("fleet")
def fleet_group() -> None:
    """The same scenario in many accounts and regions: plan a batch, work it from any number of
    processes, show its verdicts."""


@fleet_group.command("plan")
@click.option("--accounts", metavar="ID,ID,...", help="The accounts, by id, comma-separated.")
@click.option("--accounts-file", metavar="FILE", help="The accounts, one id per line (# comments).")
@click.option(
    "--organization",
    is_flag=True,
    help="The organization's active accounts (organizations:ListAccounts).",
)
@click.option(
    "--ou", "ous", metavar="OU_ID", multiple=True, help="With --organization: only under this OU."
)
@click.option(
    "--regions", metavar="R,R,...", help="The regions, comma-separated [default: --region's]."
)
@click.option(
    "--role-name",
    default=DEFAULT_FLEET_ROLE,
    show_default=True,
    metavar="NAME",
    help="The role assumed in each account: arn:<partition>:iam::<account>:role/NAME.",
)
@click.option("--external-id", metavar="X", help="The external id the role's trust requires.")
@click.option(
    "--batch-id",
    metavar="ID",
    help="Name the batch (a scheduler's Job name); planning it again the same way is a no-op.",
)
@SCENARIO
@click.pass_obj
def fleet_plan_command(
    app: App,
    accounts: str | None,
    accounts_file: str | None,
    organization: bool,
    ous: tuple[str, ...],
    regions: str | None,
    role_name: str,
    external_id: str | None,
    batch_id: str | None,
) -> None:
    """Record a batch: one item per (account, region), pending; prints the batch id. The
    scenario (--scenario, or the built-in seed) is stored with the batch.

    Example: job fleet plan --accounts 111111111111,222222222222 --regions us-east-1,eu-west-1
    """
    from job.fleet import (
        check_external_id,
        check_role_name,
        organization_accounts,
        parse_accounts,
        parse_regions,
        plan_batch,
        read_accounts_file,
    )
    from job.ledger.batches import Batches
    from job.scenario_file import source_for

    settings = app.settings
    given = [
        name
        for name, value in (
            ("--accounts", accounts),
            ("--accounts-file", accounts_file),
            ("--organization", organization),
        )
        if value
    ]
    if len(given) != 1:
        raise BadInput(
            "give one of --accounts ID,..., --accounts-file FILE or --organization"
            + (f" (not {' and '.join(given)})" if given else "")
        )
    if ous and not organization:
        raise BadInput("--ou works with --organization: give both, or neither")
    check_role_name(role_name)
    check_external_id(external_id)
    # Without --regions, the region a new run would have: --region, AWS_REGION, the profile's.
    region_list = parse_regions(regions.split(",") if regions else [app.aws().region])
    scenario = source_for(settings.scenario)  # an invalid file is refused before anything
    if accounts is not None:
        account_list = parse_accounts(accounts.split(","), "--accounts")
    elif accounts_file is not None:
        account_list = read_accounts_file(accounts_file)
    else:
        account_list = organization_accounts(app.aws(), ous)
    batch, created = plan_batch(
        Batches(app.store),
        batch_id=batch_id,
        accounts=account_list,
        regions=region_list,
        role_name=role_name,
        external_id=external_id,
        prefix=settings.prefix,
        options=run_options(settings),
        scenario=scenario,
    )
    document = {
        "status": "ok",
        "batch_id": batch.id,
        "created": created,
        "items": len(batch.items),
        "accounts": len(account_list),
        "regions": region_list,
    }
    # Text output is the batch id alone, so that scripts can say BATCH=$(job fleet plan ...).
    emit(app, document, batch.id)


BATCH = click.option("--batch", "batch_id", required=True, metavar="ID", help="The batch.")


@fleet_group.command("work")
@BATCH
@click.option("--max-items", type=click.IntRange(min=1), metavar="N", help="Stop after N items.")
@click.pass_obj
def fleet_work_command(app: App, batch_id: str, max_items: int | None) -> None:
    """Claim the batch's items one at a time and run the scenario in each account through its
    role, until none is left to claim; any number of these may work one batch at once (on a
    PostgreSQL ledger). A worker killed at any point loses nothing: its item is taken over by
    the next, which tears down what it left first. Exit 0 when nothing is left, whatever the
    verdicts (`job fleet show` has them).

    Example: job fleet work --batch b20261207-abc
    """
    from job.fleet import Worker
    from job.ledger.batches import Batches

    def finished(item: Any) -> None:
        log.info(
            "item %s (%s, %s): %s%s",
            item.id,
            item.account_id,
            item.region,
            item.verdict,
            f": {item.error}" if item.error else "",
        )

    worker = Worker(
        app.ledger,
        Batches(app.store),
        app.aws,
        batch_id,
        concurrency=app.settings.concurrency,
        finished=finished,
    )
    done = worker.work(max_items)
    emit(app, {"status": "ok", "batch_id": batch_id, "items_done": done}, f"{done} items done")


@fleet_group.command("show")
@BATCH
@JUNIT_XML
@click.pass_obj
def fleet_show_command(app: App, batch_id: str, junit_xml: str | None) -> None:
    """One row per item: account, region, status, verdict, run id, seconds, error; and the
    totals. Exit 0 when every item passed, 1 when any failed, 4 when any is incomplete or not
    done yet.

    Example: job fleet show --batch b20261207-abc --output json
    """
    from job.fleet import batch_status, show_exit_code, totals
    from job.ledger.batches import Batches
    from job.report import fleet_items_text

    junit_xml = junit_path(junit_xml)
    batches = Batches(app.store)
    batch = batches.get(batch_id)
    rows = batches.items(batch.id)
    counted = totals(rows)
    status = batch_status(Counter(row.status for row in rows))
    code = show_exit_code(rows)
    if junit_xml is not None:
        from job.junit import write_fleet_junit

        write_fleet_junit(junit_xml, batch.id, rows)
    if app.observation is not None:
        app.observation.fleet_items = Counter(
            row.verdict.value if row.verdict is not None else "none" for row in rows
        )
    if app.output is OutputFormat.JSON:
        items = [
            {
                "account": row.account_id,
                "region": row.region,
                "status": row.status.value,
                "verdict": row.verdict.value if row.verdict is not None else None,
                "run_id": row.run_id,
                "seconds": row.seconds,
                "error": row.error,
            }
            for row in rows
        ]
        document = {
            "batch_id": batch.id,
            "status": status,
            "items": items,
            "totals": counted,
            "exit_code": code,
        }
        click.echo(json.dumps(document))
    else:
        click.echo(fleet_items_text(batch.id, status, rows, counted))
    raise click.exceptions.Exit(code)


@fleet_group.command("teardown")
@BATCH
@click.pass_obj
def fleet_teardown_command(app: App, batch_id: str) -> None:
    """Tear down every run of the batch that is not torn down, each in its account through the
    batch's role. Idempotent; runs a worker is working on are left to it (and said).

    Example: job fleet teardown --batch b20261207-abc
    """
    from job.fleet import teardown_batch
    from job.ledger.batches import Batches

    torn_down, failures = teardown_batch(
        app.ledger, Batches(app.store), app.aws, batch_id, app.settings.concurrency
    )
    document = {
        "status": "ok",
        "batch_id": batch_id,
        "torn_down": torn_down,
        "failures": [vars(failure) for failure in failures],
    }
    text = f"batch {batch_id}: {len(torn_down)} runs torn down"
    error = some_failed(
        [f"run {f.run_id}: {f.error}" for f in failures],
        len(torn_down) + len(failures),
        "teardowns",
    )
    finish(app, document, text, error)


@fleet_group.command("list")
@click.pass_obj
def fleet_list_command(app: App) -> None:
    """The batches, newest first, with their items counted by status and verdict.

    Example: job fleet list --output json
    """
    from job.ledger.batches import Batches
    from job.report import batches_text

    rows = Batches(app.store).summaries()
    batches = [
        {
            "batch_id": row.id,
            "created_at": row.created_at.isoformat(),
            "items": row.items or 0,
            "done": row.done or 0,
            **{verdict.value: getattr(row, verdict.value) or 0 for verdict in RunVerdict},
        }
        for row in rows
    ]
    emit(app, {"status": "ok", "batches": batches}, batches_text(batches))


@cli.group("db")
def db_group() -> None:
    """Manage the ledger's schema."""


@db_group.command("upgrade")
@click.pass_obj
def db_upgrade_command(app: App) -> None:
    """Apply ledger migrations (every other command does this by itself first).

    Example: job db upgrade
    """
    from job.ledger.engine import describe

    app.ledger  # noqa: B018 - opening the ledger is what upgrades it
    where = describe(app.settings.database_url)
    emit(app, {"status": "ok"}, f"ledger at {where} is up to date")


class Terminated(BaseException):
    """SIGTERM (a scheduler stopping the job) unwinds the stack like Ctrl-C does, so that what
    must happen on the way out happens: verify deletes its keys, the attempt is recorded, the hold
    is released. Only kill -9 skips all that, and teardown copes with it."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the cleanup short
    raise Terminated


def main(argv: list[str] | None = None, *, call_hooks: Sequence[CallHook] = ()) -> None:
    """Entry point: exit codes from the contract, one-line errors, no tracebacks. `call_hooks`
    go on every AWS client the job makes (tests count calls and inject faults with them)."""
    app = App(call_hooks=call_hooks)
    args = list(sys.argv[1:] if argv is None else argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        try:
            with cli.make_context("job", args, obj=app) as ctx:
                cli.invoke(ctx)
        finally:
            app.close()
        code: int = ExitCode.DONE
    except click.exceptions.Exit as done:
        code = done.exit_code
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.format_message())
        code = ExitCode.DONE
    except click.ClickException as error:
        # Parsing stopped before --output was read, perhaps: look for it on the line itself.
        code = _fail(app, error.format_message(), ExitCode.BAD_INPUT, args)
    except (click.exceptions.Abort, KeyboardInterrupt):
        code = _fail(app, _stopped(app, "interrupted"), ExitCode.INTERRUPTED)
    except Terminated:
        code = _fail(app, _stopped(app, "terminated (SIGTERM)"), ExitCode.TERMINATED)
    except Exception as error:  # the one boundary: every failure is one line and an exit code
        failure = app.failure(error)
        code = _fail(app, failure.message, failure.exit_code)
    finally:
        if in_main_thread:  # main() may be called in-process (tests, embedding): put it back
            signal.signal(signal.SIGTERM, previous)
    if app.observation is not None:
        code = _write_metrics(app, code)
    sys.exit(code)


def _write_metrics(app: App, code: int) -> int:
    from job.metrics import write_metrics

    assert app.observation is not None and app.settings.metrics_file is not None
    try:
        write_metrics(app.settings.metrics_file, app.observation, code)
    except OSError as error:
        # Checked writable when the command started, so rare; on stderr even with --output json,
        # whose one object on stdout is already out.
        click.echo(f"job: error: cannot write the metrics file: {error}", err=True)
        return max(code, ExitCode.NOT_FINISHED)
    return code


# The commands that change nothing in AWS or the ledger: stopping one leaves nothing to resume.
_READ_ONLY = ("scenario", "runs", "runner-policy", "fleet show", "fleet list")


def _stopped(app: App, how: str) -> str:
    """What a stopped command says, naming the run it was working on, if any."""
    if app.command in _READ_ONLY or app.command.split(" ")[0] in _READ_ONLY:
        return f"{how}; nothing was changed"
    if app.run_id is not None:
        return (
            f"{how}; what was done is recorded: run the same command again, or "
            f"`job teardown --run-id {app.run_id}`"
        )
    return f"{how}; what was done is recorded: run the same command again"


def _output_on_the_line(args: list[str]) -> str | None:
    """The last --output given on the command line, read without click (which may have stopped
    before it)."""
    found = None
    for index, arg in enumerate(args):
        if arg == "--output" and index + 1 < len(args):
            found = args[index + 1]
        elif arg.startswith("--output="):
            found = arg.removeprefix("--output=")
    return found


def _fail(app: App, message: str, exit_code: int, args: list[str] | None = None) -> int:
    message = " ".join(message.split())
    output = (_output_on_the_line(args) if args is not None else None) or app.output
    if output == OutputFormat.JSON:
        click.echo(json.dumps({"status": "error", "error": message, "exit_code": exit_code}))
    else:
        click.echo(f"job: error: {message}", err=True)
    return exit_code
