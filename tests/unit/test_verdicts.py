"""What each answer to a probe says about a permission: only success is `allow`, only an
authorization refusal is `deny`; everything else is `error` and never passes a check."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from job.ledger.states import Verdict
from job.phases.verify import verdict_of
from tests.faults import client_error

DENIALS = ["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"]
NOT_ABOUT_PERMISSIONS = [
    # S3 answers these before it looks at who asks: a missing bucket proves nothing either way.
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchEntity",
    "404",
    # A key AWS does not know (yet, or any more) is not a refusal of the action.
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    # The service failing, or throttling past the retries.
    "InternalError",
    "500",
    "503",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    # Whatever AWS invents next.
    "SomethingNew",
    "",
]


def test_success_is_allow() -> None:
    assert verdict_of(None) is Verdict.ALLOW


@pytest.mark.parametrize("code", DENIALS)
def test_authorization_refusals_are_deny(code: str) -> None:
    assert verdict_of(client_error(code, "GetObject")) is Verdict.DENY


@pytest.mark.parametrize("code", NOT_ABOUT_PERMISSIONS)
def test_every_other_answer_is_error(code: str) -> None:
    assert verdict_of(client_error(code, "GetObject")) is Verdict.ERROR


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://s3.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://s3.amazonaws.com"),
    ],
)
def test_no_answer_at_all_is_error(error: Exception) -> None:
    assert verdict_of(error) is Verdict.ERROR
