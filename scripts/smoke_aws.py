"""`make smoke-aws`: the whole job once against a real AWS account, then proof nothing is left.

For an operator with a sandbox account and credentials in boto3's standard chain. It drives the
virtualenv's `job` console script in subprocesses, exactly as the operator would type it, with
`--output json`, a prefix no other run uses and a fresh SQLite ledger:

    job --prefix P --database-url sqlite:///DIR/job.db --output json run     exit 0, torn_down
    job ... runs show RUN                                                    every resource deleted
    job ... sweep --older-than 0s                                            (a dry run) nothing

On any failure it tears the run down once more, looks again, and reports on stderr what is left
and the commands that clean it up; the ledger is then kept. Every other setting (JOB_CONCURRENCY,
JOB_PROPAGATION_TIMEOUT, JOB_LOG_LEVEL...) passes through from the environment untouched.

Exit codes, in the contract's spirit: 0 all done and nothing left; 1 a permission differed (and
nothing is left); 2 refused (the emulator, an argument, no region or credentials), nothing
created; 4 something is or may be left, or AWS or the ledger failed; 130 or 143 interrupted.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

NAME = "smoke-aws"
# The console script installed beside the interpreter running this: the Makefile runs the venv's.
JOB = str(Path(sys.executable).parent / "job")
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
USAGE = "usage: make smoke-aws   (no arguments; AWS credentials and AWS_REGION in the environment)"
RULE = "=" * 78


class Refused(Exception):
    """Nothing was started: one line for the operator, and an exit code."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str
    region: str
    endpoint: str | None


@dataclass
class Call:
    """One `job` command: its line, exit code and the one JSON object it printed (or None)."""

    command: list[str]
    exit_code: int
    document: dict[str, Any] | None

    @property
    def line(self) -> str:
        return shlex.join(self.command)

    @property
    def error(self) -> str:
        if self.document is None:
            return "it printed no JSON object on stdout (its stderr is above)"
        return str(self.document.get("error") or "")


@dataclass
class Findings:
    """What is or may be left: the run's ledger rows not deleted, what sweep finds outside any
    ledger, and why either could not be told (which counts as possibly left)."""

    in_ledger: list[dict[str, Any]] = field(default_factory=list)
    in_sweep: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.in_ledger or self.in_sweep or self.unknown)


class Signals:
    """Ctrl-C reaches `job` itself (the terminal signals the whole foreground process group), and
    `job` stops in order: verify deletes its keys, `job run` tears down. Python's default here, a
    KeyboardInterrupt, would make subprocess kill the job 0.25 s later, mid-call; so this process
    only remembers, and passes on SIGTERM, which a scheduler sends to this process alone."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.child: subprocess.Popen[str] | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        if signum == signal.SIGTERM and self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)


def say(message: str) -> None:
    print(f"{NAME}: {message}", file=sys.stderr, flush=True)


def refusal(args: list[str], environ: dict[str, str]) -> str | None:
    """Why this must not start, or None. Against an emulator it would prove nothing about AWS, and
    `make run` is the way there."""
    if environ.get("JOB_EMULATOR"):
        return "JOB_EMULATOR is set: this target is for a real AWS account (use `make run`)"
    if "--emulator" in args:
        return "--emulator given: this target is for a real AWS account (use `make run`)"
    if args:
        return f"unexpected argument(s) {shlex.join(args)}; {USAGE}"
    if not Path(JOB).is_file():
        return f"no `job` console script beside {sys.executable}: run `make install`"
    return None


def identify(environ: dict[str, str]) -> Identity:
    """The account and region `job` will use, resolved as `job` resolves them, before anything
    is created: the operator sees where it goes, and missing settings fail here, not mid-run."""
    session = boto3.session.Session()
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or session.region_name
    if not region:
        raise Refused("no AWS region: set AWS_REGION (or a region in the AWS profile)")
    try:
        caller = session.client("sts", region_name=region).get_caller_identity()
    except NoCredentialsError:
        raise Refused(
            "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except (ClientError, BotoCoreError) as error:
        raise Refused(f"cannot ask STS who these credentials are: {error}", 4) from None
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    return Identity(caller["Account"], caller["Arn"], region, endpoint)


def new_prefix() -> str:
    # 36**6 prefixes: two operators' smoke runs, or a leftover of an earlier one, never share one,
    # so what carries this prefix is this run's and sweep may delete all of it.
    return "smoke-" + "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(6))


class Smoke:
    def __init__(self, prefix: str, directory: Path, signals: Signals) -> None:
        self.prefix = prefix
        self.directory = directory
        self.database_url = f"sqlite:///{directory}/job.db"
        self.signals = signals
        self.run_id: str | None = None
        self.problems: list[str] = []
        self.exit_codes: list[int] = []

    def command(self, *args: str) -> list[str]:
        return [JOB, "--prefix", self.prefix, "--database-url", self.database_url, *args]

    def job(self, *args: str) -> Call:
        command = self.command("--output", "json", *args)
        # stderr (the job's logs) goes straight to the operator; stdout is the JSON object.
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
            self.signals.child = process
            stdout, _ = process.communicate()
        self.signals.child = None
        try:
            document = json.loads(stdout)
        except json.JSONDecodeError:
            document = None
        call = Call(command, process.returncode, document if isinstance(document, dict) else None)
        self.exit_codes.append(call.exit_code)
        return call

    def failed(self, call: Call, what: str) -> None:
        self.problems.append(f"`{call.line}` exited {call.exit_code}: {what}")

    def find_run(self) -> str | None:
        """The run `job run` started, when its output does not say (it failed early): the ledger
        is this smoke's own, so any run in it is this one."""
        listed = self.job("runs", "list")
        runs = (listed.document or {}).get("runs") or []
        return str(runs[0]["run_id"]) if listed.exit_code == 0 and runs else None

    def findings(self) -> Findings:
        found = Findings()
        if self.run_id is not None:
            shown = self.job("runs", "show", self.run_id)
            if shown.exit_code != 0 or shown.document is None:
                found.unknown.append(f"the ledger could not be read: {shown.error}")
            else:
                resources = shown.document.get("resources", [])
                found.in_ledger = [row for row in resources if row.get("state") != "deleted"]
                if not resources:
                    found.unknown.append("the ledger has no resources for the run: none to prove")
        # After a clean teardown the ledger accounts for nothing, so sweep lists everything of
        # this prefix that still carries the job's tags.
        swept = self.job("sweep", "--older-than", "0s")
        if swept.exit_code != 0 or swept.document is None:
            found.unknown.append(f"sweep could not list the account: {swept.error}")
        else:
            found.in_sweep = list(swept.document.get("resources", []))
        return found

    def check(self) -> dict[str, Any] | None:
        """The run and the two proofs, each failure a problem; the run's JSON object, if any."""
        ran = self.job("run")
        document = ran.document
        self.run_id = (document or {}).get("run_id") or self.find_run()
        if ran.exit_code == 2 and self.run_id is None:
            raise Refused(f"`{ran.line}` refused its input: {ran.error}")
        status = (document or {}).get("status")
        if ran.exit_code == 1:
            self.failed(ran, "a permission differed from the expected matrix")
        elif ran.exit_code != 0:
            self.failed(ran, ran.error or f"status {status}")
        elif status != "torn_down":
            self.failed(ran, f"status {status}, not torn_down")
        elif not document or not document.get("checks") or failed_checks(document):
            # Exit 0 says every check passed; a run with none, or a failed one, proved nothing.
            self.failed(ran, "its checks are missing or not all passed")
        found = self.findings()
        if found.in_ledger:
            self.problems.append(f"the ledger shows {len(found.in_ledger)} resource(s) not deleted")
        if found.in_sweep:
            self.problems.append(
                f"sweep found {len(found.in_sweep)} resource(s) outside the ledger"
            )
        self.problems += found.unknown
        return document

    def recover(self) -> Findings:
        """One more teardown (idempotent, safe whatever state the run is in), and a new look."""
        if self.run_id is not None:
            teardown = self.job("teardown", "--run-id", self.run_id)
            outcome = "done" if teardown.exit_code == 0 else f"exited {teardown.exit_code}"
            detail = f": {teardown.error}" if teardown.exit_code != 0 else ""
            self.problems.append(f"tried once more: `{teardown.line}` {outcome}{detail}")
        return self.findings()

    def exit_code(self, found: Findings, checks_failed: bool) -> int:
        if not found.clean or 4 in self.exit_codes:
            return 4
        if self.signals.received is not None:
            return 128 + self.signals.received
        return 1 if checks_failed else 4


def failed_checks(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [c for c in (document or {}).get("checks", []) if not c.get("passed")]


def report(smoke: Smoke, who: Identity, document: dict[str, Any] | None, found: Findings) -> None:
    """Loud, on stderr: what went wrong, what is left, and the exact commands that clean it up."""
    lines = [
        RULE,
        f"{NAME}: FAILED: prefix {smoke.prefix}, run {smoke.run_id or '(none recorded)'}, "
        f"account {who.account}, region {who.region}",
        "",
        "What went wrong:",
        *(f"  - {problem}" for problem in smoke.problems),
    ]
    checks = failed_checks(document)
    if checks:
        lines += ["", "Checks that failed (principal, action, resource: expected, actual):"]
        lines += [
            f"  - {c['principal']} {c['action']} {c['resource']}: "
            f"expected {c['expected']}, got {c['actual']}"
            for c in checks
        ]
    lines.append("")
    if found.clean:
        lines.append("Nothing is left: the ledger shows every resource deleted, sweep finds none.")
        if smoke.run_id is not None:
            lines += [
                "The run, to look at:",
                f"    {shlex.join(smoke.command('runs', 'show', smoke.run_id))}",
            ]
    else:
        lines.append(f"LEFT IN ACCOUNT {who.account} (or possibly left):")
        lines += [
            f"  - {row['kind']} {row['name']} (ledger: {row['state']}"
            + (f"; {row['error']}" if row.get("error") else "")
            + ")"
            for row in found.in_ledger
        ]
        lines += [
            f"  - {row['kind']} {row['name']} (tagged run {row.get('run_id')}, in no ledger)"
            for row in found.in_sweep
        ]
        lines += [f"  - unknown: {reason}" for reason in found.unknown]
        lines += ["", "To clean up, with credentials allowed to delete these, run in this order:"]
        if smoke.run_id is not None:
            lines.append(f"    {shlex.join(smoke.command('teardown', '--run-id', smoke.run_id))}")
        sweep = smoke.command("sweep", "--older-than", "0s", "--execute")
        lines.append(f"    {shlex.join(sweep)}")
    lines += ["", f"The ledger is kept: {smoke.directory / 'job.db'}", RULE]
    print("\n".join(lines), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    environ = dict(os.environ)
    try:
        reason = refusal(args, environ)
        if reason is not None:
            raise Refused(reason)
        who = identify(environ)
    except Refused as refused:
        say(str(refused))
        return refused.exit_code

    prefix = new_prefix()
    directory = Path(tempfile.mkdtemp(prefix=f"{NAME}-"))
    signals = Signals()
    signals.install()
    smoke = Smoke(prefix, directory, signals)
    endpoint = f", endpoint {who.endpoint}" if who.endpoint else ""
    say(f"account {who.account} ({who.arn}), region {who.region}{endpoint}")
    say(
        f"creates, verifies and deletes S3 buckets, IAM users under /job/, their policies and "
        f"access keys, all named {prefix}-<run id>-*; ledger {smoke.database_url}"
    )
    started = time.monotonic()
    try:
        document = smoke.check()
    except Refused as refused:
        # `job` rejected a setting before it created anything (nothing is in the ledger).
        say(str(refused))
        shutil.rmtree(directory, ignore_errors=True)
        return refused.exit_code
    if signals.received is not None:
        smoke.problems.append(f"interrupted ({signal.Signals(signals.received).name})")
    if not smoke.problems:
        checks = (document or {}).get("checks", [])
        shutil.rmtree(directory, ignore_errors=True)
        print(
            f"{NAME}: ok: run {smoke.run_id} torn down, {len(checks)} of {len(checks)} checks "
            f"passed, nothing left; {time.monotonic() - started:.0f} s",
            flush=True,
        )
        return 0
    checks_failed = bool(failed_checks(document))
    found = smoke.recover()
    report(smoke, who, document, found)
    return smoke.exit_code(found, checks_failed)


if __name__ == "__main__":
    sys.exit(main())
