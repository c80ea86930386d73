"""An existing role a scenario names (roles.NAME.existing) is assumed as it is, with the runner's
own credentials, and probed like any role of the run; the run never creates, changes or deletes
it, and when AWS refuses to let the runner in, its cells say why and the run is incomplete."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from job.emulator import EmulatorCredentials
from job.permissions import runner_policy
from tests.functional.test_permissions import _for_moto
from tests.helpers import admin_client, invoke, leftovers, role_as_it_is

ACCOUNT = "123456789012"  # moto's
OTHER_ACCOUNT = "111122223333"
ROLE_NAME = "prod-reader"

SCENARIO = """
version: 1
buckets:
  data:
    objects: {fixture.txt: "read by job verify"}
users:
  ci:
    policy:
      - {effect: Allow, actions: [sts:AssumeRole, iam:GetRole], resources: ["role:prod"]}
  stranger: {}
roles:
  prod:
    existing: ROLE_ARN
expect:
  - {principal: prod, action: s3:GetObject, resource: "bucket:data/fixture.txt", result: allow}
  - {principal: prod, action: s3:PutObject, resource: "bucket:data/prod.txt", result: deny}
  - {principal: ci, action: sts:AssumeRole, resource: "role:prod", result: allow}
  - {principal: ci, action: iam:GetRole, resource: "role:prod", result: allow}
  - {principal: stranger, action: sts:AssumeRole, resource: "role:prod", result: deny}
"""


def _existing_role(aws: EmulatorCredentials, trusted: str) -> tuple[str, Any]:
    """A role someone else made and owns: reads any job bucket's objects, trusts `trusted`."""
    iam = admin_client(aws, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": trusted}, "Action": "sts:AssumeRole"}
        ],
    }
    arn = iam.create_role(
        RoleName=ROLE_NAME,
        Path="/ops/",
        AssumeRolePolicyDocument=json.dumps(trust),
        Tags=[{"Key": "owner", "Value": "platform"}],
    )["Role"]["Arn"]
    reads = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::job-*/*"}
        ],
    }
    iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="reads", PolicyDocument=json.dumps(reads))
    return arn, iam


def _run(capsys: Any, tmp_path: Path, role_arn: str, sqlite_url: str, text: str = SCENARIO) -> Any:
    scenario = tmp_path / "existing.yaml"
    scenario.write_text(text.replace("ROLE_ARN", role_arn))
    return invoke(
        capsys,
        "run",
        "--scenario",
        str(scenario),
        "--database-url",
        sqlite_url,
        "--output",
        "json",
    )


def test_an_existing_role_is_proved_and_left_exactly_as_it_was(
    aws: EmulatorCredentials, sqlite_url: str, tmp_path: Path, capsys
) -> None:
    """Its trust names the account, so a principal gets in by its own policy (ci) or not at all
    (stranger); the runner's own policy (an administrator's here) lets it assume the role."""
    arn, iam = _existing_role(aws, f"arn:aws:iam::{ACCOUNT}:root")
    before = role_as_it_is(iam, ROLE_NAME)
    result = _run(capsys, tmp_path, arn, sqlite_url)
    assert result.exit_code == 0, result.stdout + result.stderr
    run = json.loads(result.stdout)
    assert {(c["principal"], c["action"], c["actual"]) for c in run["checks"]} == {
        ("prod", "s3:GetObject", "allow"),
        ("prod", "s3:PutObject", "deny"),
        ("ci", "sts:AssumeRole", "allow"),
        ("ci", "iam:GetRole", "allow"),
        ("stranger", "sts:AssumeRole", "deny"),
    }
    # The ledger holds nothing of it: teardown and sweep have nothing of it to delete.
    assert not [
        r for r in run["resources"] if ROLE_NAME in r["name"] or r["logical_name"] == "prod"
    ]
    assert role_as_it_is(iam, ROLE_NAME) == before
    assert leftovers(aws, run["run_id"]) == []


def test_a_trust_that_does_not_let_the_runner_in_is_said_and_the_run_is_incomplete(
    aws: EmulatorCredentials, sqlite_url: str, tmp_path: Path, capsys
) -> None:
    arn, iam = _existing_role(aws, f"arn:aws:iam::{OTHER_ACCOUNT}:root")
    before = role_as_it_is(iam, ROLE_NAME)
    # Without ci's cells, which this trust fails too (ci is of the runner's account).
    without_ci = "\n".join(line for line in SCENARIO.splitlines() if "principal: ci" not in line)
    result = _run(capsys, tmp_path, arn, sqlite_url, without_ci)
    assert result.exit_code == 4, result.stdout + result.stderr
    run = json.loads(result.stdout)
    prods = [c for c in run["checks"] if c["principal"] == "prod"]
    assert {c["actual"] for c in prods} == {"error"}
    runner = f"arn:aws:iam::{ACCOUNT}:user/"
    for check in prods:
        assert check["detail"].startswith(f"not run: assuming existing role {arn} as {runner}")
        assert "the role's trust policy must allow" in check["detail"]
        assert "\n" not in check["detail"]
    # The stranger's denied AssumeRole of it is not taken as a denial: the job could not show
    # the role exists, and STS refuses a missing role as it refuses a caller.
    [stranger] = [c for c in run["checks"] if c["principal"] == "stranger"]
    assert stranger["actual"] == "error", stranger
    assert stranger["detail"] == (
        "not run: the job could not assume prod itself, so its existence is not shown and a"
        " refusal could be a missing role's"
    )
    assert role_as_it_is(iam, ROLE_NAME) == before
    assert leftovers(aws, run["run_id"]) == []


@pytest.mark.parametrize("granted", [True, False])
def test_the_runner_needs_exactly_the_grant_runner_policy_prints(
    granted: bool, aws: EmulatorCredentials, sqlite_url: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A runner holding the runner policy for the scenario's kinds, with or without the
    AssumeExistingRoles statement `job runner-policy --scenario` adds for it."""
    arn, _ = _existing_role(aws, f"arn:aws:iam::{ACCOUNT}:root")
    scenario = tmp_path / "existing.yaml"
    scenario.write_text(SCENARIO.replace("ROLE_ARN", arn))
    printed = invoke(capsys, "runner-policy", "--scenario", str(scenario))
    assert printed.exit_code == 0, printed.stderr
    policy = json.loads(printed.stdout)
    [grant] = [s for s in policy["Statement"] if s["Sid"] == "AssumeExistingRoles"]
    assert grant["Resource"] == [arn]
    if not granted:
        policy["Statement"].remove(grant)
    assert policy == runner_policy(
        "job", kinds=_kinds(policy, scenario), existing_roles=[arn] if granted else []
    )
    _become(aws, monkeypatch, policy)
    result = _run(capsys, tmp_path, arn, sqlite_url)
    run = json.loads(result.stdout)
    prods = {c["actual"] for c in run["checks"] if c["principal"] == "prod"}
    if granted:
        assert result.exit_code == 0, result.stdout + result.stderr
        assert prods == {"allow", "deny"}
    else:
        assert result.exit_code == 4, result.stdout + result.stderr
        assert prods == {"error"}
    assert leftovers(aws, run["run_id"]) == []


def _kinds(policy: Any, scenario: Path) -> Any:
    from job.naming import Naming
    from job.scenario_file import compile_source, read_source, scenario_kinds

    return scenario_kinds(
        compile_source(read_source(str(scenario)), Naming.placeholder("job", "aws"))
    )


def _become(aws: EmulatorCredentials, monkeypatch: Any, policy: dict[str, Any]) -> None:
    """Use a runner holding exactly `policy`, as test_permissions shapes it for moto, but for the
    existing role's grant, which stays on the role's ARN: the emulator authorizes AssumeRole on
    it."""
    grants = [s for s in policy["Statement"] if s["Sid"] == "AssumeExistingRoles"]
    policy = _for_moto(copy.deepcopy(policy), frozenset())
    for statement in policy["Statement"]:
        for grant in grants:
            if statement["Sid"] == grant["Sid"]:
                statement["Resource"] = grant["Resource"]
    iam = admin_client(aws, "iam")
    iam.create_user(UserName="least")
    iam.put_user_policy(UserName="least", PolicyName="runner", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="least")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
