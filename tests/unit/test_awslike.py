"""The AWS-like layer in front of moto: each knob, with real boto3 clients through the session's
layer, shows AWS's behaviour, and that it is gone once its window has passed or it is turned off.
The error codes asserted are what botocore parsed from the layer's documents."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from job.emulator import (
    ADMIN_POLICY,
    EmulatorCredentials,
    add_member_role,
    bootstrap_runner,
    member_trust_policy,
    reset,
)
from tests.awslike import AwsLike
from tests.helpers import admin_client, client_as

# Long enough for a first call to land inside it, short enough not to slow the suite.
# Long enough that a loaded machine (four test processes on two cores) still makes its first
# calls inside the window: at 0.8 s, making the clients sometimes outlasted it.
LAG = 2.0
READ_ONLY_S3 = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"


def client(credentials: EmulatorCredentials, service: str, key: dict[str, Any]) -> Any:
    """A client signing with `key`: an access key, or a role session's credentials."""
    return client_as(credentials.endpoint_url, service, key)


# A trust naming anyone ("*"): whoever may call sts:AssumeRole gets in, the admin runner here.
TRUST_ANYONE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
)
ROLE_ARN = "arn:aws:iam::123456789012:role/job/job-t-auditor"


def new_role(iam: Any, name: str = "job-t-auditor") -> str:
    """A role under /job/ that anyone allowed sts:AssumeRole may assume; its ARN."""
    role = iam.create_role(RoleName=name, Path="/job/", AssumeRolePolicyDocument=TRUST_ANYONE)
    return str(role["Role"]["Arn"])


def assume(sts: Any, arn: str) -> dict[str, Any]:
    credentials: dict[str, Any] = sts.assume_role(RoleArn=arn, RoleSessionName="job-t")[
        "Credentials"
    ]
    return credentials


def new_user(iam: Any, name: str) -> dict[str, str]:
    """A user with no policy at all, and its access key."""
    iam.create_user(UserName=name)
    key: dict[str, str] = iam.create_access_key(UserName=name)["AccessKey"]
    return key


def refused(call: Any, **params: Any) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return raised.value


def code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def status(error: ClientError) -> int:
    return int(error.response["ResponseMetadata"]["HTTPStatusCode"])


def wait_out(lag: float) -> None:
    # The window starts when the layer sees the answer, before the client does.
    time.sleep(lag + 0.1)


def test_a_missing_bucket_is_not_found_before_authorization(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """S3 answers NoSuchBucket for a bucket that does not exist even to someone with no rights;
    moto answers AccessDenied. An existing bucket still answers AccessDenied."""
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    s3.create_bucket(Bucket="job-t-data")
    nobody = client(aws, "s3", new_user(iam, "job-t-nobody"))

    missing = refused(nobody.get_object, Bucket="job-t-elsewhere", Key="probe/fixture.txt")
    assert (code(missing), status(missing)) == ("NoSuchBucket", 404)
    assert missing.response["Error"]["BucketName"] == "job-t-elsewhere"
    # Like every AWS answer, the made-up one has a request id (x-amz-request-id) and a host id.
    assert missing.response["ResponseMetadata"]["RequestId"]
    assert missing.response["ResponseMetadata"]["HostId"]
    existing = refused(nobody.get_object, Bucket="job-t-data", Key="probe/fixture.txt")
    assert code(existing) == "AccessDenied"
    # HEAD: S3 sends the status alone; botocore names the code after it.
    assert code(refused(nobody.head_bucket, Bucket="job-t-elsewhere")) == "404"
    assert code(refused(nobody.head_bucket, Bucket="job-t-data")) == "403"
    # A key S3 does not know is refused before it looks for the bucket.
    stranger = {"AccessKeyId": "AKIAUNKNOWNUNKNOWN00", "SecretAccessKey": "not-a-known-secret"}
    assert code(refused(client(aws, "s3", stranger).head_bucket, Bucket="job-t-elsewhere")) == "403"
    assert aws_like.refusals == [
        "NoSuchBucket first: s3:GetObject job-t-elsewhere",
        "NoSuchBucket first: s3:HeadBucket job-t-elsewhere",
    ]

    # A deleted bucket does not exist any more either.
    s3.delete_bucket(Bucket="job-t-data")
    assert code(refused(nobody.list_objects_v2, Bucket="job-t-data")) == "NoSuchBucket"

    aws_like.no_such_bucket_first = False  # moto's own answer again
    assert code(refused(nobody.get_object, Bucket="job-t-elsewhere", Key="k")) == "AccessDenied"
    assert len(aws_like.refusals) == 3


def test_a_new_bucket_is_not_found_for_a_while(aws: EmulatorCredentials, aws_like: AwsLike) -> None:
    aws_like.bucket_creation_lag = LAG
    s3 = admin_client(aws, "s3")
    s3.list_buckets(MaxBuckets=10)  # the client's first call pays its set-up outside the window

    s3.create_bucket(Bucket="job-t-new")  # answered by moto: the bucket exists
    tagging = {"TagSet": [{"Key": "job:run", "Value": "t"}]}
    early = refused(s3.put_bucket_tagging, Bucket="job-t-new", Tagging=tagging)
    assert (code(early), status(early)) == ("NoSuchBucket", 404)
    assert code(refused(s3.head_bucket, Bucket="job-t-new")) == "404"
    assert code(refused(s3.put_object, Bucket="job-t-new", Key="k", Body=b"x")) == "NoSuchBucket"
    assert [b["Name"] for b in s3.list_buckets(MaxBuckets=10)["Buckets"]] == ["job-t-new"]

    wait_out(LAG)
    s3.put_bucket_tagging(Bucket="job-t-new", Tagging=tagging)
    s3.head_bucket(Bucket="job-t-new")
    assert aws_like.refusals == [
        "bucket creation lag: s3:PutBucketTagging job-t-new",
        "bucket creation lag: s3:HeadBucket job-t-new",
        "bucket creation lag: s3:PutObject job-t-new",
    ]


def test_a_new_key_is_unknown_for_a_while(aws: EmulatorCredentials, aws_like: AwsLike) -> None:
    iam = admin_client(aws, "iam")
    iam.create_user(UserName="job-t-reader")
    iam.attach_user_policy(UserName="job-t-reader", PolicyArn=READ_ONLY_S3)
    # Each service's model loaded before the window opens: making the clients inside it costs
    # most of the window on a loaded machine, and the first call came after it had closed.
    runner = {"AccessKeyId": aws.access_key_id, "SecretAccessKey": aws.secret_access_key}
    for service in ("sts", "s3"):
        client(aws, service, runner)
    aws_like.new_key_lag = LAG
    key = iam.create_access_key(UserName="job-t-reader")["AccessKey"]
    sts, s3 = client(aws, "sts", key), client(aws, "s3", key)
    reader_iam = client(aws, "iam", key)

    by_sts = refused(sts.get_caller_identity)
    assert (code(by_sts), status(by_sts)) == ("InvalidClientTokenId", 403)
    assert by_sts.response["ResponseMetadata"]["RequestId"]  # from the document's <RequestId>
    assert code(refused(reader_iam.list_users)) == "InvalidClientTokenId"
    by_s3 = refused(s3.list_buckets, MaxBuckets=10)
    assert (code(by_s3), status(by_s3)) == ("InvalidAccessKeyId", 403)
    assert by_s3.response["Error"]["AWSAccessKeyId"] == key["AccessKeyId"]

    wait_out(LAG)
    assert sts.get_caller_identity()["Arn"].endswith(":user/job-t-reader")
    assert s3.list_buckets(MaxBuckets=10)["Buckets"] == []
    # Known now, and moto's answer again: the policy does not allow iam:ListUsers.
    assert code(refused(reader_iam.list_users)) == "AccessDenied"
    key_id = key["AccessKeyId"]
    assert aws_like.refusals == [
        f"new key lag: sts:GetCallerIdentity {key_id}",
        f"new key lag: iam:ListUsers {key_id}",
        f"new key lag: s3:ListBuckets {key_id}",
    ]


def test_a_new_policy_is_not_effective_for_a_while(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    s3.create_bucket(Bucket="job-t-data")
    key = new_user(iam, "job-t-reader")
    reader_s3, reader_iam = client(aws, "s3", key), client(aws, "iam", key)
    assert code(refused(reader_s3.list_objects_v2, Bucket="job-t-data")) == "AccessDenied"  # moto
    aws_like.new_policy_lag = LAG

    iam.attach_user_policy(UserName="job-t-reader", PolicyArn=READ_ONLY_S3)
    early = refused(reader_s3.list_objects_v2, Bucket="job-t-data")
    assert (code(early), status(early)) == ("AccessDenied", 403)
    wait_out(LAG)
    assert reader_s3.list_objects_v2(Bucket="job-t-data")["KeyCount"] == 0

    # An inline policy too, and in IAM's error format for IAM's calls.
    statement = {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}
    iam.put_user_policy(
        UserName="job-t-reader",
        PolicyName="list",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    by_iam = refused(reader_iam.list_users)
    assert (code(by_iam), status(by_iam)) == ("AccessDenied", 403)
    assert "job-t-reader" in by_iam.response["Error"]["Message"]
    wait_out(LAG)
    assert reader_iam.list_users()["Users"]
    key_id = key["AccessKeyId"]
    assert aws_like.refusals == [
        f"new policy lag: s3:ListObjectsV2 job-t-reader ({key_id})",
        f"new policy lag: iam:ListUsers job-t-reader ({key_id})",
    ]


def test_a_groups_policy_is_not_effective_for_its_members_for_a_while(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """Joining a group gives a user the group's policies, and a policy the group gains reaches
    its members, each after the same lag as the user's own policy would."""
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    s3.create_bucket(Bucket="job-t-data")
    key = new_user(iam, "job-t-member")
    member_s3, member_iam = client(aws, "s3", key), client(aws, "iam", key)
    iam.create_group(GroupName="job-t-readers")
    iam.attach_group_policy(GroupName="job-t-readers", PolicyArn=READ_ONLY_S3)
    aws_like.new_policy_lag = LAG

    iam.add_user_to_group(GroupName="job-t-readers", UserName="job-t-member")
    assert code(refused(member_s3.list_objects_v2, Bucket="job-t-data")) == "AccessDenied"
    wait_out(LAG)
    assert member_s3.list_objects_v2(Bucket="job-t-data")["KeyCount"] == 0

    statement = {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"}
    iam.put_group_policy(
        GroupName="job-t-readers",
        PolicyName="list",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    assert code(refused(member_iam.list_users)) == "AccessDenied"
    wait_out(LAG)
    assert member_iam.list_users()["Users"]
    # A user out of the group is not held up by what the group gains: its S3 calls answer at
    # once (the group's grants left with it: moto's own refusal, not the layer's).
    iam.remove_user_from_group(GroupName="job-t-readers", UserName="job-t-member")
    iam.attach_group_policy(
        GroupName="job-t-readers", PolicyArn="arn:aws:iam::aws:policy/IAMReadOnlyAccess"
    )
    assert code(refused(member_s3.list_objects_v2, Bucket="job-t-data")) == "AccessDenied"
    key_id = key["AccessKeyId"]
    assert aws_like.refusals == [
        f"new policy lag: s3:ListObjectsV2 job-t-member ({key_id})",
        f"new policy lag: iam:ListUsers job-t-member ({key_id})",
    ]


def test_list_buckets_must_be_paged(aws: EmulatorCredentials, aws_like: AwsLike) -> None:
    s3 = admin_client(aws, "s3")
    s3.create_bucket(Bucket="job-t-data")
    unpaged = refused(s3.list_buckets)
    assert (code(unpaged), status(unpaged)) == ("InvalidRequest", 400)
    # A paginator pages only when given a page size.
    with pytest.raises(ClientError):
        list(s3.get_paginator("list_buckets").paginate())
    assert [b["Name"] for b in s3.list_buckets(MaxBuckets=1000)["Buckets"]] == ["job-t-data"]
    pages = s3.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": 1000})
    assert [b["Name"] for page in pages for b in page["Buckets"]] == ["job-t-data"]
    assert aws_like.refusals == ["unpaged ListBuckets: s3:ListBuckets"] * 2

    # Authentication and authorization come first: the refusal depends on the account.
    stranger = {"AccessKeyId": "AKIAUNKNOWNUNKNOWN00", "SecretAccessKey": "not-a-known-secret"}
    assert code(refused(client(aws, "s3", stranger).list_buckets)) == "InvalidAccessKeyId"
    nobody = client(aws, "s3", new_user(admin_client(aws, "iam"), "job-t-nobody"))
    assert code(refused(nobody.list_buckets)) == "AccessDenied"
    assert len(aws_like.refusals) == 2

    aws_like.paged_list_buckets_only = False
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["job-t-data"]


def test_moto_reset_clears_what_the_layer_knows_but_not_its_knobs(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    s3 = admin_client(aws, "s3")
    s3.create_bucket(Bucket="job-t-data")
    aws_like.new_key_lag = 0.25

    reset(aws.endpoint_url)
    aws_like.new_key_lag = 0.0  # the runner's key below must work at once
    runner = bootstrap_runner(aws.endpoint_url)
    iam = admin_client(runner, "iam")
    nobody = client(aws, "s3", new_user(iam, "job-t-nobody"))
    # moto forgot the bucket; had the layer not, moto's AccessDenied would pass unchanged.
    assert code(refused(nobody.head_bucket, Bucket="job-t-data")) == "404"
    assert aws_like.refusals == ["NoSuchBucket first: s3:HeadBucket job-t-data"]

    aws_like.bucket_creation_lag = 5.0
    aws_like.paged_list_buckets_only = False
    reset(aws.endpoint_url)
    assert (aws_like.bucket_creation_lag, aws_like.paged_list_buckets_only) == (5.0, False)
    aws_like.service_policy_lag = {"iam": 4.0}
    aws_like.operation_aborted_next = {"s3:CreateBucket": 1}
    aws_like.bucket_configuration_conflicts = False
    aws_like.bucket_configuration_seconds = 1.0
    aws_like.assume_role_trust_checked = False
    aws_like.reset()
    assert (aws_like.bucket_creation_lag, aws_like.paged_list_buckets_only) == (0.0, True)
    assert (aws_like.no_such_bucket_first, aws_like.new_key_lag, aws_like.new_policy_lag) == (
        True,
        0.0,
        0.0,
    )
    assert (aws_like.new_role_lag, aws_like.new_session_lag) == (0.0, 0.0)
    assert aws_like.assume_missing_role_refused
    assert aws_like.assume_role_trust_checked
    assert (aws_like.service_policy_lag, aws_like.operation_aborted_next) == ({}, {})
    assert (aws_like.bucket_configuration_conflicts, aws_like.bucket_configuration_seconds) == (
        True,
        0.0,
    )
    assert aws_like.refusals == []


def test_the_lag_fixture_spares_the_runner(aws_lag: AwsLike, aws: EmulatorCredentials) -> None:
    """The runner made before the windows were set works at once; what it creates lags."""
    assert (aws_lag.bucket_creation_lag, aws_lag.new_key_lag, aws_lag.new_policy_lag) == (
        1.0,
        1.0,
        2.0,
    )
    assert (aws_lag.new_role_lag, aws_lag.new_session_lag) == (4.0, 1.0)
    s3, iam, sts = admin_client(aws, "s3"), admin_client(aws, "iam"), admin_client(aws, "sts")
    s3.create_bucket(Bucket="job-t-data")
    assert code(refused(s3.head_bucket, Bucket="job-t-data")) == "404"
    key = new_user(iam, "job-t-nobody")
    assert code(refused(client(aws, "sts", key).get_caller_identity)) == "InvalidClientTokenId"
    arn = new_role(iam)
    assert code(refused(sts.assume_role, RoleArn=arn, RoleSessionName="job-t")) == "AccessDenied"
    assert [line.split(":")[0] for line in aws_lag.refusals] == [
        "bucket creation lag",
        "new key lag",
        "new role lag",
    ]


def test_knobs_are_checked() -> None:
    with pytest.raises(TypeError, match="no knob 'new_user_lag'"):
        AwsLike(new_user_lag=1.0)
    assert AwsLike(new_key_lag=0.5, no_such_bucket_first=False).new_key_lag == 0.5


def test_a_new_role_cannot_be_assumed_for_a_while(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    iam, sts = admin_client(aws, "iam"), admin_client(aws, "sts")
    sts.get_caller_identity()  # the client's first call pays its set-up outside the window
    aws_like.new_role_lag = LAG

    arn = new_role(iam)
    assert arn == ROLE_ARN
    early = refused(sts.assume_role, RoleArn=arn, RoleSessionName="job-t")
    assert (code(early), status(early)) == ("AccessDenied", 403)
    message = early.response["Error"]["Message"]
    assert "is not authorized to perform: sts:AssumeRole on resource" in message
    assert message.endswith(arn)
    assert early.response["ResponseMetadata"]["RequestId"]
    # Only assuming it waits: IAM itself shows the role at once, as AWS's IAM endpoint may.
    assert iam.get_role(RoleName="job-t-auditor")["Role"]["Arn"] == arn

    wait_out(LAG)
    session = client(aws, "sts", assume(sts, arn))
    assert ":assumed-role/job-t-auditor/job-t" in session.get_caller_identity()["Arn"]
    assert aws_like.refusals == ["new role lag: sts:AssumeRole job-t-auditor"]


def test_a_role_that_does_not_exist_cannot_be_assumed(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """moto issues credentials for any role ARN; AWS refuses with AccessDenied, as it refuses a
    role the caller may not assume, and never says NoSuchEntity."""
    iam, sts = admin_client(aws, "iam"), admin_client(aws, "sts")
    ghost = refused(sts.assume_role, RoleArn=ROLE_ARN, RoleSessionName="job-t")
    assert (code(ghost), status(ghost)) == ("AccessDenied", 403)
    assert ghost.response["Error"]["Message"].endswith(ROLE_ARN)

    new_role(iam)
    assume(sts, ROLE_ARN)  # it exists now
    iam.delete_role(RoleName="job-t-auditor")
    assert code(refused(sts.assume_role, RoleArn=ROLE_ARN, RoleSessionName="job-t")) == (
        "AccessDenied"
    )
    assert aws_like.refusals == ["no such role: sts:AssumeRole job-t-auditor"] * 2

    # Authentication and authorization come first: moto's own answers, untouched.
    stranger = {"AccessKeyId": "AKIAUNKNOWNUNKNOWN00", "SecretAccessKey": "not-a-known-secret"}
    by_stranger = refused(
        client(aws, "sts", stranger).assume_role, RoleArn=ROLE_ARN, RoleSessionName="job-t"
    )
    assert code(by_stranger) == "InvalidClientTokenId"
    nobody = client(aws, "sts", new_user(iam, "job-t-nobody"))
    assert code(refused(nobody.assume_role, RoleArn=ROLE_ARN, RoleSessionName="job-t")) == (
        "AccessDenied"
    )
    assert len(aws_like.refusals) == 2

    aws_like.assume_missing_role_refused = False  # moto's own answer again
    assert assume(sts, ROLE_ARN)["AccessKeyId"]
    assert len(aws_like.refusals) == 2


def test_a_new_role_session_is_unknown_for_a_while(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    iam, sts = admin_client(aws, "iam"), admin_client(aws, "sts")
    arn = new_role(iam)
    iam.attach_role_policy(RoleName="job-t-auditor", PolicyArn=READ_ONLY_S3)
    aws_like.new_session_lag = LAG
    credentials = assume(sts, arn)
    session_sts, session_s3 = client(aws, "sts", credentials), client(aws, "s3", credentials)

    by_sts = refused(session_sts.get_caller_identity)
    assert (code(by_sts), status(by_sts)) == ("InvalidClientTokenId", 403)
    by_s3 = refused(session_s3.list_buckets, MaxBuckets=10)
    assert (code(by_s3), status(by_s3)) == ("InvalidAccessKeyId", 403)

    wait_out(LAG)
    assert ":assumed-role/job-t-auditor/" in session_sts.get_caller_identity()["Arn"]
    assert session_s3.list_buckets(MaxBuckets=10)["Buckets"] == []
    key_id = credentials["AccessKeyId"]
    assert aws_like.refusals == [
        f"new session lag: sts:GetCallerIdentity {key_id}",
        f"new session lag: s3:ListBuckets {key_id}",
    ]


def test_a_new_role_policy_is_not_effective_for_its_sessions_for_a_while(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    iam, sts, s3 = admin_client(aws, "iam"), admin_client(aws, "sts"), admin_client(aws, "s3")
    s3.create_bucket(Bucket="job-t-data")
    arn = new_role(iam)
    aws_like.new_policy_lag = LAG
    iam.attach_role_policy(RoleName="job-t-auditor", PolicyArn=READ_ONLY_S3)
    credentials = assume(sts, arn)
    session_s3 = client(aws, "s3", credentials)

    early = refused(session_s3.list_objects_v2, Bucket="job-t-data")
    assert (code(early), status(early)) == ("AccessDenied", 403)
    wait_out(LAG)
    assert session_s3.list_objects_v2(Bucket="job-t-data")["KeyCount"] == 0
    key_id = credentials["AccessKeyId"]
    assert aws_like.refusals == [f"new policy lag: s3:ListObjectsV2 role/job-t-auditor ({key_id})"]


def test_a_buckets_configuration_writes_conflict_while_one_is_in_flight(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """A second configuration write on one bucket while the first is in flight is answered 409
    OperationAborted, in S3's format; another bucket, objects and reads are not held up."""
    s3 = admin_client(aws, "s3")
    s3.create_bucket(Bucket="job-t-data")
    s3.create_bucket(Bucket="job-t-other")
    aws_like.bucket_configuration_seconds = 0.6
    tagging = {"TagSet": [{"Key": "job:run", "Value": "t"}]}
    block = {"BlockPublicAcls": True, "IgnorePublicAcls": True}

    def conflicts_with_a_tagging_in_flight() -> list[ClientError]:
        tagger = threading.Thread(
            target=s3.put_bucket_tagging, kwargs={"Bucket": "job-t-data", "Tagging": tagging}
        )
        tagger.start()
        time.sleep(0.25)  # the tagging is with the layer by now, held there for 0.6 s
        errors = []
        for call, params in [
            (s3.put_public_access_block, {"PublicAccessBlockConfiguration": block}),
            (s3.delete_bucket_encryption, {}),
        ]:
            try:
                call(Bucket="job-t-data", **params)
            except ClientError as error:
                errors.append(error)
        s3.put_object(Bucket="job-t-data", Key="k", Body=b"x")
        s3.put_bucket_tagging(Bucket="job-t-other", Tagging=tagging)
        tagger.join()
        return errors

    refusals = conflicts_with_a_tagging_in_flight()
    assert [(code(e), status(e)) for e in refusals] == [("OperationAborted", 409)] * 2
    assert refusals[0].response["Error"]["Message"] == (
        "A conflicting conditional operation is currently in progress against this resource. "
        "Please try again."
    )
    assert refusals[0].response["ResponseMetadata"]["HostId"]
    assert aws_like.refusals == [
        "concurrent configuration: s3:PutPublicAccessBlock job-t-data",
        "concurrent configuration: s3:DeleteBucketEncryption job-t-data",
    ]
    # Once the tagging is answered, the bucket takes the next write; nothing refused was applied.
    s3.put_public_access_block(Bucket="job-t-data", PublicAccessBlockConfiguration=block)
    assert s3.get_bucket_tagging(Bucket="job-t-data")["TagSet"] == tagging["TagSet"]
    assert s3.get_bucket_tagging(Bucket="job-t-other")["TagSet"] == tagging["TagSet"]

    aws_like.bucket_configuration_conflicts = False  # moto's own answers again
    assert conflicts_with_a_tagging_in_flight() == []
    assert len(aws_like.refusals) == 2


def test_operation_aborted_can_be_forced_on_the_next_calls(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    s3 = admin_client(aws, "s3")
    s3.list_buckets(MaxBuckets=10)
    forced = {"s3:CreateBucket": 1, "s3:PutBucketPolicy": 2, "s3:DeleteBucket": 1}
    aws_like.operation_aborted_next = forced
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": "arn:aws:s3:::job-t-data/*",
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )

    aborted = refused(s3.create_bucket, Bucket="job-t-data")
    assert (code(aborted), status(aborted)) == ("OperationAborted", 409)
    assert code(refused(s3.head_bucket, Bucket="job-t-data")) == "404"  # nothing was created
    s3.create_bucket(Bucket="job-t-data")
    for _ in range(2):
        assert code(refused(s3.put_bucket_policy, Bucket="job-t-data", Policy=policy)) == (
            "OperationAborted"
        )
    s3.put_bucket_policy(Bucket="job-t-data", Policy=policy)
    assert code(refused(s3.delete_bucket, Bucket="job-t-data")) == "OperationAborted"
    s3.delete_bucket(Bucket="job-t-data")

    assert aws_like.refusals == [
        "forced OperationAborted: s3:CreateBucket job-t-data",
        "forced OperationAborted: s3:PutBucketPolicy job-t-data",
        "forced OperationAborted: s3:PutBucketPolicy job-t-data",
        "forced OperationAborted: s3:DeleteBucket job-t-data",
    ]
    assert aws_like.operation_aborted_next == dict.fromkeys(forced, 0)
    assert forced == {"s3:CreateBucket": 1, "s3:PutBucketPolicy": 2, "s3:DeleteBucket": 1}


def test_a_policy_reaches_each_service_in_its_own_time(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """With IAM lagging, a user's S3 calls work at once while iam:ListUsers, which the same
    policy allows, is denied until the lag is over; sts:GetCallerIdentity is never denied."""
    iam, s3, sts = admin_client(aws, "iam"), admin_client(aws, "s3"), admin_client(aws, "sts")
    s3.create_bucket(Bucket="job-t-data")
    key = new_user(iam, "job-t-reader")
    reader_s3, reader_iam = client(aws, "s3", key), client(aws, "iam", key)
    reader_sts = client(aws, "sts", key)
    reader_sts.get_caller_identity()  # the clients' first calls pay their set-up outside the window
    assert code(refused(reader_iam.list_users)) == "AccessDenied"  # moto: no policy yet
    aws_like.service_policy_lag = {"iam": LAG}
    statements = [
        {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::job-t-data"},
    ]
    document = json.dumps({"Version": "2012-10-17", "Statement": statements})

    iam.put_user_policy(UserName="job-t-reader", PolicyName="read", PolicyDocument=document)
    assert reader_s3.list_objects_v2(Bucket="job-t-data")["KeyCount"] == 0
    early = refused(reader_iam.list_users)
    assert (code(early), status(early)) == ("AccessDenied", 403)
    assert "job-t-reader" in early.response["Error"]["Message"]  # IAM's format
    assert reader_sts.get_caller_identity()["Arn"].endswith(":user/job-t-reader")
    wait_out(LAG)
    assert reader_iam.list_users()["Users"]
    key_id = key["AccessKeyId"]
    assert aws_like.refusals == [f"service policy lag: iam:ListUsers job-t-reader ({key_id})"]

    # The window starts when the policy changes, not when a key is made: a user's first key,
    # made once its policy has had the time, works at once.
    iam.create_user(UserName="job-t-auditor")
    iam.put_user_policy(UserName="job-t-auditor", PolicyName="read", PolicyDocument=document)
    wait_out(LAG)
    later = iam.create_access_key(UserName="job-t-auditor")["AccessKey"]
    assert client(aws, "iam", later).list_users()["Users"]

    # A role's sessions the same, here with S3 lagging and IAM not.
    aws_like.service_policy_lag = {"s3": LAG}
    arn = new_role(iam)
    iam.attach_role_policy(RoleName="job-t-auditor", PolicyArn=READ_ONLY_S3)
    credentials = assume(sts, arn)
    by_s3 = refused(client(aws, "s3", credentials).list_objects_v2, Bucket="job-t-data")
    assert (code(by_s3), status(by_s3)) == ("AccessDenied", 403)
    wait_out(LAG)
    assert client(aws, "s3", credentials).list_objects_v2(Bucket="job-t-data")["KeyCount"] == 0
    assert aws_like.refusals[1:] == [
        f"service policy lag: s3:ListObjectsV2 role/job-t-auditor ({credentials['AccessKeyId']})"
    ]


# job fleet's accounts: moto's default one holds the runner; members hold a role it assumes.
MEMBER = "111111111111"
OTHER = "222222222222"
CANARY_ARN = f"arn:aws:iam::{MEMBER}:role/job-canary"


def runner_arn(aws: EmulatorCredentials) -> str:
    return str(admin_client(aws, "sts").get_caller_identity()["Arn"])


def denied(error: ClientError, arn: str) -> bool:
    """STS's refusal of an AssumeRole, whatever the reason: AccessDenied, 403, naming the role."""
    message = str(error.response["Error"]["Message"])
    return (code(error), status(error)) == ("AccessDenied", 403) and message.endswith(arn)


def test_a_member_accounts_role_lands_its_sessions_in_that_account(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """add_member_role makes a role in another account that the runner may assume; what its
    session does happens in that account, out of the runner's sight."""
    runner = runner_arn(aws)
    assert runner == "arn:aws:iam::123456789012:user/job-emulator-runner"
    assert add_member_role(aws.endpoint_url, MEMBER, trusted_arn=runner) == CANARY_ARN
    iam, sts = admin_client(aws, "iam"), admin_client(aws, "sts")
    # Enforcement is on again: an unknown key is refused as before.
    stranger = {"AccessKeyId": "AKIAUNKNOWNUNKNOWN00", "SecretAccessKey": "not-a-known-secret"}
    assert code(refused(client(aws, "iam", stranger).list_users)) == "InvalidClientTokenId"

    session = assume(sts, CANARY_ARN)
    identity = client(aws, "sts", session).get_caller_identity()
    assert identity["Account"] == MEMBER
    assert identity["Arn"] == f"arn:aws:sts::{MEMBER}:assumed-role/job-canary/job-t"
    member_iam = client(aws, "iam", session)
    assert [r["RoleName"] for r in member_iam.list_roles()["Roles"]] == ["job-canary"]
    key = new_user(member_iam, "job-t-member")
    assert [u["UserName"] for u in member_iam.list_users()["Users"]] == ["job-t-member"]
    assert "job-t-member" not in [u["UserName"] for u in iam.list_users()["Users"]]
    assert "job-canary" not in [r["RoleName"] for r in iam.list_roles()["Roles"]]
    # A key made there is that account's, for moto and for the layer: its user is new, its
    # lag is the member's user's, not that of a user of the same name in the runner's account.
    assert client(aws, "sts", key).get_caller_identity()["Account"] == MEMBER
    home = new_user(iam, "job-t-member")
    aws_like.new_policy_lag = LAG
    member_iam.attach_user_policy(UserName="job-t-member", PolicyArn=READ_ONLY_S3)
    assert code(refused(client(aws, "s3", key).list_buckets, MaxBuckets=10)) == "AccessDenied"
    assert code(refused(client(aws, "s3", home).list_buckets, MaxBuckets=10)) == "AccessDenied"
    assert aws_like.refusals == [
        f"new policy lag: s3:ListBuckets job-t-member ({key['AccessKeyId']})"
    ]  # the home user's refusal is moto's: it has no policy at all


def test_a_role_exists_in_its_own_account_only(aws: EmulatorCredentials, aws_like: AwsLike) -> None:
    """A role of the same name in another account is not the one asked for: AccessDenied, as
    for any role that does not exist; deleting it in one account leaves the other's."""
    iam, sts = admin_client(aws, "iam"), admin_client(aws, "sts")
    iam.create_role(RoleName="job-canary", AssumeRolePolicyDocument=TRUST_ANYONE)
    add_member_role(aws.endpoint_url, MEMBER, trusted_arn=runner_arn(aws))
    elsewhere = f"arn:aws:iam::{OTHER}:role/job-canary"

    ghost = refused(sts.assume_role, RoleArn=elsewhere, RoleSessionName="job-t")
    assert denied(ghost, elsewhere)
    assert aws_like.refusals == ["no such role: sts:AssumeRole job-canary"]
    assume(sts, "arn:aws:iam::123456789012:role/job-canary")
    member_iam = client(aws, "iam", assume(sts, CANARY_ARN))
    # The member's session deletes a role of its account (one it does not stand on).
    add_member_role(aws.endpoint_url, MEMBER, role_name="job-t-spare", trusted_arn="*")
    member_iam.delete_role_policy(RoleName="job-t-spare", PolicyName="job-member")
    member_iam.delete_role(RoleName="job-t-spare")
    spare = f"arn:aws:iam::{MEMBER}:role/job-t-spare"
    assert denied(refused(sts.assume_role, RoleArn=spare, RoleSessionName="job-t"), spare)
    # And the runner deletes its own job-canary: the member's stays.
    iam.delete_role(RoleName="job-canary")
    assume(sts, CANARY_ARN)
    assert aws_like.refusals == [
        "no such role: sts:AssumeRole job-canary",
        "no such role: sts:AssumeRole job-t-spare",
    ]

    aws_like.assume_missing_role_refused = False  # moto's own answer: any ARN will do
    assert assume(sts, elsewhere)["AccessKeyId"]
    assert len(aws_like.refusals) == 2


def test_a_trust_that_does_not_name_the_caller_refuses_it(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """Across accounts moto ignores the role's trust; AWS lets in only whom it names: the
    caller's ARN, its role's (for a session), its account, or anyone."""
    iam, sts = admin_client(aws, "iam"), admin_client(aws, "sts")
    runner = runner_arn(aws)
    someone = f"arn:aws:iam::{OTHER}:user/someone"
    add_member_role(aws.endpoint_url, MEMBER, trusted_arn=someone)

    stranger = refused(sts.assume_role, RoleArn=CANARY_ARN, RoleSessionName="job-t")
    assert denied(stranger, CANARY_ARN)
    assert stranger.response["Error"]["Message"].startswith(f"User: {runner} is not authorized")
    assert aws_like.refusals == [f"trust does not allow: sts:AssumeRole {CANARY_ARN} ({runner})"]

    # The trust changed to name the runner's account: it gets in. Changed by an administrator of
    # the member account (a role of its that trusts anyone, assumed).
    add_member_role(aws.endpoint_url, MEMBER, role_name="job-t-admin", trusted_arn="*")
    admin = client(aws, "iam", assume(sts, f"arn:aws:iam::{MEMBER}:role/job-t-admin"))
    trusting_home = member_trust_policy("arn:aws:iam::123456789012:root")
    admin.update_assume_role_policy(RoleName="job-canary", PolicyDocument=json.dumps(trusting_home))
    assume(sts, CANARY_ARN)
    # A role of the runner's account, named by its ARN, lets that role's sessions in; the runner
    # itself it does not name.
    hop = new_role(iam, "job-t-hop")
    iam.put_role_policy(
        RoleName="job-t-hop", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY)
    )
    admin.update_assume_role_policy(
        RoleName="job-canary", PolicyDocument=json.dumps(member_trust_policy(hop))
    )
    hopping = client(aws, "sts", assume(sts, hop))
    assert (
        ":assumed-role/job-canary/"
        in client(aws, "sts", assume(hopping, CANARY_ARN)).get_caller_identity()["Arn"]
    )
    assert code(refused(sts.assume_role, RoleArn=CANARY_ARN, RoleSessionName="job-t")) == (
        "AccessDenied"
    )
    assert aws_like.refusals[1:] == [
        f"trust does not allow: sts:AssumeRole {CANARY_ARN} ({runner})"
    ]

    aws_like.assume_role_trust_checked = False  # moto's own answer: across accounts, anyone
    assume(sts, CANARY_ARN)
    assert len(aws_like.refusals) == 2


def test_an_external_id_the_trust_asks_for_must_be_given(
    aws: EmulatorCredentials, aws_like: AwsLike
) -> None:
    """A trust with a StringEquals sts:ExternalId condition lets in only a call that gives that
    ExternalId: not one without (moto lets that in even in its own account), nor a wrong one
    (moto lets that in from another account)."""
    iam, sts = admin_client(aws, "iam"), admin_client(aws, "sts")
    runner = runner_arn(aws)
    add_member_role(aws.endpoint_url, MEMBER, trusted_arn=runner, external_id="fleet-7")

    def attempt(role: str, **external: str) -> ClientError:
        return refused(sts.assume_role, RoleArn=role, RoleSessionName="job-t", **external)

    assert denied(attempt(CANARY_ARN), CANARY_ARN)
    assert denied(attempt(CANARY_ARN, ExternalId="fleet-8"), CANARY_ARN)
    session = sts.assume_role(RoleArn=CANARY_ARN, RoleSessionName="job-t", ExternalId="fleet-7")
    assert client(aws, "sts", session["Credentials"]).get_caller_identity()["Account"] == MEMBER
    assert aws_like.refusals == [f"external id: sts:AssumeRole {CANARY_ARN} ({runner})"] * 2

    # In the runner's own account moto refuses a wrong one itself; a missing one, the layer.
    home = iam.create_role(
        RoleName="job-t-vendor",
        AssumeRolePolicyDocument=json.dumps(member_trust_policy(runner, "fleet-7")),
    )["Role"]["Arn"]
    assert denied(attempt(home), home)
    assert code(attempt(home, ExternalId="fleet-8")) == "AccessDenied"
    sts.assume_role(RoleArn=home, RoleSessionName="job-t", ExternalId="fleet-7")
    assert aws_like.refusals[2:] == [f"external id: sts:AssumeRole {home} ({runner})"]

    aws_like.assume_role_trust_checked = False  # moto's own answers again
    assert sts.assume_role(RoleArn=CANARY_ARN, RoleSessionName="job-t")["Credentials"]
    assert len(aws_like.refusals) == 3
