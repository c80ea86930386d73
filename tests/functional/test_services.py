"""The shared fixtures deliver: an IAM-enforcing emulator, isolated databases, a clean env."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
import sqlalchemy
from botocore.exceptions import ClientError

from job.emulator import RUNNER_USER, EmulatorCredentials, bootstrap_runner, reset
from tests.conftest import JOB_VARIABLES
from tests.services.postgres import temporary_database

LEAK_BUCKET = "job-test-leak-check"


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def test_runner_is_the_default_identity(aws: EmulatorCredentials) -> None:
    # No explicit keys or endpoint: the fixture's environment alone must route boto3 to the runner.
    identity = boto3.client("sts").get_caller_identity()
    assert identity["Arn"].endswith(f":user/{RUNNER_USER}")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="job-test-runner-bucket")
    assert [b["Name"] for b in s3.list_buckets(MaxBuckets=1000)["Buckets"]] == [
        "job-test-runner-bucket"
    ]


def test_unknown_keys_are_rejected(aws: EmulatorCredentials) -> None:
    # Proves enforcement is on: without it moto would answer any key.
    key_id, secret = "AKIAUNKNOWNUNKNOWN00", "not-a-known-secret"
    sts = boto3.client("sts", aws_access_key_id=key_id, aws_secret_access_key=secret)
    with pytest.raises(ClientError) as error:
        sts.get_caller_identity()
    assert error_code(error) == "InvalidClientTokenId"
    s3 = boto3.client("s3", aws_access_key_id=key_id, aws_secret_access_key=secret)
    with pytest.raises(ClientError) as error:
        s3.list_buckets(MaxBuckets=1000)
    assert error_code(error) == "InvalidAccessKeyId"


def test_user_without_policies_is_denied(aws: EmulatorCredentials) -> None:
    iam, s3 = boto3.client("iam"), boto3.client("s3")
    s3.create_bucket(Bucket="job-test-denied")
    iam.create_user(UserName="job-test-nobody")
    key = iam.create_access_key(UserName="job-test-nobody")["AccessKey"]
    nobody = boto3.client(
        "s3",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    with pytest.raises(ClientError) as error:
        nobody.put_object(Bucket="job-test-denied", Key="x", Body=b"x")
    assert error_code(error) == "AccessDenied"


def test_bootstrap_with_a_narrow_policy_is_enforced(aws: EmulatorCredentials) -> None:
    # bootstrap_runner(policy=...) is how tests get a less privileged runner.
    read_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
    }
    reset(aws.endpoint_url)
    reader = bootstrap_runner(aws.endpoint_url, policy=read_only, user_name="job-test-reader")
    s3 = boto3.client(
        "s3",
        aws_access_key_id=reader.access_key_id,
        aws_secret_access_key=reader.secret_access_key,
    )
    assert s3.list_buckets(MaxBuckets=1000)["Buckets"] == []
    with pytest.raises(ClientError) as error:
        s3.create_bucket(Bucket="job-test-forbidden")
    assert error_code(error) == "AccessDenied"


@pytest.mark.parametrize("attempt", [1, 2])
def test_state_does_not_leak_between_tests(aws: EmulatorCredentials, attempt: int) -> None:
    # Whichever attempt runs second would see the first one's bucket (and bootstrap would have
    # failed on the existing runner user) if the fixture did not reset the emulator.
    s3 = boto3.client("s3")
    assert s3.list_buckets(MaxBuckets=1000)["Buckets"] == []
    s3.create_bucket(Bucket=LEAK_BUCKET)


def test_reset_forgets_resources_and_keys(aws: EmulatorCredentials) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=LEAK_BUCKET)
    iam = boto3.client("iam")
    iam.create_user(UserName="left-from-before")
    iam.attach_user_policy(
        UserName="left-from-before", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess"
    )
    reset(aws.endpoint_url)
    fresh = bootstrap_runner(aws.endpoint_url)
    assert fresh.access_key_id != aws.access_key_id
    with pytest.raises(ClientError) as error:
        s3.list_buckets(MaxBuckets=1000)  # still signed with the runner key from before the reset
    assert error_code(error) == "InvalidAccessKeyId"
    s3 = boto3.client(
        "s3", aws_access_key_id=fresh.access_key_id, aws_secret_access_key=fresh.secret_access_key
    )
    assert s3.list_buckets(MaxBuckets=1000)["Buckets"] == []
    # The session's server skips the work moto's reset throws away (tests/services/moto_main.py):
    # IAM is still new, with AWS's managed policies, after it.
    iam = boto3.client(
        "iam", aws_access_key_id=fresh.access_key_id, aws_secret_access_key=fresh.secret_access_key
    )
    assert [user["UserName"] for user in iam.list_users()["Users"]] == [RUNNER_USER]
    managed = iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")["Policy"]
    assert managed["AttachmentCount"] == 0


def test_environment_is_isolated(tmp_path: Path) -> None:
    assert Path.cwd() == tmp_path
    # Only what the fixture sets on purpose: the layer propagates nothing late, or briefly.
    chosen = {name: os.environ[name] for name in JOB_VARIABLES if name in os.environ}
    assert chosen == {"JOB_DENY_SETTLE": "0s", "JOB_PROPAGATION_TIMEOUT": "20s"}


def test_postgres_answers(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as connection:
        version = connection.execute(sqlalchemy.text("SELECT version()")).scalar_one()
    engine.dispose()
    assert version.startswith("PostgreSQL ")


@pytest.mark.parametrize("attempt", [1, 2])
def test_postgres_database_is_fresh(postgres_url: str, attempt: int) -> None:
    # The second attempt would find the first one's table if databases were shared or kept.
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        assert sqlalchemy.inspect(connection).get_table_names() == []
        connection.execute(sqlalchemy.text("CREATE TABLE marker (id integer)"))
        database = connection.execute(sqlalchemy.text("SELECT current_database()")).scalar_one()
    engine.dispose()
    assert database == sqlalchemy.make_url(postgres_url).database


def test_postgres_databases_are_distinct_and_dropped(postgres_server: str) -> None:
    def databases() -> set[str]:
        engine = sqlalchemy.create_engine(postgres_server)
        with engine.connect() as connection:
            names = connection.execute(sqlalchemy.text("SELECT datname FROM pg_database"))
            result = set(names.scalars())
        engine.dispose()
        return result

    with (
        temporary_database(postgres_server) as first,
        temporary_database(postgres_server) as second,
    ):
        assert first != second
        engine = sqlalchemy.create_engine(first)
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE marker (id integer)"))
        # Left connected on purpose: DROP ... WITH (FORCE) must cope with a forgotten engine.
        other = sqlalchemy.create_engine(second)
        with other.connect() as connection:
            assert sqlalchemy.inspect(connection).get_table_names() == []
        other.dispose()
        names = {sqlalchemy.make_url(first).database, sqlalchemy.make_url(second).database}
        assert names <= databases()
    engine.dispose()
    assert not names & databases()


def test_database_url_covers_both_backends(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    engine = sqlalchemy.create_engine(database_url)
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    expected = request.node.callspec.params["database_url"]
    assert engine.dialect.name == expected
