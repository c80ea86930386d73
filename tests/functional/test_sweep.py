"""`job sweep` over an account with more than a thousand users under the job's path."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from job.emulator import EmulatorCredentials
from tests.helpers import admin_client, invoke, leftovers

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
