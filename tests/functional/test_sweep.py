"""`job sweep` over an account with more than a thousand users under the job's path, and the
roles a lost ledger leaves behind."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from job.aws.session import make_aws
from job.emulator import EmulatorCredentials
from job.phases.provision import provision, start_run
from job.scenario_file import read_source
from tests.faults import StrictAws
from tests.helpers import EMULATED, ROLE_SCENARIO, admin_client, invoke, leftovers, open_store

pytestmark = pytest.mark.usefixtures("aws")
JOB_TAGS = [{"Key": "job:managed-by", "Value": "job"}, {"Key": "job:run-id", "Value": "lostrun001"}]
STRANGERS = 1_000  # under /job/ but without the job's tags: somebody else's
ORPHANS = 12  # tagged as the job's, in no ledger


def _populate(aws: EmulatorCredentials) -> None:
    iam = admin_client(aws, "iam")

    def make(index: int) -> None:
        if index < ORPHANS:
            iam.create_user(UserName=f"job-lostrun001-u{index}", Path="/job/", Tags=JOB_TAGS)
        else:
            iam.create_user(UserName=f"person-{index}", Path="/job/")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(make, range(ORPHANS + STRANGERS)))
    iam.create_user(UserName="elsewhere", Path="/people/", Tags=JOB_TAGS)  # not in the job's path
    iam.create_policy(
        PolicyName="job-lostrun001-writer",
        Path="/job/",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": "s3:GetObject", "Resource": "*"}]}',
        Tags=JOB_TAGS,
    )
    s3 = admin_client(aws, "s3")
    for bucket in ("job-lostrun001-data", "job-lostrun001-elsewhere"):  # a run's two buckets
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": JOB_TAGS})
    s3.create_bucket(Bucket="job-lostrun002-data")  # untagged: not ours to judge


def _user_count(aws: EmulatorCredentials) -> int:
    iam = admin_client(aws, "iam")
    return sum(len(page["Users"]) for page in iam.get_paginator("list_users").paginate())


def test_sweep_lists_then_deletes_only_tagged_orphans(aws, capsys) -> None:
    run_id = invoke(capsys, "provision").stdout.strip()  # accounted for by the ledger
    _populate(aws)
    users_before = _user_count(aws)
    assert users_before > 1_000

    listed = invoke(capsys, "sweep", "--output", "json")
    assert listed.exit_code == 0, listed.stderr
    found = {(r["kind"], r["name"]) for r in listed.json()["resources"]}
    assert found == {
        *{("iam_user", f"job-lostrun001-u{i}") for i in range(ORPHANS)},
        ("iam_policy", "job-lostrun001-writer"),
        ("s3_bucket", "job-lostrun001-data"),
        ("s3_bucket", "job-lostrun001-elsewhere"),
    }
    assert {r["action"] for r in listed.json()["resources"]} == {"listed"}
    assert _user_count(aws) == users_before, "a dry run changes nothing"

    young = invoke(capsys, "sweep", "--execute", "--output", "json")  # default --older-than 1h
    assert {r["action"] for r in young.json()["resources"]} == {"kept"}
    assert _user_count(aws) == users_before

    swept = invoke(capsys, "sweep", "--execute", "--older-than", "0s")
    assert swept.exit_code == 0, swept.stderr
    assert (
        sum(line.rstrip().endswith(" deleted") for line in swept.stdout.splitlines()) == ORPHANS + 3
    )
    assert _user_count(aws) == users_before - ORPHANS
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    assert iam.get_user(UserName="elsewhere")
    assert iam.get_user(UserName="person-500")
    assert [
        b["Name"] for b in s3.list_buckets(MaxBuckets=1000)["Buckets"] if "lostrun" in b["Name"]
    ] == ["job-lostrun002-data"]
    assert len(leftovers(aws, run_id)) == 6, "the ledger's run is untouched"

    again = invoke(capsys, "sweep")
    assert "nothing of the job's is outside the ledger" in again.stdout


TRUST_EC2 = json.dumps(
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
ANYTHING_S3 = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
)


def _role_exists(iam: Any, name: str) -> bool:
    try:
        iam.get_role(RoleName=name)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NoSuchEntity", error
        return False
    return True


def test_sweep_finds_and_deletes_an_orphaned_role_and_nothing_else(
    aws: EmulatorCredentials, sqlite_url: str, capsys
) -> None:
    """A role tagged as the job's under /job/ that no ledger accounts for is listed, then deleted
    with what AWS would refuse to delete it around; a role the ledger accounts for, one without
    the job's tags, one outside the job's path and one of another prefix are never touched."""
    job_aws = make_aws("us-east-1")
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
    accounted = f"job-{run.id}-auditor"

    iam = admin_client(aws, "iam")
    orphan = "job-lostrun003-auditor"
    iam.create_role(
        RoleName=orphan, Path="/job/", AssumeRolePolicyDocument=TRUST_EC2, Tags=JOB_TAGS
    )
    # What a run's role carries (a managed policy, here somebody else's) and what a person may
    # have put on it: AWS refuses DeleteRole while either is there (StrictAws below does too).
    foreign_policy = iam.create_policy(PolicyName="someone-elses", PolicyDocument=ANYTHING_S3)
    foreign_arn = foreign_policy["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=orphan, PolicyArn=foreign_arn)
    iam.put_role_policy(RoleName=orphan, PolicyName="extra", PolicyDocument=ANYTHING_S3)
    strangers = {
        "job-lostrun003-untagged": ("/job/", []),  # the job's name, not the job's tags
        "job-lostrun003-elsewhere": ("/people/", JOB_TAGS),  # not in the job's path
        "other-lostrun003-auditor": ("/job/", JOB_TAGS),  # another prefix's
    }
    for name, (path, tags) in strangers.items():
        iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=TRUST_EC2, Tags=tags)

    listed = invoke(capsys, "sweep", "--database-url", sqlite_url, "--output", "json")
    assert listed.exit_code == 0, listed.stderr
    [found] = listed.json()["resources"]
    assert {k: found[k] for k in ("kind", "name", "run_id", "action", "error")} == {
        "kind": "iam_role",
        "name": orphan,
        "run_id": "lostrun001",
        "action": "listed",
        "error": None,
    }
    assert found["created_at"]
    assert _role_exists(iam, orphan), "a dry run changes nothing"

    strict = StrictAws(iam, admin_client(aws, "s3"))
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
        hooks=[strict],
    )
    assert swept.exit_code == 0, swept.stdout + swept.stderr
    assert [(r["kind"], r["name"], r["action"]) for r in swept.json()["resources"]] == [
        ("iam_role", orphan, "deleted")
    ]
    # Refused once while the policies were on it, then cleared and deleted.
    assert strict.refused == ["DeleteRole"]
    assert not _role_exists(iam, orphan)
    # Only the role went: the policy it had is somebody else's, detached and kept.
    assert iam.get_policy(PolicyArn=foreign_arn)["Policy"]["AttachmentCount"] == 0
    assert all(_role_exists(iam, name) for name in (*strangers, accounted))
    assert f"role {accounted}" in leftovers(aws, run.id)

    again = invoke(capsys, "sweep", "--database-url", sqlite_url)
    assert "nothing of the job's is outside the ledger" in again.stdout


GROUPS = Path(__file__).parents[2] / "examples" / "groups.yaml"


def _group_exists(iam: Any, name: str) -> bool:
    try:
        iam.get_group(GroupName=name)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NoSuchEntity", error
        return False
    return True


def test_sweep_finds_a_group_by_its_path_and_name_and_deletes_only_it(
    aws: EmulatorCredentials, sqlite_url: str, capsys
) -> None:
    """A group cannot be tagged: one under /job/ named as the job names a run's, that no ledger
    accounts for, is the job's. It is listed with the run id its name holds, then deleted with
    its members taken out and its policies taken off (AWS refuses DeleteGroup before); a group
    the ledger accounts for, one outside the job's path, one of another prefix and one not named
    for a run are never touched, nor the user that was in it."""
    job_aws = make_aws("us-east-1")
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, read_source(str(GROUPS)))
        provision(store, job_aws, run_id=run.id)
    accounted = f"job-{run.id}-analysts"

    iam = admin_client(aws, "iam")
    orphan = "job-lostrun004-team"
    iam.create_group(GroupName=orphan, Path="/job/")
    iam.create_user(UserName="someone")  # somebody else's user, in the job's group
    iam.add_user_to_group(GroupName=orphan, UserName="someone")
    foreign_arn = iam.create_policy(PolicyName="someone-elses", PolicyDocument=ANYTHING_S3)[
        "Policy"
    ]["Arn"]
    iam.attach_group_policy(GroupName=orphan, PolicyArn=foreign_arn)
    iam.put_group_policy(GroupName=orphan, PolicyName="extra", PolicyDocument=ANYTHING_S3)
    strangers = {
        "job-lostrun004-elsewhere": "/people/",  # not in the job's path
        "other-lostrun004-team": "/job/",  # another prefix's
        "job-team": "/job/",  # the prefix, but no run id: not a name the job gives
    }
    for name, path in strangers.items():
        iam.create_group(GroupName=name, Path=path)

    listed = invoke(capsys, "sweep", "--database-url", sqlite_url, "--output", "json")
    assert listed.exit_code == 0, listed.stderr
    assert [
        (r["kind"], r["name"], r["run_id"], r["action"]) for r in listed.json()["resources"]
    ] == [("iam_group", orphan, "lostrun004", "listed")]
    assert _group_exists(iam, orphan), "a dry run changes nothing"

    strict = StrictAws(iam, admin_client(aws, "s3"))
    swept = invoke(
        capsys,
        *("sweep", "--execute", "--older-than", "0s", "--database-url", sqlite_url),
        *("--output", "json"),
        hooks=[strict],
    )
    assert swept.exit_code == 0, swept.stdout + swept.stderr
    assert [(r["name"], r["action"]) for r in swept.json()["resources"]] == [(orphan, "deleted")]
    # Refused once while the member and the policies were in it, then cleared and deleted.
    assert strict.refused == ["DeleteGroup"]
    assert not _group_exists(iam, orphan)
    assert iam.list_groups_for_user(UserName="someone")["Groups"] == []
    assert iam.get_policy(PolicyArn=foreign_arn)["Policy"]["AttachmentCount"] == 0
    assert all(_group_exists(iam, name) for name in (*strangers, accounted))
    assert f"group {accounted}" in leftovers(aws, run.id)
