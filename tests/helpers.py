"""Tools the tests share: running the CLI in-process, opening a ledger, reading the emulator."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from job.aws.session import new_session
from job.cli import main
from job.config import parse_database_url
from job.emulator import EmulatorCredentials
from job.errors import BadInput
from job.ledger.engine import Ledger
from job.ledger.store import Store
from job.scenario import RunOptions
from job.scenario_file import ScenarioSource


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def invoke(capsys: pytest.CaptureFixture[str], *args: str, hooks: Sequence[Any] = ()) -> Result:
    """Run `job ARGS` as the console script would, in this process; `hooks` go on every AWS
    client the job makes (botocore event handlers: to watch calls or inject faults)."""
    capsys.readouterr()
    try:
        main(list(args), call_hooks=hooks)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@contextmanager
def open_store(url: str) -> Iterator[Store]:
    ledger = Ledger(parse_database_url(url)).open()
    try:
        with ledger.session() as session:
            yield Store(session)
    finally:
        ledger.dispose()


@functools.lru_cache(maxsize=64)
def admin_client(credentials: EmulatorCredentials, service: str) -> Any:
    """The runner's client of `service`, made once per credentials (a test's runner) and process:
    making a client costs more CPU than most of the calls a test makes with it. Nobody adds
    hooks to it (StrictAws's admin clients only look)."""
    secret = credentials.secret_access_key
    key = {"AccessKeyId": credentials.access_key_id, "SecretAccessKey": secret}
    return client_as(credentials.endpoint_url, service, key)


def client_as(endpoint_url: str, service: str, key: dict[str, Any]) -> Any:
    """A client of the emulator signing with `key` (CreateAccessKey's AccessKey, or a role
    session's Credentials, with their SessionToken). Everything that matters is given to it,
    nothing read from the test's environment; its session is the process's one, on the job's
    shared loader: a client of a session of its own costs 0.2 s of CPU, enough to outlast the
    AWS-like layer's new key windows on a loaded machine."""
    return _session().client(
        service,
        endpoint_url=endpoint_url,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        aws_session_token=key.get("SessionToken"),
        region_name="us-east-1",
    )


@functools.cache
def _session() -> Any:
    return new_session()


def grant_inline(iam: Any, user: str, action: str, resource: str, name: str = "extra") -> None:
    """Give `user` an inline policy behind the job's back, as a person with IAM rights might:
    an extra right for verify to catch, and something more for teardown to remove."""
    statement = {"Effect": "Allow", "Action": action, "Resource": resource}
    iam.put_user_policy(
        UserName=user,
        PolicyName=name,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )


def role_as_it_is(iam: Any, name: str) -> Any:
    """All a run could change of a role: to hold an existing role to exactly what it was."""
    role = iam.get_role(RoleName=name)["Role"]
    return (
        role["Arn"],
        json.dumps(role["AssumeRolePolicyDocument"], sort_keys=True),
        role.get("Tags"),
        role.get("PermissionsBoundary"),
        iam.list_role_policies(RoleName=name)["PolicyNames"],
        iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"],
    )


def named(credentials: EmulatorCredentials, matches: Callable[[str], bool]) -> list[str]:
    """Every user (with its access keys), group, role, customer-managed policy and bucket in the
    emulator whose name `matches`."""
    iam = admin_client(credentials, "iam")
    s3 = admin_client(credentials, "s3")
    users = [
        user["UserName"]
        for page in iam.get_paginator("list_users").paginate()
        for user in page["Users"]
        if matches(user["UserName"])
    ]
    found = [f"user {user}" for user in users]
    for user in users:
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        found += [f"access key {key['AccessKeyId']}" for key in keys]
    found += [
        f"group {group['GroupName']}"
        # The job's path only (moto ignores PathPrefix): someone else's group a test hangs a
        # principal in stays, as the job leaves it (tests/functional/test_janitor.py).
        for page in iam.get_paginator("list_groups").paginate()
        for group in page["Groups"]
        if group["Path"] == "/job/" and matches(group["GroupName"])
    ]
    found += [
        f"role {role['RoleName']}"
        for page in iam.get_paginator("list_roles").paginate()
        for role in page["Roles"]
        if matches(role["RoleName"])
    ]
    found += [
        f"policy {policy['PolicyName']}"
        for page in iam.get_paginator("list_policies").paginate(Scope="Local")
        for policy in page["Policies"]
        if matches(policy["PolicyName"])
    ]
    # Paged, as AWS requires of some accounts (the AWS-like layer enforces it); one page holds
    # every bucket a test makes.
    found += [
        f"bucket {bucket['Name']}"
        for bucket in s3.list_buckets(MaxBuckets=1000).get("Buckets", [])
        if matches(bucket["Name"])
    ]
    return found


def leftovers(credentials: EmulatorCredentials, run_id: str) -> list[str]:
    """Everything in the emulator whose name carries the run id: must be empty after teardown."""
    return named(credentials, lambda name: run_id in name)


@dataclass(repr=False)
class Done:
    """A finished subprocess, shown whole when an assertion about it fails."""

    command: list[str]
    exit_code: int
    stdout: str
    stderr: str

    def __repr__(self) -> str:  # what a failed assertion shows
        output = f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        return f"{shlex.join(self.command)} exited {self.exit_code}\n{output}"


def run_captured(command: list[str], environment: dict[str, str], cwd: Path) -> Done:
    """`command` as a separate process with exactly `environment`, its output kept."""
    process = subprocess.run(
        command,
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return Done(command, process.returncode, process.stdout, process.stderr)


def cli_in_fork(args: list[str], hooks: list[Any]) -> int:
    """`job ARGS` in a forked child whose AWS clients carry `hooks` (KillAt, to kill it at a
    chosen call); returns the wait status. No Python start-up to pay, a real process to kill."""
    _warm_for(args)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            main(args, call_hooks=hooks)
        except SystemExit as done:
            os._exit(done.code if isinstance(done.code, int) else 1)
        finally:
            os._exit(70)
    return os.waitpid(pid, 0)[1]


def _warm_for(args: list[str]) -> None:
    """What a forked `job ARGS` would do again in every child, done once in this process: import
    what the job imports when it first needs it (jsonschema, the phases), and parse and check the
    run's scenario, which the job caches per text. A sweep forks a run per crash point."""
    from job.phases.run import run_all  # noqa: F401  (imported for its side effect)
    from job.scenario_file import source_for, validate

    scenario = args[args.index("--scenario") + 1] if "--scenario" in args else None
    with contextlib.suppress(BadInput):  # the child says so, as the test expects
        validate(source_for(scenario))


# The emulator speaks plain HTTP, where a TLS-only bucket policy would refuse every request; the
# CLI works that out from the endpoint, tests that start runs themselves say it.
EMULATED = RunOptions(require_tls=False)


# A scenario with a user and a role as principals: the `writer` user may put and get the
# bucket's objects; the `auditor` role may get them and list the bucket, and nothing else.
ROLE_SCENARIO = ScenarioSource(
    """
version: 1
buckets:
  data:
    objects: {probe/fixture.txt: "read by job verify"}
users:
  writer:
    policy:
      - {effect: Allow, actions: [s3:PutObject, s3:GetObject], resources: ["bucket:data/*"]}
roles:
  auditor:
    policy:
      - {effect: Allow, actions: [s3:GetObject], resources: ["bucket:data/*"]}
      - {effect: Allow, actions: [s3:ListBucket], resources: ["bucket:data"]}
expect:
  - {principal: writer, action: s3:PutObject, resource: "bucket:data/probe/w.txt", result: allow}
  - principal: writer
    action: s3:GetObject
    resource: "bucket:data/probe/fixture.txt"
    result: allow
  - {principal: writer, action: s3:ListBucket, resource: "bucket:data", result: deny}
  - {principal: writer, action: iam:ListUsers, resource: "*", result: deny}
  - principal: auditor
    action: s3:GetObject
    resource: "bucket:data/probe/fixture.txt"
    result: allow
  - {principal: auditor, action: s3:ListBucket, resource: "bucket:data", result: allow}
  - {principal: auditor, action: sts:GetCallerIdentity, resource: "*", result: allow}
  - {principal: auditor, action: s3:PutObject, resource: "bucket:data/probe/a.txt", result: deny}
  - {principal: auditor, action: s3:DeleteObject, resource: "bucket:data/probe/a.txt", result: deny}
  - {principal: auditor, action: iam:ListUsers, resource: "*", result: deny}
""",
    "tests/helpers.py ROLE_SCENARIO",
)
