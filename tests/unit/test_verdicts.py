"""What each answer to a probe says about a permission: only success is `allow`, only an
authorization refusal is `deny`; everything else is `error` and never passes a check."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

import job.phases.verify as verify_phase
from job.config import Settings
from job.errors import BadInput
from job.ledger.states import Verdict
from job.phases.verify import deny_settle, verdict_of
from tests.faults import client_error

AWS_DENY_SETTLE = verify_phase.DENY_SETTLE
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


def test_the_settle_interval_is_the_operators_or_follows_the_propagation_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The job's own default, which tests/conftest.py shortens for every other test.
    monkeypatch.setattr(verify_phase, "DENY_SETTLE", AWS_DENY_SETTLE)
    assert deny_settle(timedelta(minutes=2)) == timedelta(seconds=10)
    # A short propagation timeout (an impatient canary, the tests) shortens it.
    assert deny_settle(timedelta(seconds=8)) == timedelta(seconds=2)
    assert deny_settle(timedelta(minutes=2), timedelta(seconds=30)) == timedelta(seconds=30)
    assert Settings.load(environ={"JOB_DENY_SETTLE": "30s"}).deny_settle == timedelta(seconds=30)
    assert Settings.load(environ={}).deny_settle is None
    with pytest.raises(BadInput, match="invalid duration"):
        Settings.load(environ={"JOB_DENY_SETTLE": "30"})
