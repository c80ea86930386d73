"""The job's boto3 sessions (job.aws.session.new_session) are built faster than boto3's own, from a
shared loader and a copy of botocore's builtin handlers: the requests their clients send must be
the very requests a session built as boto3 builds it sends."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.session
import pytest

from job.aws.session import new_session

# Requests whose shape botocore's builtin handlers decide: S3's checksums and SSE-C key digest,
# "Expect: 100-continue", query-protocol serialization, STS's and IAM's global endpoints.
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("s3", "put_object", {"Bucket": "b", "Key": "k", "Body": b"data"}),
    ("s3", "get_object", {"Bucket": "b", "Key": "k", "SSECustomerKey": "k" * 32}),
    ("s3", "delete_objects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}}),
    ("s3", "put_bucket_policy", {"Bucket": "b", "Policy": "{}"}),
    ("iam", "create_user", {"UserName": "u", "Tags": [{"Key": "k", "Value": "v"}]}),
    (
        "sts",
        "assume_role",
        {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "job"},
    ),
]
# Differ from one request to the next whatever builds the session.
VARYING = {"X-Amz-Date", "Authorization", "amz-sdk-invocation-id", "User-Agent"}


class _Sent(Exception):
    pass


def _request(session: boto3.Session, service: str, operation: str, params: dict[str, Any]) -> Any:
    client = session.client(
        service,  # type: ignore[call-overload]
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )
    sent: list[Any] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(request)
        raise _Sent

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Sent):
        getattr(client, operation)(**params)
    request = sent[0]
    headers = {k: v for k, v in request.headers.items() if k not in VARYING}
    body = request.body.read() if hasattr(request.body, "read") else request.body
    return request.method, request.url, headers, body


@pytest.mark.parametrize(("service", "operation", "params"), CALLS, ids=[c[1] for c in CALLS])
def test_a_session_of_the_job_sends_what_boto3s_own_sends(
    service: str, operation: str, params: dict[str, Any]
) -> None:
    # AWS_ENDPOINT_URL, which would send both to one address, is gone: tests/conftest.py's
    # _isolated_environment removes it from every test's environment.
    plain = boto3.Session(botocore_session=botocore.session.Session())
    assert _request(new_session(), service, operation, params) == _request(
        plain, service, operation, params
    )
