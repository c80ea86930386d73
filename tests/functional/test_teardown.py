"""Teardown against AWS's stricter rules (enforced by a fake at the client boundary, since moto
would delete a user with keys still on it), and teardown's guards: nothing that is not the run's
is ever deleted."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from job.aws.session import make_aws
from job.errors import NotOurs
from job.ledger.models import ResourceState
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.vocabulary import ResourceKind
from tests.faults import CallLog, StrictAws
from tests.helpers import EMULATED, admin_client, grant_inline, invoke, leftovers, open_store

REGION = "us-east-1"
SSH_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDA1k0YsQe7p3Yw2m2vF9uWm3l7q9c0rj0d5pq3c2x1kGJbT8k"
    "5eP3Jp2Lq2p3Yz9l0x7m6b5a4c3d2e1f0 someone@example"
)


def _strict(aws) -> StrictAws:
    return StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3"))


@pytest.mark.usefixtures("aws")
def test_teardown_removes_everything_that_blocks_a_delete(aws, sqlite_url) -> None:
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        provision(store, make_aws(REGION), run_id=run.id)
    writer, reader, bucket = (f"job-{run.id}-{r}" for r in ("writer", "reader", "data"))
    policy_arn = f"arn:aws:iam::123456789012:policy/job/job-{run.id}-writer"

    # What a person, or a half-finished earlier verify, may have hung on the run's resources.
    iam.create_access_key(UserName=reader)
    grant_inline(iam, reader, "s3:ListBucket", "*")
    iam.create_group(GroupName=f"group-{run.id}")
    iam.add_user_to_group(GroupName=f"group-{run.id}", UserName=reader)
    iam.create_login_profile(UserName=reader, Password="Correct-Horse-9-Battery")
    iam.upload_ssh_public_key(UserName=writer, SSHPublicKeyBody=SSH_KEY)  # a rare blocker
    iam.create_policy_version(
        PolicyArn=policy_arn,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
            }
        ),
        SetAsDefault=True,
    )
    iam.create_user(UserName=f"outsider-{run.id}")
    iam.attach_user_policy(UserName=f"outsider-{run.id}", PolicyArn=policy_arn)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"1", b"2"):
        s3.put_object(Bucket=bucket, Key="many/versions.txt", Body=body)
    s3.delete_object(Bucket=bucket, Key="many/versions.txt")  # a delete marker

    strict, calls = _strict(aws), CallLog()
    with open_store(sqlite_url) as store:
        teardown(store, make_aws(REGION, call_hooks=[strict, calls]), run_id=run.id)
        assert {row.state for row in store.get_run(run.id).resources} == {ResourceState.DELETED}

    # Each delete is asked first. Refused, what blocks it is listed and removed, and it is asked
    # again: once for the reader, the policy and the bucket; the writer is refused a second time
    # for its SSH key, which is only looked for then.
    assert Counter(strict.refused) == {"DeleteUser": 3, "DeletePolicy": 1, "DeleteBucket": 1}
    assert calls.names.count("ListSSHPublicKeys") == 1
    assert leftovers(aws, run.id) == [f"user outsider-{run.id}"]  # not the run's: untouched
    assert iam.list_attached_user_policies(UserName=f"outsider-{run.id}")["AttachedPolicies"] == []
    assert iam.get_group(GroupName=f"group-{run.id}")["Group"], "the group is not the run's"


@pytest.mark.usefixtures("aws")
def test_a_bucket_row_from_before_keys_were_recorded_is_emptied_first(aws, sqlite_url) -> None:
    """Such a row does not say what the run wrote: the bucket is listed and emptied before
    DeleteBucket, which S3 then does not refuse."""
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        provision(store, make_aws(REGION), run_id=run.id)
        for row in store.get_run(run.id).resources:
            if row.kind == ResourceKind.S3_BUCKET:
                row.attributes = {k: v for k, v in row.attributes.items() if k != "keys"}
        store.session.commit()
    strict, calls = _strict(aws), CallLog()
    with open_store(sqlite_url) as store:
        teardown(store, make_aws(REGION, call_hooks=[strict, calls]), run_id=run.id)
    assert strict.refused == []
    assert calls.names.count("ListObjectVersions") == 2
    assert leftovers(aws, run.id) == []


@pytest.mark.usefixtures("aws", "aws_lag")
def test_a_plain_run_tears_down_under_strict_rules(aws, sqlite_url, capsys) -> None:
    """Under AWS's deletion rules and through its lags, torn down as soon as provisioned."""
    strict = _strict(aws)
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        provision(store, make_aws(REGION), run_id=run.id)
        teardown(store, make_aws(REGION, call_hooks=[strict]), run_id=run.id)
    assert strict.refused == []
    assert leftovers(aws, run.id) == []


@pytest.mark.usefixtures("aws")
def test_teardown_leaves_what_is_not_the_runs_and_says_why(aws, sqlite_url, capsys) -> None:
    iam = admin_client(aws, "iam")
    run_id = invoke(capsys, "provision", "--database-url", sqlite_url).stdout.strip()
    reader, writer = f"job-{run_id}-reader", f"job-{run_id}-writer"
    # The run's users vanish, and others of the same names appear: one untagged, one another run's.
    for user in (reader, writer):
        for policy in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]:
            iam.detach_user_policy(UserName=user, PolicyArn=policy["PolicyArn"])
        iam.delete_user(UserName=user)
    iam.create_user(UserName=reader, Path="/job/")
    iam.create_user(
        UserName=writer, Path="/job/", Tags=[{"Key": "job:run-id", "Value": "zzzzzzzzzz"}]
    )

    result = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url)

    assert result.exit_code == 0, result.stderr
    assert (
        "IAM user job-" + run_id + "-reader belongs to no job run (it lacks the job's tags)"
        in result.stderr
    )
    assert "belongs to run zzzzzzzzzz; left alone" in result.stderr
    assert "left alone" in result.stdout  # the table's NOTE column
    assert sorted(leftovers(aws, run_id)) == sorted([f"user {reader}", f"user {writer}"])
    with open_store(sqlite_url) as store:
        notes = {
            row.name: row.error for row in store.get_run(run_id).resources if row.kind == "iam_user"
        }
    assert all("left alone" in (note or "") for note in notes.values())


@pytest.mark.usefixtures("aws")
def test_provision_refuses_to_adopt_a_stranger(aws, sqlite_url) -> None:
    with open_store(sqlite_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        # Someone else's user already stands under the name the run is about to use.
        admin_client(aws, "iam").create_user(UserName=f"job-{run.id}-writer")
        with pytest.raises(NotOurs, match="lacks the job's tags"):
            provision(store, make_aws(REGION), run_id=run.id)
        assert store.find_resource(run, "writer").state is ResourceState.PENDING
        teardown(store, make_aws(REGION), run_id=run.id)
    assert leftovers(aws, run.id) == [f"user job-{run.id}-writer"]
