"""`job runner-policy` is enough, and each action in it is there for a reason.

The runner here holds only the printed policy (as a managed policy: AWS caps a user's inline
policies at 2,048 characters), in the two places moto differs from AWS made to fit moto:
- moto authorizes IAM actions against "*" rather than the user's or policy's ARN, so the IAM
  statements' resources are widened to "*" here: the IAM scoping is not proven by these tests;
- moto authorizes HEAD on a bucket as "s3:HeadBucket" (AWS: s3:ListBucket), and DeleteObjects
  as s3:DeleteObject on the bucket (AWS: on each object), so those are added to the bucket's.
S3 actions are checked against the policy's bucket and object resources as on AWS. The policy has
no Condition (moto would take any as a deny).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from job.config import parse_database_url
from job.emulator import EmulatorCredentials
from job.ledger.models import Run, utcnow
from job.permissions import required_actions, runner_policy
from job.runtime import Ledger
from tests.helpers import admin_client, invoke, leftovers

pytestmark = pytest.mark.usefixtures("aws")
JOB_TAGS = [{"Key": "job:managed-by", "Value": "job"}, {"Key": "job:run-id", "Value": "orphan0001"}]


def _for_moto(policy: dict[str, Any], without: frozenset[str]) -> dict[str, Any]:
    for statement in policy["Statement"]:
        if all(action.startswith("iam:") for action in statement["Action"]):
            statement["Resource"] = "*"
        if statement["Sid"] == "JobBuckets":
            statement["Action"] += [
                action for action in ("s3:HeadBucket", "s3:DeleteObject") if action not in without
            ]
    return policy


def _become_least_privileged(aws, monkeypatch, without: frozenset[str] = frozenset()) -> None:
    """Create a runner holding only the runner policy (less `without`) and use its keys."""
    iam = admin_client(aws, "iam")
    name = f"least-{len(without)}-{'-'.join(sorted(without)).replace(':', '.')}"[:60]
    policy = _for_moto(runner_policy("job", without=without), without)
    arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
    iam.create_user(UserName=name)
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])


def _age_all_runs(database_url: str) -> None:
    ledger = Ledger(parse_database_url(database_url)).open()
    with ledger.engine.begin() as connection:
        connection.execute(update(Run).values(updated_at=utcnow() - timedelta(hours=2)))
    ledger.dispose()


def test_the_policy_is_scoped_and_covers_every_declared_action() -> None:
    policy = runner_policy("canary")
    listed = [a for statement in policy["Statement"] for a in statement["Action"]]
    assert sorted(listed) == sorted(required_actions())
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources == {
        "Unscoped": "*",
        "JobPolicies": "arn:aws:iam::*:policy/job/canary-*",
        "JobUsers": "arn:aws:iam::*:user/job/canary-*",
        "JobBuckets": "arn:aws:s3:::canary-*",
        "JobObjects": "arn:aws:s3:::canary-*/*",
    }
    assert "sts:GetCallerIdentity" not in listed, "it needs no permission"


def test_runner_policy_prints_the_document(capsys) -> None:
    for args in (["runner-policy"], ["runner-policy", "--output", "json", "--prefix", "canary"]):
        result = invoke(capsys, *args)
        assert result.exit_code == 0
        prefix = "canary" if "canary" in args else "job"
        assert json.loads(result.stdout) == runner_policy(prefix)


def test_the_policy_is_enough_for_run_sweep_and_stale_teardown(
    aws: EmulatorCredentials, sqlite_url: str, capsys, monkeypatch
) -> None:
    admin_client(aws, "iam").create_user(
        UserName="job-orphan0001-writer", Path="/job/", Tags=JOB_TAGS
    )
    stale = invoke(capsys, "provision", "--database-url", sqlite_url).stdout.strip()  # as admin
    _age_all_runs(sqlite_url)
    _become_least_privileged(aws, monkeypatch)

    run = invoke(capsys, "run", "--database-url", sqlite_url, "--output", "json")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert all(check["passed"] for check in run.json()["checks"])
    janitor = invoke(
        capsys, "teardown", "--stale", "--database-url", sqlite_url, "--output", "json"
    )
    assert janitor.exit_code == 0, janitor.stdout
    assert janitor.json()["runs"] == [{"run_id": stale, "outcome": "torn_down", "error": None}]
    swept = invoke(
        capsys,
        "sweep",
        "--execute",
        "--older-than",
        "0s",
        "--database-url",
        sqlite_url,
        "--output",
        "json",
    )
    assert swept.exit_code == 0, swept.stdout
    assert [(r["name"], r["action"]) for r in swept.json()["resources"]] == [
        ("job-orphan0001-writer", "deleted")
    ]
    assert leftovers(aws, stale) == [] and leftovers(aws, run.json()["run_id"]) == []


# Each of these, taken away, makes a plain `job run` fail, naming the action. Not here, since
# moto authorizes them under other names than AWS's IAM actions: s3:PutBucketPublicAccessBlock,
# s3:PutEncryptionConfiguration, s3:ListBucket (moto: s3:HeadBucket).
NEEDED_BY_A_RUN = [
    "s3:CreateBucket",
    "s3:PutBucketTagging",
    "s3:PutObject",
    "iam:CreateUser",
    "iam:CreatePolicy",
    "iam:AttachUserPolicy",
    "iam:CreateAccessKey",
    "iam:ListUserTags",
    "iam:DeleteUser",
    "iam:DeletePolicy",
    "s3:DeleteBucket",
]


@pytest.mark.parametrize("action", NEEDED_BY_A_RUN)
def test_without_an_action_the_run_fails_and_names_it(
    action: str, aws, sqlite_url: str, capsys, monkeypatch
) -> None:
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}))
    result = invoke(capsys, "run", "--database-url", sqlite_url, "--output", "json")
    assert result.exit_code == 4, result.stdout
    assert f"lack {action}" in result.json()["error"]


def test_a_runner_that_may_not_look_at_its_bucket_does_not_take_it_for_a_stranger(
    aws, sqlite_url: str, capsys, monkeypatch
) -> None:
    """HeadBucket answers 403 both for another account's bucket and for our own one we may not
    look at. Teardown must not mark the second deleted and walk away from it."""
    run_id = invoke(capsys, "provision", "--database-url", sqlite_url).stdout.strip()
    _become_least_privileged(aws, monkeypatch, without=frozenset({"s3:HeadBucket"}))
    result = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url)
    assert result.exit_code == 4
    assert "left alone" not in result.stderr
    shown = invoke(capsys, "runs", "show", run_id, "--database-url", sqlite_url, "--output", "json")
    states = {r["kind"]: r["state"] for r in shown.json()["resources"]}
    assert states["s3_bucket"] != "deleted" and states["s3_object"] != "deleted"
    assert f"bucket job-{run_id}-data" in leftovers(aws, run_id)
