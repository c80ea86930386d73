"""The runner policy writes only to what is the job's; what someone else hung on a job principal
is removed only with the janitor grant (`job runner-policy --janitor`), and without it teardown
stops and says exactly what blocks it.

moto authorizes IAM actions against "*" and evaluates no IAM condition key, so the scoping is
held here on the document itself, statement by statement, against where IAM authorizes each
action (the Service Authorization Reference); teardown's report is shown through
tests.faults.WithoutJanitorGrant, which refuses the janitor's calls as AWS refuses them to a
runner without that grant.
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from job.aws.iam.common import JANITOR
from job.aws.kinds import HANDLERS
from job.aws.session import make_aws
from job.emulator import EmulatorCredentials
from job.ledger.models import ResourceState, RunStatus
from job.permissions import required_actions, runner_policy
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from tests.faults import StrictAws, WithoutJanitorGrant
from tests.helpers import EMULATED, ROLE_SCENARIO, admin_client, invoke, leftovers, open_store

JANITOR_ACTIONS = {
    "iam:RemoveUserFromGroup",
    "iam:DeactivateMFADevice",
    "iam:DeleteVirtualMFADevice",
    "iam:RemoveRoleFromInstanceProfile",
}
DETACH_ACTIONS = {"iam:DetachGroupPolicy", "iam:DetachRolePolicy", "iam:DetachUserPolicy"}


def _is_listing(action: str) -> bool:
    """A call that reads, and writes nothing: IAM's and S3's listings and reads."""
    return action.split(":", 1)[1].startswith(("List", "Get"))


@pytest.mark.parametrize("janitor", [False, True], ids=["default", "janitor"])
def test_no_iam_write_is_granted_on_anything_but_the_jobs_own(janitor: bool) -> None:
    policy = runner_policy("canary", janitor=janitor)
    jobs = {
        "arn:aws:iam::*:user/job/canary-*",
        "arn:aws:iam::*:role/job/canary-*",
        "arn:aws:iam::*:policy/job/canary-*",
        "arn:aws:iam::*:group/job/canary-*",
    }
    for statement in policy["Statement"]:
        writes = {a for a in statement["Action"] if a.startswith("iam:") and not _is_listing(a)}
        resource = statement["Resource"]
        if not writes:
            continue
        if statement["Sid"].startswith("Janitor"):
            # On someone else's group, device or profile: narrowed to that type, at least.
            assert resource != "*" and "Condition" not in statement, statement
        elif resource == "*":
            # On anything: only detaching, and only the job's own policies.
            assert writes <= DETACH_ACTIONS and "Condition" in statement, statement
        else:
            assert resource in jobs and "Condition" not in statement, statement
    unconditioned = [
        s for s in policy["Statement"] if s["Resource"] == "*" and "Condition" not in s
    ]
    assert all(_is_listing(a) for s in unconditioned for a in s["Action"]), unconditioned


def test_each_detach_from_anything_names_the_jobs_policies() -> None:
    """DetachGroupPolicy, DetachRolePolicy and DetachUserPolicy are authorized on the group, role
    or user the policy is detached from, and support iam:PolicyARN: on anything not the job's,
    only the job's own policies may be detached. Not the job's roles' and users' own policies:
    those are detached by their ARNs."""
    policy = runner_policy("canary", partition="aws-cn")
    for statement in policy["Statement"]:
        detaching = DETACH_ACTIONS & set(statement["Action"])
        if not detaching:
            continue
        if statement["Resource"] == "*":
            assert statement["Condition"] == {
                "ArnLike": {"iam:PolicyARN": "arn:aws-cn:iam::*:policy/job/canary-*"}
            }
            assert detaching == DETACH_ACTIONS and statement["Action"] == sorted(DETACH_ACTIONS)
        else:
            assert statement["Resource"] in {
                "arn:aws-cn:iam::*:user/job/canary-*",
                "arn:aws-cn:iam::*:role/job/canary-*",
                "arn:aws-cn:iam::*:group/job/canary-*",
            }
            assert "Condition" not in statement
    conditioned = [s for s in policy["Statement"] if "Condition" in s]
    assert [s["Sid"] for s in conditioned] == ["JobPolicyAttachments"]


def test_the_janitor_grant_is_absent_by_default_and_added_apart() -> None:
    default, janitor = runner_policy("canary"), runner_policy("canary", janitor=True)
    granted = {a for s in default["Statement"] for a in s["Action"]}
    # RemoveUserFromGroup is the job's on its own groups (a run's memberships), and the
    # janitor's on anyone's: the default grants no janitor action beyond the job's own.
    own = {"iam:RemoveUserFromGroup"}
    assert not granted & (JANITOR_ACTIONS - own)
    for statement in default["Statement"]:
        if own & set(statement["Action"]):
            assert statement["Resource"] == "arn:aws:iam::*:group/job/canary-*", statement
    assert granted == required_actions()
    # The same policy, then the janitor's statements, each scoped as far as IAM allows.
    count = len(default["Statement"])
    assert janitor["Statement"][:count] == default["Statement"]
    added = {s["Sid"]: (s["Action"], s["Resource"]) for s in janitor["Statement"][count:]}
    assert added == {
        # IAM authorizes these on the group, the device and the profile: someone else's, named
        # as they like; only their resource type narrows them.
        "JanitorGroups": (["iam:RemoveUserFromGroup"], "arn:aws:iam::*:group/*"),
        "JanitorMFADevices": (["iam:DeleteVirtualMFADevice"], "arn:aws:iam::*:mfa/*"),
        "JanitorInstanceProfiles": (
            ["iam:RemoveRoleFromInstanceProfile"],
            "arn:aws:iam::*:instance-profile/*",
        ),
        # Authorized on the user: the job's own.
        "JanitorJobUsers": (["iam:DeactivateMFADevice"], "arn:aws:iam::*:user/job/canary-*"),
    }
    assert required_actions(janitor=True) - required_actions() == JANITOR_ACTIONS - own
    # Declared by the kinds whose delete makes them, beside their verbs.
    declared = {a for handler in HANDLERS.values() for a in handler.permissions.get(JANITOR, ())}
    assert declared == JANITOR_ACTIONS


def test_runner_policy_janitor_is_the_command_line_flag(capsys, tmp_path) -> None:
    printed = invoke(capsys, "runner-policy", "--janitor", "--prefix", "canary")
    assert printed.exit_code == 0, printed.stderr
    assert json.loads(printed.stdout) == runner_policy("canary", janitor=True)
    # With a scenario, only its kinds' janitor statements: no roles, no instance profiles.
    users_only = tmp_path / "users.yaml"
    users_only.write_text(
        "version: 1\nusers: {outsider: {}}\n"
        "expect: [{principal: outsider, action: iam:ListUsers, resource: '*', result: deny}]\n"
    )
    narrow = invoke(capsys, "runner-policy", "--janitor", "--scenario", str(users_only))
    assert narrow.exit_code == 0, narrow.stderr
    sids = [s["Sid"] for s in json.loads(narrow.stdout)["Statement"]]
    assert "JanitorGroups" in sids and "JanitorInstanceProfiles" not in sids


# What someone else hangs on a job principal from outside, by the janitor actions that remove it.
BLOCKERS = {
    "group": ("iam:RemoveUserFromGroup",),
    "mfa": ("iam:DeactivateMFADevice", "iam:DeleteVirtualMFADevice"),
    "instance profile": ("iam:RemoveRoleFromInstanceProfile",),
}
# The command an operator would run instead, by janitor action.
BY_HAND = {
    "iam:RemoveUserFromGroup": "aws iam remove-user-from-group",
    "iam:DeactivateMFADevice": "aws iam deactivate-mfa-device",
    "iam:DeleteVirtualMFADevice": "aws iam delete-virtual-mfa-device",
    "iam:RemoveRoleFromInstanceProfile": "aws iam remove-role-from-instance-profile",
}


def hang_blocker(aws: EmulatorCredentials, run_id: str, blocker: str) -> Callable[[], bool]:
    """As someone else would, hang `blocker` on a principal of a ROLE_SCENARIO run: its writer in
    a group, an MFA device enabled for the writer, or its auditor role in an instance profile.
    Returns whether it is still hung there."""
    iam = admin_client(aws, "iam")
    writer, auditor = f"job-{run_id}-writer", f"job-{run_id}-auditor"
    if blocker == "group":
        iam.create_group(GroupName=f"g-{run_id}")
        iam.add_user_to_group(GroupName=f"g-{run_id}", UserName=writer)
        return lambda: bool(iam.get_group(GroupName=f"g-{run_id}")["Users"])
    if blocker == "mfa":
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"mfa-{run_id}")
        iam.enable_mfa_device(
            UserName=writer,
            SerialNumber=device["VirtualMFADevice"]["SerialNumber"],
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
        return lambda: bool(iam.list_mfa_devices(UserName=writer)["MFADevices"])
    assert blocker == "instance profile"
    iam.create_instance_profile(InstanceProfileName=f"p-{run_id}")
    iam.add_role_to_instance_profile(InstanceProfileName=f"p-{run_id}", RoleName=auditor)
    return lambda: bool(
        iam.get_instance_profile(InstanceProfileName=f"p-{run_id}")["InstanceProfile"]["Roles"]
    )


def expected_report(run_id: str, blocker: str) -> list[str]:
    """What the one line says of `blocker`: the principal, the blocker and the two fixes."""
    writer, auditor = f"job-{run_id}-writer", f"job-{run_id}-auditor"
    serial = f"arn:aws:iam::123456789012:mfa/mfa-{run_id}"
    named = {
        "group": [f"user {writer} is in group g-{run_id}"],
        "mfa": [f"user {writer} has MFA device {serial}"],
        "instance profile": [f"role {auditor} is in instance profile p-{run_id}"],
    }[blocker]
    return [*named, BY_HAND[BLOCKERS[blocker][0]], "`job runner-policy --janitor`"]


def _provisioned(database_url: str) -> str:
    job_aws = make_aws("us-east-1")
    with open_store(database_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
    return run.id


def _teardown(aws: EmulatorCredentials, database_url: str, run_id: str, *hooks: Any) -> None:
    strict = StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))
    job_aws = make_aws(
        "us-east-1", call_hooks=[strict, *hooks], propagation_timeout=timedelta(seconds=1)
    )
    with open_store(database_url) as store:
        teardown(store, job_aws, run_id=run_id)


@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_teardown_names_a_foreign_blocker_and_removes_it_only_with_the_janitor_grant(
    blocker: str, aws: EmulatorCredentials, database_url: str, capsys, monkeypatch
) -> None:
    run_id = _provisioned(database_url)
    still_hung = hang_blocker(aws, run_id, blocker)
    without_grant = WithoutJanitorGrant()

    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    strict = StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))
    refused = invoke(
        capsys,
        *("teardown", "--run-id", run_id, "--database-url", database_url),
        hooks=[strict, without_grant],
    )
    assert refused.exit_code == 4, refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert all(said in line for said in expected_report(run_id, blocker)), line
    assert "lack" not in line, "the usual grant is not what is missing"
    # AWS refused the removal, and so nothing of someone else's was touched: the principal stays,
    # its row says why, and everything else of the run is gone.
    assert without_grant.refused == [BLOCKERS[blocker][0].removeprefix("iam:")]
    assert still_hung()
    principal = (
        f"role job-{run_id}-auditor"
        if blocker == "instance profile"
        else (f"user job-{run_id}-writer")
    )
    assert leftovers(aws, run_id) == [principal]
    with open_store(database_url) as store:
        run = store.get_run(run_id)
        assert run.status is RunStatus.FAILED
        [row] = [r for r in run.resources if r.state is not ResourceState.DELETED]
        assert principal == f"{'role' if 'role' in row.kind else 'user'} {row.name}"
        assert row.error is not None
        assert all(said in row.error for said in expected_report(run_id, blocker)), row.error

    # With the janitor grant (an administrator has it), the same teardown removes the blocker.
    _teardown(aws, database_url, run_id)
    assert leftovers(aws, run_id) == []
    with open_store(database_url) as store:
        assert store.get_run(run_id).status is RunStatus.TORN_DOWN


def test_a_refused_blocker_is_reported_by_sweep_too(
    aws: EmulatorCredentials, sqlite_url: str, capsys
) -> None:
    """An orphan (no ledger knows it) in someone else's group: sweep says so, and goes on."""
    iam = admin_client(aws, "iam")
    tags = [{"Key": "job:managed-by", "Value": "job"}, {"Key": "job:run-id", "Value": "orphan0002"}]
    for name in ("job-orphan0002-writer", "job-orphan0002-reader"):
        iam.create_user(UserName=name, Path="/job/", Tags=tags)
    iam.create_group(GroupName="someone-elses")
    iam.add_user_to_group(GroupName="someone-elses", UserName="job-orphan0002-writer")
    strict = StrictAws(iam, admin_client(aws, "s3"))
    swept = invoke(
        capsys,
        *("sweep", "--execute", "--older-than", "0s", "--output", "json"),
        *("--database-url", sqlite_url),
        hooks=[strict, WithoutJanitorGrant()],
    )
    assert swept.exit_code == 4, swept.stdout
    outcomes = {r["name"]: (r["action"], r["error"]) for r in swept.json()["resources"]}
    assert outcomes["job-orphan0002-reader"] == ("deleted", None)
    action, error = outcomes["job-orphan0002-writer"]
    assert action == "failed"
    assert "user job-orphan0002-writer is in group someone-elses" in error
    assert "`job runner-policy --janitor`" in error
