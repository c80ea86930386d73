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
from tests.faults import FailTimes
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


def test_a_read_only_cell_may_aim_at_an_existing_bucket_and_leaves_it_alone(
    aws: EmulatorCredentials, sqlite_url: str, tmp_path: Path, capsys
) -> None:
    """ "The CI role cannot read the prod bucket": a cell whose probe changes nothing may name an
    existing bucket or object by its ARN. The run proves it, and neither touches nor lists it."""
    s3 = admin_client(aws, "s3")
    s3.create_bucket(Bucket="prod-data")
    s3.put_object(Bucket="prod-data", Key="ledger.csv", Body=b"secret")
    scenario = tmp_path / "existing.yaml"
    scenario.write_text(
        """
version: 1
users:
  ci:
    policy:
      - {effect: Allow, actions: [s3:ListBucket], resources: ["arn:aws:s3:::prod-data"]}
expect:
  - {principal: ci, action: s3:ListBucket, resource: "arn:aws:s3:::prod-data", result: allow}
  - principal: ci
    action: s3:GetObject
    resource: "arn:aws:s3:::prod-data/ledger.csv"
    result: deny
"""
    )
    result = invoke(
        capsys,
        "run",
        "--scenario",
        str(scenario),
        "--database-url",
        sqlite_url,
        "--output",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    run = json.loads(result.stdout)
    assert {(c["action"], c["resource"], c["actual"]) for c in run["checks"]} == {
        ("s3:ListBucket", "arn:aws:s3:::prod-data", "allow"),
        ("s3:GetObject", "arn:aws:s3:::prod-data/ledger.csv", "deny"),
    }
    assert all("prod-data" not in r["name"] for r in run["resources"])
    assert s3.get_object(Bucket="prod-data", Key="ledger.csv")["Body"].read() == b"secret"


def test_a_bucket_policy_naming_a_principal_s3_does_not_know_yet_is_asked_again(
    aws: EmulatorCredentials, sqlite_url: str, capsys, monkeypatch
) -> None:
    """S3 refuses a bucket policy naming a principal it does not know with MalformedPolicy
    ("Invalid principal in policy"), and IAM's principals reach S3 some time after they are
    made (IAM is eventually consistent). Provision asks again until the window passes; past
    it, the refusal is the run's error, exit 4, nothing left behind after teardown.
    https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html (MalformedPolicy)
    https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
    """
    scenario = str(ROOT / "examples" / "bucket-policy.yaml")
    lagging = FailTimes({"PutBucketPolicy"}, "MalformedPolicy", times=2)
    result = invoke(
        capsys, "provision", "--scenario", scenario, "--database-url", sqlite_url, hooks=[lagging]
    )
    assert result.exit_code == 0, result.stderr
    assert lagging.seen == 2
    run_id = result.stdout.strip()
    assert (
        invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url).exit_code == 0
    )

    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    never = FailTimes({"PutBucketPolicy"}, "MalformedPolicy", times=1_000)
    refused = invoke(
        capsys, "run", "--scenario", scenario, "--database-url", sqlite_url, hooks=[never]
    )
    assert refused.exit_code == 4, refused.stderr
    said = refused.stdout + refused.stderr
    assert "MalformedPolicy" in said and "Traceback" not in said
    assert admin_client(aws, "s3").list_buckets(MaxBuckets=1000).get("Buckets", []) == []
