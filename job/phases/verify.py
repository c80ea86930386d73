"""Verify: prove, with each principal's own credentials, that it can do exactly what it should.

For each principal an access key is created (recorded first; its secret lives only in this
process's memory), the expected-allowed calls are tried until they succeed or the propagation
timeout passes, and only then the expected-denied ones: a denial seen before the principal's allowed
calls work could be IAM not having caught up yet, and proves nothing. The keys are deleted at the
end, whatever happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError

from job.aws.handler import Target
from job.aws.kinds import handler_for
from job.aws.probes import probe
from job.aws.retry import until_consistent
from job.aws.session import Aws, error_code
from job.errors import BadInput
from job.ledger.models import (
    Check,
    Outcome,
    PhaseAttempt,
    Resource,
    ResourceState,
    Run,
    RunStatus,
    Verdict,
)
from job.ledger.store import Store
from job.phases.common import phase, recording_failure, target_for
from job.phases.teardown import delete_resource
from job.scenario import Expectation, RunOptions, seed_scenario

log = logging.getLogger(__name__)

# What AWS answers while a new key or a new attachment has not reached every endpoint yet.
KEY_NOT_YET_VALID = {"InvalidAccessKeyId", "InvalidClientTokenId", "AuthFailure"}
DENIED = {"AccessDenied", "AccessDeniedException", "Forbidden", "403"}


@dataclass
class ProbeKey:
    """A principal's access key for the length of verify. The secret is never stored or printed."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


def verify(store: Store, aws: Aws, *, run_id: str, propagation_timeout: timedelta) -> Run:
    run = store.get_run(run_id)
    # By what happened, not by the status: a verify that failed or was killed leaves the run
    # "failed" or "verifying", and verifying it again is exactly what should come next.
    phases = [(a.phase, a.outcome) for a in run.attempts]
    if "teardown" in (phase for phase, _ in phases):
        raise BadInput(f"run {run.id} has been torn down; start a new run with `job run`")
    if ("provision", Outcome.SUCCEEDED) not in phases:
        raise BadInput(
            f"run {run.id} is not provisioned yet; run `job provision --run-id {run.id}` first"
        )
    target = target_for(run, aws)
    scenario = seed_scenario(run.prefix, target, RunOptions.of(run))
    with phase(store, run, "verify", RunStatus.VERIFYING) as attempt:
        checks: list[Check] = []
        for principal in scenario.principals:
            expectations = [e for e in scenario.expectations if e.principal == principal]
            checks += _verify_principal(
                store, target, run, attempt, principal, expectations, propagation_timeout
            )
        passed = all(check.passed for check in checks)
        store.set_status(run, RunStatus.VERIFIED if passed else RunStatus.VERIFY_FAILED)
    return run


def _verify_principal(
    store: Store,
    target: Target,
    run: Run,
    attempt: PhaseAttempt,
    principal: str,
    expectations: list[Expectation],
    timeout: timedelta,
) -> list[Check]:
    user = store.find_resource(run, principal)
    if user is None or user.state is not ResourceState.CREATED:
        raise BadInput(f"run {run.id} has no user {principal!r}; provision it again first")
    # A verify killed earlier may have left a key (AWS allows two per user): remove it first.
    leftover_keys = [
        row
        for row in run.resources
        if row.kind == "iam_access_key"
        and row.state is not ResourceState.DELETED
        and row.attributes.get("user_name") == user.name
    ]
    for row in leftover_keys:
        delete_resource(store, target, row)
    key_row = store.record_pending(
        run,
        kind="iam_access_key",
        logical_name=f"{principal}-key-{attempt.id}",
        name=f"access key of {user.name}",
        attributes={"user_name": user.name},
    )
    try:
        key = _create_key(store, target, key_row)
        principal_aws = target.aws.with_keys(key.access_key_id, key.secret_access_key)
        checks = []
        allowed = [e for e in expectations if e.expected is Verdict.ALLOW]
        denied = [e for e in expectations if e.expected is not Verdict.ALLOW]
        for expectation in allowed:
            checks.append(_check(store, target, run, attempt, principal_aws, expectation, timeout))
        proven = all(check.passed for check in checks)
        for expectation in denied:
            if proven:
                checks.append(_check(store, target, run, attempt, principal_aws, expectation, None))
            else:
                checks.append(
                    _record(
                        store,
                        target,
                        run,
                        attempt,
                        expectation,
                        Verdict.ERROR,
                        "not tried: the principal's allowed calls never succeeded, so a denial "
                        "would prove nothing",
                    )
                )
        return checks
    finally:
        # Whatever happened above, the key must not outlive verify.
        delete_resource(store, target, key_row)


def _create_key(store: Store, target: Target, row: Resource) -> ProbeKey:
    with recording_failure(store, row, f"creating an access key for {row.attributes['user_name']}"):
        created = handler_for(row.kind).create(target, row)
    store.set_state(row, ResourceState.CREATED, physical_id=created.physical_id)
    assert created.secret is not None
    return ProbeKey(created.physical_id, created.secret)


def _check(
    store: Store,
    target: Target,
    run: Run,
    attempt: PhaseAttempt,
    principal_aws: Aws,
    expectation: Expectation,
    timeout: timedelta | None,
) -> Check:
    """Try the call once (for a denial) or until it is allowed or `timeout` passes (for an allow:
    a new key and a new attachment take a while to work everywhere)."""
    retry_on = KEY_NOT_YET_VALID | (DENIED if timeout is not None else set())
    try:
        until_consistent(
            lambda: probe(principal_aws, expectation.action, expectation.bucket, expectation.key),
            retry_on=retry_on,
            timeout=timeout or timedelta(seconds=30),
            what=f"{expectation.principal}'s access",
        )
    except ClientError as error:
        code = error_code(error)
        actual = Verdict.DENY if code in DENIED else Verdict.ERROR
        return _record(store, target, run, attempt, expectation, actual, code)
    except BotoCoreError as error:
        return _record(store, target, run, attempt, expectation, Verdict.ERROR, str(error))
    return _record(store, target, run, attempt, expectation, Verdict.ALLOW, None)


def _record(
    store: Store,
    target: Target,
    run: Run,
    attempt: PhaseAttempt,
    expectation: Expectation,
    actual: Verdict,
    detail: str | None,
) -> Check:
    check = store.record_check(
        run,
        attempt,
        principal=expectation.principal,
        action=expectation.action,
        resource=expectation.resource_arn(target),
        expected=expectation.expected,
        actual=actual,
        detail=detail,
    )
    level = logging.INFO if check.passed else logging.WARNING
    log.log(
        level,
        "%s %s on %s: expected %s, got %s%s",
        check.principal,
        check.action,
        check.resource,
        check.expected.value,
        check.actual.value,
        f" ({detail})" if detail else "",
    )
    return check
