"""The whole job through its command line, against the IAM-enforcing moto server, on SQLite and
PostgreSQL ledgers."""

from __future__ import annotations

import pytest

from job.emulator import EmulatorCredentials
from tests.awslike import AwsLike
from tests.helpers import admin_client, grant_inline, invoke, leftovers, open_store

pytestmark = pytest.mark.usefixtures("aws")


def test_run_passes_every_check_and_leaves_nothing(
    aws: EmulatorCredentials,
    aws_lag: AwsLike,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through the AWS-like layer with every knob on: NoSuchBucket before authorization, paged
    bucket listings only, and a new bucket, key and attachment each unseen for a while."""
    result = invoke(capsys, "--database-url", database_url, "run", "--output", "json")

    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert document["status"] == "torn_down"
    checks = document["checks"]
    run_id = document["run_id"]
    data, elsewhere = f"arn:aws:s3:::job-{run_id}-data", f"arn:aws:s3:::job-{run_id}-elsewhere"
    expected = set()
    for principal, allowed in (
        ("writer", {"s3:PutObject", "s3:GetObject"}),
        ("reader", {"s3:GetObject"}),
    ):
        expected |= {
            (principal, action, "allow" if action in allowed else "deny")
            for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject")
        }
        # The negative space: no listing, no other bucket, no IAM.
        expected |= {
            (principal, "s3:ListBucket", "deny", data),
            (principal, "s3:GetObject", "deny", f"{elsewhere}/probe/fixture.txt"),
            (principal, "iam:ListUsers", "deny", "*"),
        }
    assert len(checks) == 12
    assert {
        (c["principal"], c["action"], c["expected"])
        if c["resource"].startswith(f"{data}/")
        else (c["principal"], c["action"], c["expected"], c["resource"])
        for c in checks
    } == expected
    assert all(c["passed"] and c["actual"] == c["expected"] for c in checks)
    assert {r["state"] for r in document["resources"]} == {"deleted"}
    assert leftovers(aws, document["run_id"]) == []
    # The lags were there to wait out, and were waited out.
    waited = " ".join(aws_lag.refusals)
    assert "bucket creation lag" in waited and "new key lag" in waited, aws_lag.refusals


def test_phases_one_by_one_with_text_output(
    aws: EmulatorCredentials, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    provisioned = invoke(capsys, "provision", "--database-url", database_url)
    assert provisioned.exit_code == 0, provisioned.stderr
    run_id = provisioned.stdout.strip()  # text output is the run id alone, for scripts
    assert len(leftovers(aws, run_id)) == 6  # two buckets, two users, two policies

    verified = invoke(capsys, "verify", "--run-id", run_id, "--database-url", database_url)
    assert verified.exit_code == 0, verified.stderr
    assert "all checks passed" in verified.stdout
    assert sum(line.endswith(" pass") for line in verified.stdout.splitlines()) == 12
    # verify's access keys are deleted when it ends
    iam = admin_client(aws, "iam")
    for role in ("writer", "reader"):
        user = f"job-{run_id}-{role}"
        assert iam.list_access_keys(UserName=user)["AccessKeyMetadata"] == []

    torn = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", database_url)
    assert torn.exit_code == 0, torn.stderr
    assert leftovers(aws, run_id) == []

    again = invoke(capsys, "teardown", "--run-id", run_id, "--database-url", database_url)
    assert again.exit_code == 0, "teardown is idempotent"

    shown = invoke(
        capsys, "--output", "json", "runs", "show", run_id, "--database-url", database_url
    )
    document = shown.json()
    assert document["status"] == "torn_down"
    assert [p["phase"] for p in document["phases"]] == [
        "provision",
        "verify",
        "teardown",
        "teardown",
    ]
    assert all(p["outcome"] == "succeeded" for p in document["phases"])
    assert {r["state"] for r in document["resources"]} == {"deleted"}

    listed = invoke(capsys, "runs", "list", "--output", "json", "--database-url", database_url)
    assert [r["run_id"] for r in listed.json()["runs"]] == [run_id]


def test_reader_with_extra_rights_fails_verify_and_names_the_check(
    aws: EmulatorCredentials, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = invoke(capsys, "provision", "--database-url", database_url).stdout.strip()
    bucket = f"job-{run_id}-data"
    # Somebody grants the reader more than intended between provision and verify.
    grant_inline(
        admin_client(aws, "iam"),
        f"job-{run_id}-reader",
        "s3:PutObject",
        f"arn:aws:s3:::{bucket}/*",
        "too-generous",
    )

    verified = invoke(capsys, "verify", "--run-id", run_id, "--database-url", database_url)

    assert verified.exit_code == 1
    failing = [line for line in verified.stdout.splitlines() if line.endswith("FAIL")]
    assert len(failing) == 1
    assert failing[0].split()[:2] == ["reader", "s3:PutObject"]
    assert "1 of 12 checks FAILED" in verified.stdout
    with open_store(database_url) as store:
        run = store.get_run(run_id)
        assert run.status.value == "verify_failed"
        [bad] = [c for c in store.latest_checks(run) if not c.passed]
        assert (bad.expected.value, bad.actual.value) == ("deny", "allow")

    # The inline policy blocks DeleteUser on AWS; teardown removes it too.
    assert (
        invoke(capsys, "teardown", "--run-id", run_id, "--database-url", database_url).exit_code
        == 0
    )
    assert leftovers(aws, run_id) == []


def test_a_reader_with_rights_everywhere_fails_the_negative_checks(
    aws: EmulatorCredentials, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = invoke(capsys, "provision", "--database-url", sqlite_url).stdout.strip()
    grant_inline(admin_client(aws, "iam"), f"job-{run_id}-reader", "s3:*", "*", "s3-everything")
    verified = invoke(
        capsys, "verify", "--run-id", run_id, "--database-url", sqlite_url, "--output", "json"
    )
    assert verified.exit_code == 1
    failed = {
        (c["action"], c["resource"].split(":::")[-1].removeprefix(f"job-{run_id}-"))
        for c in verified.json()["checks"]
        if not c["passed"]
    }
    assert failed == {
        ("s3:PutObject", "data/probe/reader-putobject.txt"),
        ("s3:DeleteObject", "data/probe/reader-deleteobject.txt"),
        ("s3:ListBucket", "data"),
        # The decoy bucket's object, which nobody may read.
        ("s3:GetObject", "elsewhere/probe/fixture.txt"),
    }
    assert (
        invoke(capsys, "teardown", "--run-id", run_id, "--database-url", sqlite_url).exit_code == 0
    )
    assert leftovers(aws, run_id) == []
