"""deploy/aws/canary-role.yaml, the role `job fleet` assumes in every member account: its
permissions are the job's own runner policy (what `job runner-policy` prints), its trust names the
runner and asks for the external id, and nothing the job tears down or sweeps can reach it.

The template is read as CloudFormation would resolve it for one stack (its parameters, AWS's
pseudo parameters), then held to job.permissions.runner_policy and judged by the job's own policy
evaluator (job.policy_evaluation): the template and the code cannot drift apart unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from job.aws.handler import MANAGED_BY_KEY
from job.config import RESERVED_BUCKET_PREFIXES, validate_prefix
from job.errors import BadInput
from job.naming import IAM_PATH
from job.permissions import runner_policy
from job.policy_evaluation import Decision, Request, decide
from job.policy_language import read_document

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy/aws/canary-role.yaml"
MEMBER_ACCOUNT = "210987654321"
RUNNER = "arn:aws:iam::111122223333:role/job-runner"
EXTERNAL_ID = "fleet-7f3a"
_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def template() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    return document


def parameters(**given: str) -> dict[str, str]:
    """The stack's parameters (defaults, then `given`) and the pseudo parameters of an account in
    the commercial partition, by default."""
    values = {
        name: str(spec["Default"])
        for name, spec in template()["Parameters"].items()
        if "Default" in spec
    }
    values.update(
        {
            "RunnerPrincipalArn": RUNNER,
            "ExternalId": EXTERNAL_ID,
            "AWS::Partition": "aws",
            "AWS::AccountId": MEMBER_ACCOUNT,
            "AWS::Region": "us-east-1",
        }
    )
    values.update(given)
    return values


def resolve(node: Any, values: Mapping[str, str]) -> Any:
    """`node` as CloudFormation resolves it: Ref and Fn::Sub replaced by their values. Any other
    intrinsic, or a name with no value, fails the test: the comparison would mean nothing."""
    if isinstance(node, list):
        return [resolve(item, values) for item in node]
    if not isinstance(node, Mapping):
        return node
    if len(node) == 1:
        [(key, argument)] = node.items()
        if key == "Ref":
            return values[argument]
        if key == "Fn::Sub":
            assert isinstance(argument, str), "the long form with variables is not used here"
            return _VARIABLE.sub(lambda match: values[match.group(1)], argument)
        assert not str(key).startswith("Fn::"), f"resolve {key} here"
    return {key: resolve(value, values) for key, value in node.items()}


def role(**given: str) -> dict[str, Any]:
    resources = template()["Resources"]
    [found] = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    properties: dict[str, Any] = resolve(found["Properties"], parameters(**given))
    return properties


def permissions(**given: str) -> dict[str, Any]:
    [policy] = role(**given)["Policies"]
    document: dict[str, Any] = policy["PolicyDocument"]
    return document


def test_the_roles_permissions_are_the_jobs_runner_policy() -> None:
    """What `job runner-policy --prefix job` prints, statement for statement, and in its order."""
    assert permissions() == runner_policy("job", "aws")


@pytest.mark.parametrize(
    ("prefix", "partition"), [("canary", "aws-cn"), ("team-7", "aws-us-gov"), ("job", "aws-iso")]
)
def test_the_prefix_and_partition_are_the_stacks(prefix: str, partition: str) -> None:
    """Every ARN follows the Prefix parameter and the stack's partition: none is written out."""
    given = {"Prefix": prefix, "AWS::Partition": partition}
    assert permissions(**given) == runner_policy(prefix, partition)


def test_the_prefix_parameter_takes_what_the_job_takes() -> None:
    """A stack takes every prefix the job takes, and refuses what the job refuses for its form
    (exit 2), so the role never grants on names no run of the job can have. The starts S3
    reserves for bucket names are left to the job: `job fleet plan` refuses them, and the role
    then simply goes unused."""
    spec = template()["Parameters"]["Prefix"]
    allowed = re.compile(spec["AllowedPattern"])
    samples = ["job", "a", "canary-2", "x" * 20, "x" * 21, "-job", "job-", "Job", "j_b", ""]
    for prefix in [*samples, "sthree", "xn--job", "amzn-s3-demo"]:
        try:
            validate_prefix(prefix)
            accepted = True
        except BadInput:
            accepted = False
        in_template = (
            spec["MinLength"] <= len(prefix) <= spec["MaxLength"]
            and allowed.fullmatch(prefix) is not None
        )
        reserved = any(f"{prefix}-".startswith(start) for start in RESERVED_BUCKET_PREFIXES)
        assert in_template == (accepted or reserved), prefix
    assert spec["Default"] == "job"


def test_only_the_runner_with_the_external_id_may_assume_it() -> None:
    trust = read_document(role()["AssumeRolePolicyDocument"], trust_policy=True)
    role_arn = f"arn:aws:iam::{MEMBER_ACCOUNT}:role/job-canary"

    def assume(caller_role: str, context: dict[str, list[str]]) -> Decision:
        account = caller_role.split(":")[4]
        name = caller_role.rsplit("/", 1)[1]
        request = Request(
            action="sts:AssumeRole",
            resource=role_arn,
            principal=f"arn:aws:sts::{account}:assumed-role/{name}/fleet-worker",
            account=MEMBER_ACCOUNT,
            role=caller_role,
            context=context,
        )
        return decide(request, identity=[], resource=trust)

    assert assume(RUNNER, {"sts:ExternalId": [EXTERNAL_ID]}) is Decision.ALLOW
    assert assume(RUNNER, {}) is not Decision.ALLOW
    assert assume(RUNNER, {"sts:ExternalId": ["someone-elses"]}) is not Decision.ALLOW
    other = "arn:aws:iam::111122223333:role/another-team"
    assert assume(other, {"sts:ExternalId": [EXTERNAL_ID]}) is not Decision.ALLOW
    [statement] = role()["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}


def test_the_external_id_parameter_is_sts_s() -> None:
    spec = template()["Parameters"]["ExternalId"]
    assert (spec["MinLength"], spec["MaxLength"]) == (2, 1224)
    assert spec["AllowedPattern"] == r"[\w+=,.@:\/-]*"
    assert "NoEcho" not in spec


def test_nothing_the_job_runs_can_touch_the_role() -> None:
    """The role is outside the job's IAM path and carries none of its tags, so teardown and sweep
    never list it; and its own permissions grant nothing on it but account-wide listings, so a
    run through it cannot change or delete the role it runs as."""
    properties = role()
    assert not properties["Path"].startswith(IAM_PATH), properties["Path"]
    assert MANAGED_BY_KEY not in {tag["Key"] for tag in properties.get("Tags", [])}
    role_arn = f"arn:aws:iam::{MEMBER_ACCOUNT}:role{properties['Path']}{properties['RoleName']}"
    policy = permissions()
    statements = read_document(policy)
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    # Its inline policy is not the job's: detaching one of the job's policies from it would be
    # allowed, and is harmless (it has none); anything else would not.
    context = {"iam:PolicyARN": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}
    allowed = {
        action
        for action in actions
        if decide(
            Request(action, role_arn, role_arn, MEMBER_ACCOUNT, context=context),
            identity=[statements],
        )
        is Decision.ALLOW
    }
    assert allowed == {"iam:ListGroups", "iam:ListPolicies", "iam:ListRoles", "iam:ListUsers"} | {
        "s3:ListAllMyBuckets"
    }
    # ...while the same policy does reach a run's role: the evaluation above can tell them apart.
    run_role = f"arn:aws:iam::{MEMBER_ACCOUNT}:role{IAM_PATH}job-abcdefghij-analyst"
    delete = Request("iam:DeleteRole", run_role, role_arn, MEMBER_ACCOUNT)
    assert decide(delete, identity=[statements]) is Decision.ALLOW
