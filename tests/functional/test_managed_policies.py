"""An existing managed policy a scenario names is attached for the run and detached at teardown,
on both ledgers, through the AWS-like layer: the policy itself is never created, changed or
deleted, and a kill after its attachment leaves nothing attached once torn down."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.emulator import EmulatorCredentials
from tests.helpers import admin_client, cli_in_fork, invoke, open_store

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "examples" / "managed-policy.yaml"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"


@dataclass
class KillAfterAttaching:
    """SIGKILLs this process right after AWS has answered the attachment of `policy_arn`."""

    policy_arn: str
    event: str = "after-call"

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        arguments = context.get("arguments", {})
        if model.name == "AttachUserPolicy" and arguments.get("PolicyArn") == self.policy_arn:
            os.kill(os.getpid(), signal.SIGKILL)


def _state_of(iam: Any, arn: str) -> tuple[str, int, str]:
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    version = policy["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    return version, policy["AttachmentCount"], json.dumps(document["Document"], sort_keys=True)


def test_a_managed_policy_is_attached_for_the_run_and_left_as_it_was(
    aws: EmulatorCredentials, database_url: str, capsys
) -> None:
    iam = admin_client(aws, "iam")
    before = _state_of(iam, READ_ONLY)
    result = invoke(
        capsys,
        "run",
        "--scenario",
        str(SCENARIO),
        "--database-url",
        database_url,
        "--output",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    attachments = [r for r in run["resources"] if r["logical_name"] == "auditor-managed-0"]
    assert [a["state"] for a in attachments] == ["deleted"]
    # Never made, never changed: the same default version and document, attached nowhere again.
    assert _state_of(iam, READ_ONLY) == before
    assert before[1] == 0
    assert not [
        row for row in run["resources"] if row["kind"] == "iam_policy" and "ReadOnly" in row["name"]
    ]


def test_a_kill_right_after_the_attachment_leaves_nothing_attached(
    aws: EmulatorCredentials, sqlite_url: str, capsys
) -> None:
    iam = admin_client(aws, "iam")
    status = cli_in_fork(
        ["provision", "--scenario", str(SCENARIO), "--database-url", sqlite_url],
        [KillAfterAttaching(READ_ONLY)],
    )
    assert status != 0
    with open_store(sqlite_url) as store:
        [run] = store.list_runs(limit=1)
    assert iam.get_policy(PolicyArn=READ_ONLY)["Policy"]["AttachmentCount"] == 1
    result = invoke(capsys, "teardown", "--run-id", run.id, "--database-url", sqlite_url)
    assert result.exit_code == 0, result.stderr
    assert iam.get_policy(PolicyArn=READ_ONLY)["Policy"]["AttachmentCount"] == 0
    assert iam.list_users(PathPrefix="/job/")["Users"] == []


def test_a_scenario_boundary_and_the_run_wide_one_are_bad_input_before_anything(
    aws: EmulatorCredentials, sqlite_url: str, capsys
) -> None:
    result = invoke(
        capsys,
        "run",
        "--scenario",
        str(ROOT / "examples" / "boundary.yaml"),
        "--permissions-boundary",
        READ_ONLY,
        "--database-url",
        sqlite_url,
    )
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert (
        "users.auditor.boundary: the scenario gives this principal a permissions boundary" in line
    )
    with open_store(sqlite_url) as store:
        assert store.list_runs() == []
    assert admin_client(aws, "iam").list_users(PathPrefix="/job/")["Users"] == []
