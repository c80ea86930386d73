"""`job runner-policy` is enough, and each action in it is there for a reason.

The runner here holds only the printed policy (as a managed policy: AWS caps a user's inline
policies at 2,048 characters), in the places moto differs from AWS made to fit moto:
- moto authorizes IAM actions against "*" rather than the user's or policy's ARN, so the IAM
  statements' resources are widened to "*" here, and their Conditions (iam:PolicyARN on the
  detaching of the job's policies) dropped: moto evaluates no IAM condition key and takes a
  statement with one as a deny. The IAM scoping is not proven by these tests; tests/functional/
  test_janitor.py holds the document to it, statement by statement;
- moto authorizes HEAD on a bucket as "s3:HeadBucket" (AWS: s3:ListBucket), and DeleteObjects
  as s3:DeleteObject on the bucket (AWS: on each object), so those are added to the bucket's.
S3 actions are checked against the policy's bucket and object resources as on AWS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import update

from job.aws.session import make_aws
from job.config import parse_database_url
from job.emulator import EmulatorCredentials
from job.errors import AwsError
from job.ledger.engine import Ledger
from job.ledger.models import Run, RunStatus, utcnow
from job.naming import Naming
from job.permissions import required_actions, runner_policy
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import verify
from job.scenario_file import compile_source, read_source, scenario_kinds, seed_source
from tests.faults import Crash, DieAfter, StrictAws
from tests.functional.test_janitor import BY_HAND, expected_report, hang_blocker
from tests.helpers import (
    EMULATED,
    ROLE_SCENARIO,
    admin_client,
    grant_inline,
    invoke,
    leftovers,
    open_store,
)

pytestmark = pytest.mark.usefixtures("aws")
JOB_TAGS = [{"Key": "job:managed-by", "Value": "job"}, {"Key": "job:run-id", "Value": "orphan0001"}]


def _for_moto(policy: dict[str, Any], without: frozenset[str]) -> dict[str, Any]:
    for statement in policy["Statement"]:
        if all(action.startswith(("iam:", "sts:")) for action in statement["Action"]):
            statement["Resource"] = "*"
            statement.pop("Condition", None)
        if statement["Sid"] == "JobBuckets":
            statement["Action"] += [
                action for action in ("s3:HeadBucket", "s3:DeleteObject") if action not in without
            ]
    return policy


def _become_least_privileged(
    aws,
    monkeypatch,
    without: frozenset[str] = frozenset(),
    kinds: Any = None,
    janitor=False,
    existing_roles: tuple[str, ...] = (),
) -> None:
    """Create a runner holding only the runner policy (less `without`; for `kinds` only, when
    given; with the janitor grant, with `janitor`; allowed to assume `existing_roles`) and use
    its keys."""
    iam = admin_client(aws, "iam")
    name = f"least-{janitor:d}{len(without)}-{'-'.join(sorted(without)).replace(':', '.')}"[:60]
    policy = runner_policy(
        "job", without=without, kinds=kinds, janitor=janitor, existing_roles=existing_roles
    )
    policy = _for_moto(policy, without)
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
    listed = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert listed == required_actions()
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources == {
        "Unscoped": "*",
        "JobPolicyAttachments": "*",  # with a condition naming the job's policies
        "JobPolicies": "arn:aws:iam::*:policy/job/canary-*",
        "JobRoles": "arn:aws:iam::*:role/job/canary-*",
        "JobUsers": "arn:aws:iam::*:user/job/canary-*",
        "JobGroups": "arn:aws:iam::*:group/job/canary-*",
        "JobBuckets": "arn:aws:s3:::canary-*",
        "JobObjects": "arn:aws:s3:::canary-*/*",
    }
    assert "sts:GetCallerIdentity" not in listed, "it needs no permission"
    # Assuming the job's roles, and only those: no iam:PassRole, nothing unscoped.
    [roles] = [s for s in policy["Statement"] if s["Sid"] == "JobRoles"]
    assert "sts:AssumeRole" in roles["Action"] and "iam:PassRole" not in listed


def test_a_scenario_without_roles_gets_no_role_permissions() -> None:
    naming = Naming("job", "abcdefghij", "123456789012", "aws")
    seed = runner_policy("job", kinds=scenario_kinds(compile_source(seed_source(), naming)))
    listed = {a for statement in seed["Statement"] for a in statement["Action"]}
    # The sweep's listing of roles stays: a leaked role is found whatever the scenario.
    sweeps_roles = {"iam:ListRoles", "iam:ListRoleTags"}
    assert sweeps_roles <= listed
    assert not any("Role" in a for a in listed - {"iam:DetachRolePolicy", *sweeps_roles})
    assert "sts:AssumeRole" not in listed
    [roles] = [s for s in seed["Statement"] if s["Sid"] == "JobRoles"]
    assert roles["Action"] == ["iam:ListRoleTags"]
    # DetachRolePolicy stays only to take the job's policy off whatever role holds it.
    [detaching] = [s for s in seed["Statement"] if "iam:DetachRolePolicy" in s["Action"]]
    assert detaching["Sid"] == "JobPolicyAttachments"
    # The seed's kinds are every kind but the roles' and the groups': the same policy as before
    # roles and groups came, and the sweep's listings.
    # A user's delete still lists its groups (IAM refuses DeleteUser while it is in one).
    outside = {"iam:DetachGroupPolicy", "iam:ListGroups", "iam:ListGroupsForUser"}
    assert not any("Group" in a for a in listed - outside)
    everything = runner_policy("job")
    assert listed == required_actions() - {
        a
        for s in everything["Statement"]
        if s["Sid"] in ("JobRoles", "JobGroups")
        for a in s["Action"]
    } | {"iam:ListRoleTags", "iam:DetachRolePolicy", "iam:DetachGroupPolicy"}


def test_runner_policy_prints_the_document(capsys) -> None:
    for args in (["runner-policy"], ["runner-policy", "--output", "json", "--prefix", "canary"]):
        result = invoke(capsys, *args)
        assert result.exit_code == 0
        prefix = "canary" if "canary" in args else "job"
        assert json.loads(result.stdout) == runner_policy(prefix)
    janitor = invoke(capsys, "runner-policy", "--janitor", "--prefix", "canary")
    assert janitor.exit_code == 0, janitor.stderr
    assert json.loads(janitor.stdout) == runner_policy("canary", janitor=True)


def _orphan_role(aws: EmulatorCredentials) -> str:
    """A role of a lost run, tagged as the job's under /job/, with its policy attached."""
    iam = admin_client(aws, "iam")
    name = "job-orphan0001-auditor"
    iam.create_role(
        RoleName=name, Path="/job/", AssumeRolePolicyDocument=ASSUME_ROLE, Tags=JOB_TAGS
    )
    policy = iam.create_policy(
        PolicyName=f"not-the-jobs-{name}",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        ),
    )
    iam.attach_role_policy(RoleName=name, PolicyArn=policy["Policy"]["Arn"])
    return name


def test_the_policy_is_enough_for_run_sweep_and_stale_teardown(
    aws: EmulatorCredentials, sqlite_url: str, capsys, monkeypatch
) -> None:
    admin_client(aws, "iam").create_user(
        UserName="job-orphan0001-writer", Path="/job/", Tags=JOB_TAGS
    )
    role = _orphan_role(aws)
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
        ("job-orphan0001-writer", "deleted"),
        (role, "deleted"),
    ]
    assert leftovers(aws, stale) == [] and leftovers(aws, run.json()["run_id"]) == []


# Each of these, taken away, makes a plain `job run` fail, naming the action.
NEEDED_BY_A_RUN = [
    "iam:AttachUserPolicy",
    "iam:CreateAccessKey",
    "iam:CreatePolicy",
    "iam:CreateUser",
    "iam:DeleteAccessKey",
    "iam:DeletePolicy",
    "iam:DeleteUser",
    "iam:DetachUserPolicy",
    "iam:ListAccessKeys",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteObject",
    "s3:PutBucketTagging",
    "s3:PutObject",
]
# Needed to ask AWS whose a resource is: a `job run` knows what it made under its hold and does
# not ask, but a teardown in another process (after a crash, the janitor) must.
NEEDED_BY_A_TEARDOWN_ELSEWHERE = ["iam:ListPolicyTags", "iam:ListUserTags", "s3:GetBucketTagging"]
# Needed only in a situation a plain run does not meet; `situation` makes it before teardown.
# The listings among them find what blocks a delete AWS refused: a run's own teardown has
# taken off everything the run hung on its resources, and is not refused.
NEEDED_IN_A_SITUATION = [
    "iam:ListAttachedUserPolicies",
    "iam:ListUserPolicies",
    "iam:ListGroupsForUser",
    "iam:DeleteLoginProfile",
    "iam:ListEntitiesForPolicy",
    "iam:ListPolicyVersions",
    "s3:ListBucketVersions",
    "s3:ListBucketMultipartUploads",
    "iam:DeleteUserPolicy",
    "iam:DetachGroupPolicy",
    "iam:DetachRolePolicy",
    "iam:DeletePolicyVersion",
    "iam:ListMFADevices",
    "iam:ListSigningCertificates",
    "iam:DeleteSigningCertificate",
    "iam:ListSSHPublicKeys",
    "iam:DeleteSSHPublicKey",
    "s3:AbortMultipartUpload",
]
# With an orphaned role in the account (its tags are read only then).
NEEDED_BY_SWEEP = [
    "iam:ListUsers",
    "iam:ListRoles",
    "iam:ListRoleTags",
    "iam:ListPolicies",
    "iam:ListGroups",
    "s3:ListAllMyBuckets",
]
# Each of these, taken away, makes a run of a scenario with a role fail, naming the action.
NEEDED_BY_A_ROLE_RUN = [
    "iam:CreateRole",
    "iam:AttachRolePolicy",
    "iam:ListRoleTags",
    "iam:ListAttachedRolePolicies",
    "iam:DeleteRole",
    "sts:AssumeRole",
    # verify --measure-revocation revokes the role's sessions, and takes that off again.
    "iam:PutRolePolicy",
]
# Needed to tear a role down only when something hangs on it; `role_situation` makes it.
NEEDED_IN_A_ROLE_SITUATION = [
    # The listings of what blocks a DeleteRole AWS refused (an inline policy, here).
    "iam:ListRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:DeleteRolePolicy",
    # To look at a session revocation a verify killed half way left on the role.
    "iam:GetRolePolicy",
]
# The janitor grant's (`runner-policy --janitor`), each needed to take a job principal out of
# what someone else hung on it (tests.functional.test_janitor.hang_blocker makes it).
NEEDED_BY_THE_JANITOR = {
    "iam:RemoveUserFromGroup": "group",
    "iam:DeactivateMFADevice": "mfa",
    "iam:DeleteVirtualMFADevice": "mfa",
    "iam:RemoveRoleFromInstanceProfile": "instance profile",
}
# Needed to resume a provision killed right after it put an object: is the object there?
NEEDED_TO_RESUME = ["s3:GetObject"]
# Each of these, taken away, makes a run of examples/groups.yaml fail, naming the action: "run"
# in a plain run; "elsewhere" only when a teardown in another process must ask whose the group
# and its attachments are; "situation" only when someone else put an inline policy on the run's
# group, so that AWS refuses DeleteGroup until the policy is deleted.
NEEDED_BY_A_GROUP_RUN = {
    "iam:CreateGroup": "run",
    "iam:AddUserToGroup": "run",
    "iam:AttachGroupPolicy": "run",
    "iam:RemoveUserFromGroup": "run",
    "iam:DetachGroupPolicy": "run",
    "iam:DeleteGroup": "run",
    "iam:GetGroup": "elsewhere",
    "iam:ListAttachedGroupPolicies": "elsewhere",
    "iam:ListGroupPolicies": "situation",
    "iam:DeleteGroupPolicy": "situation",
}
# What moto cannot show, and why. Each is in the policy for AWS's sake.
NOT_PROVABLE_ON_MOTO = {
    "iam:TagUser": "moto does not require it for CreateUser with Tags (AWS does)",
    "iam:TagPolicy": "moto does not require it for CreatePolicy with Tags (AWS does)",
    "s3:ListBucket": "moto authorizes HeadBucket as s3:HeadBucket",
    "s3:PutBucketPublicAccessBlock": "moto authorizes it under another name",
    "s3:PutEncryptionConfiguration": "moto authorizes PutBucketEncryption under another name",
    "s3:PutBucketOwnershipControls": "moto authorizes it under another name",
    "s3:PutBucketPolicy": "only with the TLS-only policy, which no plain-HTTP emulator can take",
    "s3:DeleteObjectVersion": "moto authorizes DeleteObjects as s3:DeleteObject on the bucket",
    "iam:ListServiceSpecificCredentials": "moto does not implement it",
    "iam:DeleteServiceSpecificCredential": "moto does not implement it",
    "iam:TagRole": "moto does not require it for CreateRole with Tags (AWS does)",
}


def test_every_action_is_accounted_for() -> None:
    """A new action in a declaration must be shown to be needed, or said why it cannot be."""
    shown = {
        *NEEDED_BY_A_RUN,
        *NEEDED_BY_A_TEARDOWN_ELSEWHERE,
        *NEEDED_TO_RESUME,
        *NEEDED_IN_A_SITUATION,
        *NEEDED_BY_SWEEP,
        *NEEDED_BY_A_ROLE_RUN,
        *NEEDED_IN_A_ROLE_SITUATION,
        *NEEDED_BY_A_GROUP_RUN,
    }
    assert shown.isdisjoint(NOT_PROVABLE_ON_MOTO)
    # RemoveUserFromGroup is the group kinds' on the job's groups, the janitor's on anyone's.
    assert shown.isdisjoint(set(NEEDED_BY_THE_JANITOR) - {"iam:RemoveUserFromGroup"})
    assert shown | set(NOT_PROVABLE_ON_MOTO) == required_actions()
    janitors = {
        action
        for statement in runner_policy("job", janitor=True)["Statement"]
        if statement["Sid"].startswith("Janitor")
        for action in statement["Action"]
    }
    assert janitors == set(NEEDED_BY_THE_JANITOR)


@pytest.mark.parametrize("action", NEEDED_BY_A_RUN)
def test_without_an_action_the_run_fails_and_names_it(
    action: str, aws, sqlite_url: str, capsys, monkeypatch
) -> None:
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}))
    result = invoke(capsys, "run", "--database-url", sqlite_url, "--output", "json")
    assert result.exit_code == 4, result.stdout
    # Said in the one JSON object: as the run's error, or as why its checks have no answer.
    assert f"lack {action}" in json.dumps(result.json())


@pytest.mark.parametrize("action", NEEDED_TO_RESUME)
def test_without_an_action_a_killed_provision_cannot_be_resumed(
    action: str, aws, sqlite_url: str, capsys, monkeypatch
) -> None:
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws("us-east-1"), "job", EMULATED)
        with pytest.raises(Crash):
            provision(
                store,
                make_aws("us-east-1", call_hooks=[DieAfter("PutObject")]),
                run_id=run.id,
                concurrency=1,
            )
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}))
    resumed = invoke(
        capsys,
        *("provision", "--run-id", run.id, "--database-url", sqlite_url, "--output", "json"),
    )
    assert resumed.exit_code == 4, resumed.stdout
    assert f"lack {action}" in resumed.json()["error"]


@pytest.mark.parametrize("action", NEEDED_BY_A_TEARDOWN_ELSEWHERE)
def test_without_an_action_a_teardown_in_another_process_fails_and_names_it(
    action: str, aws, sqlite_url: str, capsys, monkeypatch
) -> None:
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}))
    provisioned = invoke(capsys, "provision", "--database-url", sqlite_url)
    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()
    result = invoke(
        capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url, "--output", "json"
    )
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


ASSUME_ROLE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
SSH_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDA1k0YsQe7p3Yw2m2vF9uWm3l7q9c0rj0d5pq3c2x1kGJbT8k"
    "5eP3Jp2Lq2p3Yz9l0x7m6b5a4c3d2e1f0 someone@example"
)


def _self_signed_certificate() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "job-test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def situation(action: str, aws: EmulatorCredentials, run_id: str) -> None:
    """Hang on the run's resources what makes `action` necessary to tear them down."""
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    writer, reader = f"job-{run_id}-writer", f"job-{run_id}-reader"
    policy = f"arn:aws:iam::123456789012:policy/job/job-{run_id}-writer"
    if action in (
        "iam:DeleteUserPolicy",
        "iam:ListAttachedUserPolicies",
        "iam:ListUserPolicies",
        "iam:ListGroupsForUser",
    ):
        # Any one blocker: AWS refuses DeleteUser, and every listing is made to find it.
        grant_inline(iam, reader, "s3:ListBucket", "*")
    elif action == "iam:DeleteLoginProfile":
        iam.create_login_profile(UserName=reader, Password="a-Password-nobody-uses-1")
    elif action == "iam:DetachGroupPolicy":
        iam.create_group(GroupName=f"g-{run_id}")
        iam.attach_group_policy(GroupName=f"g-{run_id}", PolicyArn=policy)
    elif action == "iam:DetachRolePolicy":
        # Somebody else's role (its name does not carry the run's id: it is not the run's).
        iam.create_role(RoleName="someone-elses-role", AssumeRolePolicyDocument=ASSUME_ROLE)
        iam.attach_role_policy(RoleName="someone-elses-role", PolicyArn=policy)
    elif action in (
        "iam:DeletePolicyVersion",
        "iam:ListEntitiesForPolicy",
        "iam:ListPolicyVersions",
    ):
        document = iam.get_policy_version(PolicyArn=policy, VersionId="v1")["PolicyVersion"]
        iam.create_policy_version(
            PolicyArn=policy, PolicyDocument=json.dumps(document["Document"]), SetAsDefault=True
        )
    elif action == "iam:DeleteSigningCertificate":
        iam.upload_signing_certificate(UserName=writer, CertificateBody=_self_signed_certificate())
    elif action in (
        # A rare blocker: the second round of listings (MFA devices first) is made to find it.
        "iam:ListMFADevices",
        "iam:ListSigningCertificates",
        "iam:ListSSHPublicKeys",
        "iam:DeleteSSHPublicKey",
    ):
        iam.upload_ssh_public_key(UserName=writer, SSHPublicKeyBody=SSH_KEY)
    elif action in ("s3:ListBucketVersions", "s3:ListBucketMultipartUploads"):
        # An object the run did not write: S3 refuses DeleteBucket, and the bucket is listed.
        s3.put_object(Bucket=f"job-{run_id}-data", Key="someone/elses.txt", Body=b"x")
    elif action == "s3:AbortMultipartUpload":
        s3.create_multipart_upload(Bucket=f"job-{run_id}-data", Key="half/uploaded")
    else:  # pragma: no cover - the list above and NEEDED_IN_A_SITUATION go together
        raise AssertionError(action)


@pytest.mark.parametrize("action", NEEDED_IN_A_SITUATION)
def test_without_an_action_a_situation_cannot_be_torn_down(
    action: str, aws, sqlite_url: str, capsys, monkeypatch
) -> None:
    # A first teardown that fails half way may leave a row whose resource went with another's
    # deletion (an attachment, with its policy): the next one waits out the propagation window
    # before it believes a resource recorded moments ago is gone. A short window here.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    run_id = invoke(capsys, "provision", "--database-url", sqlite_url).stdout.strip()
    situation(action, aws, run_id)
    # AWS's refusals where moto would delete regardless (a user with an SSH key, say).
    strict = StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}))
    result = invoke(
        capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url, hooks=[strict]
    )
    assert result.exit_code == 4, result.stderr
    assert f"lack {action}" in result.stderr
    # With the whole policy, the same teardown finishes.
    _become_least_privileged(aws, monkeypatch)
    result = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url)
    assert result.exit_code == 0, result.stderr
    assert leftovers(aws, run_id) == []


@pytest.mark.parametrize("action", NEEDED_BY_SWEEP)
def test_without_an_action_sweep_fails_and_names_it(action: str, aws, capsys, monkeypatch) -> None:
    _orphan_role(aws)
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}))
    result = invoke(capsys, "sweep")
    assert result.exit_code == 4
    assert f"lack {action}" in result.stderr


def _role_run(database_url: str, *, situation: Any = None) -> str:
    """Provision, verify and tear down the role scenario as whoever the environment's keys are;
    returns the run id. AwsError, naming what the job lacks, when something failed."""
    job_aws = make_aws("us-east-1", propagation_timeout=timedelta(seconds=1))
    with open_store(database_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
        run = verify(store, job_aws, run_id=run.id, measure_revocation=True)
        unanswered = [c.detail for c in store.latest_checks(run) if not c.passed]
        if unanswered:  # a check that could not be made says why, e.g. AssumeRole refused
            raise AwsError(f"verify of run {run.id}: {unanswered[0]}")
        assert run.status is RunStatus.VERIFIED
        assert set(run.measurements["revocation_seconds"]) == {"writer", "auditor"}
        teardown(store, job_aws, run_id=run.id)
    return run.id


def _role_kinds() -> Any:
    return scenario_kinds(compile_source(ROLE_SCENARIO, Naming.placeholder("job", "aws")))


def test_a_role_scenario_works_with_exactly_its_derived_policy(
    aws, sqlite_url: str, monkeypatch
) -> None:
    kinds = _role_kinds()
    assert {
        "iam_role",
        "iam_role_policy_attachment",
        "iam_access_key",
        "iam_role_session_revocation",
    } <= set(kinds)
    _become_least_privileged(aws, monkeypatch, kinds=kinds)
    run_id = _role_run(sqlite_url)
    assert leftovers(aws, run_id) == []


@pytest.mark.parametrize("action", NEEDED_BY_A_ROLE_RUN)
def test_without_an_action_a_role_run_fails_and_names_it(
    action: str, aws, sqlite_url: str, monkeypatch
) -> None:
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}), kinds=_role_kinds())
    with pytest.raises(AwsError, match=f"lack {action}"):
        _role_run(sqlite_url)


@pytest.mark.parametrize("action", NEEDED_IN_A_ROLE_SITUATION)
def test_without_an_action_a_role_situation_cannot_be_torn_down(
    action: str, aws, sqlite_url: str, monkeypatch
) -> None:
    iam = admin_client(aws, "iam")
    job_aws = make_aws("us-east-1")
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
    role = f"job-{run.id}-auditor"
    if action in (
        "iam:DeleteRolePolicy",
        "iam:ListRolePolicies",
        "iam:ListInstanceProfilesForRole",
    ):
        iam.put_role_policy(
            RoleName=role,
            PolicyName="extra",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
    elif action == "iam:GetRolePolicy":
        with open_store(sqlite_url) as store, pytest.raises(Crash):
            verify(
                store,
                make_aws("us-east-1", call_hooks=[DieAfter("PutRolePolicy")]),
                run_id=run.id,
                measure_revocation=True,
            )
    else:  # pragma: no cover - the list above and NEEDED_IN_A_ROLE_SITUATION go together
        raise AssertionError(action)
    strict = StrictAws(iam, admin_client(aws, "s3"))
    # As above: a short propagation window for rows the failed teardown left behind.
    window = timedelta(seconds=1)
    _become_least_privileged(aws, monkeypatch, without=frozenset({action}), kinds=_role_kinds())
    with open_store(sqlite_url) as store, pytest.raises(AwsError, match=f"lack {action}"):
        teardown(
            store,
            make_aws("us-east-1", call_hooks=[strict], propagation_timeout=window),
            run_id=run.id,
        )
    _become_least_privileged(aws, monkeypatch, kinds=_role_kinds())
    with open_store(sqlite_url) as store:
        teardown(
            store,
            make_aws("us-east-1", call_hooks=[strict], propagation_timeout=window),
            run_id=run.id,
        )
    assert leftovers(aws, run.id) == []


@pytest.mark.parametrize("action", sorted(NEEDED_BY_THE_JANITOR))
def test_what_others_hung_on_a_principal_needs_the_janitor_grant(
    action: str, aws, sqlite_url: str, monkeypatch
) -> None:
    """The printed policy refuses to take a job principal out of someone else's group or
    instance profile, or off an MFA device, and teardown says what to remove; the janitor
    policy removes it, and without `action` it cannot."""
    blocker = NEEDED_BY_THE_JANITOR[action]
    job_aws = make_aws("us-east-1")
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
    hang_blocker(aws, run.id, blocker)
    strict = StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))
    kinds = _role_kinds()

    def tear_down() -> None:
        # As the environment's keys, with a short propagation window (as above) for rows the
        # failed teardown left behind.
        window = timedelta(seconds=1)
        job_aws = make_aws("us-east-1", call_hooks=[strict], propagation_timeout=window)
        with open_store(sqlite_url) as store:
            teardown(store, job_aws, run_id=run.id)

    _become_least_privileged(aws, monkeypatch, kinds=kinds)
    with pytest.raises(AwsError) as refused:
        tear_down()
    assert all(said in refused.value.message for said in expected_report(run.id, blocker))

    _become_least_privileged(
        aws, monkeypatch, without=frozenset({action}), kinds=kinds, janitor=True
    )
    with pytest.raises(AwsError) as refused:
        tear_down()
    assert BY_HAND[action] in refused.value.message
    assert "`job runner-policy --janitor`" in refused.value.message

    _become_least_privileged(aws, monkeypatch, kinds=kinds, janitor=True)
    tear_down()
    assert leftovers(aws, run.id) == []


RICHEST = Path(__file__).parents[2] / "examples" / "data-platform.yaml"


def _richest_run(aws: Any, sqlite_url: str) -> str:
    source = read_source(str(RICHEST))
    job_aws = make_aws("us-east-1", propagation_timeout=timedelta(seconds=1))
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, source)
        provision(store, job_aws, run_id=run.id)
        run = verify(store, job_aws, run_id=run.id)
        assert [c.detail for c in store.latest_checks(run) if not c.passed] == []
        teardown(store, job_aws, run_id=run.id)
    return run.id


def _richest_kinds() -> Any:
    source = read_source(str(RICHEST))
    return scenario_kinds(compile_source(source, Naming.placeholder("job", "aws")))


def _richest_existing_roles() -> tuple[str, ...]:
    source = read_source(str(RICHEST))
    scenario = compile_source(source, Naming.placeholder("job", "aws"))
    return tuple(scenario.existing_roles.values())


def test_the_richest_example_works_with_exactly_its_derived_policy(
    aws, existing_resources, sqlite_url: str, monkeypatch
) -> None:
    """A bucket policy, a boundary of the run's own, an AWS-managed policy attached to a group,
    a role with a session policy, an existing role: `job runner-policy --scenario` of that file
    is enough for all of it."""
    _become_least_privileged(
        aws, monkeypatch, kinds=_richest_kinds(), existing_roles=_richest_existing_roles()
    )
    assert leftovers(aws, _richest_run(aws, sqlite_url)) == []


# What only the richest example's features call (the others are held by the tests above).
@pytest.mark.parametrize("action", ["s3:PutBucketPolicy", "iam:AttachUserPolicy"])
def test_without_an_action_the_richest_run_fails_and_names_it(
    action: str, aws, existing_resources, sqlite_url: str, monkeypatch
) -> None:
    _become_least_privileged(
        aws,
        monkeypatch,
        without=frozenset({action}),
        kinds=_richest_kinds(),
        existing_roles=_richest_existing_roles(),
    )
    with pytest.raises(AwsError, match=f"lack {action}"):
        _richest_run(aws, sqlite_url)


GROUPS = Path(__file__).parents[2] / "examples" / "groups.yaml"


def _group_kinds() -> Any:
    return scenario_kinds(
        compile_source(read_source(str(GROUPS)), Naming.placeholder("job", "aws"))
    )


def _group_run(
    sqlite_url: str, how: str, aws: Any, monkeypatch: Any, without: frozenset[str]
) -> str:
    """examples/groups.yaml provisioned, verified and torn down under the groups example's
    runner policy less `without`: in one process ("run"), or torn down in another, after
    someone else put an inline policy on the group ("situation"). Returns the run id; AwsError
    naming what the runner lacks, when something failed."""
    source = read_source(str(GROUPS))
    window = timedelta(seconds=1)
    job_aws = make_aws("us-east-1", propagation_timeout=window)
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, source)
        if how != "run":  # made as the admin: only the teardown is under test
            provision(store, job_aws, run_id=run.id)
        _become_least_privileged(aws, monkeypatch, without=without, kinds=_group_kinds())
        job_aws = make_aws(
            "us-east-1",
            call_hooks=[StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))],
            propagation_timeout=window,
        )
        if how == "run":
            provision(store, job_aws, run_id=run.id)
            run = verify(store, job_aws, run_id=run.id)
            assert [c.detail for c in store.latest_checks(run) if not c.passed] == []
        if how == "situation":
            admin_client(aws, "iam").put_group_policy(
                GroupName=f"job-{run.id}-analysts",
                PolicyName="someone-elses",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}
                        ],
                    }
                ),
            )
        teardown(store, job_aws, run_id=run.id)
    return run.id


@pytest.mark.parametrize("how", ["run", "elsewhere", "situation"])
def test_the_groups_example_works_with_exactly_its_derived_policy(
    how: str, aws, sqlite_url: str, monkeypatch
) -> None:
    """Groups, their policies and memberships: `job runner-policy --scenario` of the file is
    enough to make, prove and take away all of it, whoever tears it down."""
    assert leftovers(aws, _group_run(sqlite_url, how, aws, monkeypatch, frozenset())) == []


@pytest.mark.parametrize("action", sorted(NEEDED_BY_A_GROUP_RUN))
def test_without_an_action_a_group_run_fails_and_names_it(
    action: str, aws, sqlite_url: str, monkeypatch
) -> None:
    how = NEEDED_BY_A_GROUP_RUN[action]
    with pytest.raises(AwsError, match=f"lack {action}"):
        _group_run(sqlite_url, how, aws, monkeypatch, frozenset({action}))
