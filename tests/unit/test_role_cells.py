"""Roles as what a cell is aimed at (sts:AssumeRole, iam:GetRole), and existing roles: assumed as
they are, referred to by the run and never made, changed or deleted by it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from job.kinds import attributes_of
from job.naming import Naming
from job.permissions import runner_policy
from job.report import scenario_text
from job.scenario_file import ScenarioSource, compile_source
from job.vocabulary import ResourceKind
from tests.unit.test_scenario_file import error_of

NAMING = Naming("job", "abcdefghij", "123456789012", "aws")
PROD = "arn:aws:iam::210987654321:role/ops/prod-reader"

DOCUMENT: dict[str, Any] = {
    "version": 1,
    "buckets": {"data": {"objects": {"fixture.txt": "x"}}},
    "users": {
        "ci": {
            "policy": [
                {"effect": "Allow", "actions": ["sts:AssumeRole"], "resources": ["role:prod"]},
                {"effect": "Allow", "actions": ["iam:GetRole"], "resources": ["role:deployer"]},
            ]
        }
    },
    "roles": {
        "deployer": {
            "policy": [
                {"effect": "Allow", "actions": ["s3:GetObject"], "resources": ["bucket:data/*"]}
            ]
        },
        "prod": {
            "existing": PROD,
            "session_policy": {
                "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "bucket:data/*"}
            },
        },
    },
    "expect": [
        {"principal": "ci", "action": "sts:AssumeRole", "resource": "role:prod", "result": "allow"},
        {
            "principal": "ci",
            "action": "iam:GetRole",
            "resource": "role:deployer",
            "result": "allow",
        },
        {
            "principal": "deployer",
            "action": "sts:AssumeRole",
            "resource": "arn:aws:iam::210987654321:role/someone-elses",
            "result": "allow",
        },
        {
            "principal": "prod",
            "action": "s3:GetObject",
            "resource": "bucket:data/fixture.txt",
            "result": "allow",
        },
    ],
}


def _compiled(document: dict[str, Any]) -> Any:
    import yaml

    return compile_source(ScenarioSource(yaml.safe_dump(document), "s.yaml"), NAMING)


def test_an_existing_role_is_referred_to_and_nothing_of_it_is_made() -> None:
    scenario = _compiled(DOCUMENT)
    assert scenario.existing_roles == {"prod": PROD}
    # Nothing the run makes names it: no role, no policy, no attachment.
    assert [s.logical_name for s in scenario.resources if "prod" in s.logical_name] == []
    # Only the policy that grants assuming it names it.
    assert [
        s.logical_name for s in scenario.resources if PROD in str(attributes_of(s).to_json())
    ] == ["ci-policy"]
    assert scenario.principal_kind("prod") is ResourceKind.IAM_ROLE
    # Its session policy is passed at AssumeRole, with the run's names resolved.
    assert scenario.session_policies["prod"]["Statement"]["Resource"] == (
        "arn:aws:s3:::job-abcdefghij-data/*"
    )
    # role:prod anywhere stands for its ARN: in a policy of the run, and in a cell.
    [policy] = [s for s in scenario.resources if s.logical_name == "ci-policy"]
    statements = attributes_of(policy).to_json()["document"]["Statement"]
    assert statements[0]["Resource"] == PROD
    assert statements[1]["Resource"] == "arn:aws:iam::123456789012:role/job/job-abcdefghij-deployer"
    aims = {(e.principal, e.action): e.aim for e in scenario.expectations}
    assert aims["ci", "sts:AssumeRole"].role_arn == PROD
    assert aims["ci", "sts:AssumeRole"].role_name == "prod-reader"
    assert aims["ci", "iam:GetRole"].role_name == "job-abcdefghij-deployer"
    assert aims["deployer", "sts:AssumeRole"].role_arn.endswith(":role/someone-elses")
    assert aims["prod", "s3:GetObject"].bucket == "job-abcdefghij-data"
    assert "prod-reader" in scenario_text(scenario, NAMING, "headline")


def test_the_runner_may_assume_exactly_the_existing_roles() -> None:
    policy = runner_policy("job", existing_roles=[PROD, PROD])
    [grant] = [s for s in policy["Statement"] if s["Sid"] == "AssumeExistingRoles"]
    assert grant == {
        "Sid": "AssumeExistingRoles",
        "Effect": "Allow",
        "Action": ["sts:AssumeRole"],
        "Resource": [PROD],
    }
    assert "AssumeExistingRoles" not in str(runner_policy("job"))


def _with(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    change(document)
    return document


@pytest.mark.parametrize("what", ["policy", "boundary", "managed_policies", "tags"])
def test_an_existing_role_is_never_changed(what: str) -> None:
    value = {
        "policy": [{"effect": "Allow", "actions": ["s3:GetObject"], "resources": ["*"]}],
        "boundary": "arn:aws:iam::aws:policy/ReadOnlyAccess",
        "managed_policies": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
        "tags": {"team": "data"},
    }[what]
    document = _with(lambda d: d["roles"]["prod"].update({what: value}))
    assert error_of(document) == (
        f"roles.prod.{what}: roles.prod is an existing role, which the run never changes: remove"
        f" {what}, or remove existing to have the run create the role"
    )


BAD = [
    pytest.param(
        lambda d: d["roles"]["prod"].update(existing="arn:aws:iam::210987654321:user/prod"),
        "roles.prod.existing: 'arn:aws:iam::210987654321:user/prod' does not match",
        id="existing is not a role",
    ),
    pytest.param(
        lambda d: d["expect"][0].update(resource="bucket:data"),
        "expect[0].resource: sts:AssumeRole is aimed at a role: use role:NAME, or an existing"
        " role's ARN (arn:aws:iam::ACCOUNT:role/NAME)",
        id="a role probe at a bucket",
    ),
    pytest.param(
        lambda d: d["expect"][1].update(resource="*"),
        "expect[1].resource: iam:GetRole is aimed at a role",
        id="a role probe at everything",
    ),
    pytest.param(
        lambda d: d["expect"][0].update(resource="role:prdo"),
        'expect[0].resource: unknown role "prdo"; the roles are: deployer, prod',
        id="unknown role in a cell",
    ),
    pytest.param(
        lambda d: d["users"]["ci"]["policy"][0].update(resources=["role:ci"]),
        'users.ci.policy[0].resources[0]: unknown role "ci"; the roles are: deployer, prod',
        id="a user is not a role",
    ),
    pytest.param(
        lambda d: d["expect"][2].update(result="deny"),
        "expect[2].resource: sts:AssumeRole of a role that does not exist is refused as a"
        " denial is (STS does not say which), so this deny would pass for a mistyped ARN:"
        " declare the role under roles.NAME.existing and aim at role:NAME",
        id="a denied assume of a role nobody shows to exist",
    ),
    pytest.param(
        lambda d: d["expect"][3].update(resource="role:deployer"),
        "expect[3].resource: s3:GetObject is probed on a bucket",
        id="an s3 probe at a role",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BAD)
def test_a_role_aimed_wrong_is_refused_in_one_line(change: Any, expected: str) -> None:
    assert error_of(_with(change)).startswith(expected)
