"""Verify: prove, with each principal's own credentials, that it can do exactly what it should.

For each principal an access key is created (recorded first; its secret lives only in this
process's memory), the expected-allowed calls are tried until they succeed or the propagation
timeout passes, and only then the expected-denied ones: a denial seen before the principal's allowed
calls work could be IAM not having caught up yet, and proves nothing. The keys are deleted at the
end, whatever happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from botocore.exceptions import ClientError

from job.aws.handler import Target
from job.aws.kinds import handler_for
from job.aws.probes import probe
from job.aws.retry import until_consistent
from job.aws.session import AWS_ERRORS, DENIED, Aws, error_code, is_denial
from job.config import DEFAULT_CONCURRENCY
from job.errors import BadInput
from job.ledger.models import (
    Check,
    Outcome,
    Phase,
    PhaseAttempt,
    Resource,
    ResourceState,
    Run,
    RunStatus,
    Verdict,
)
from job.ledger.store import Store
from job.parallel import run_each, run_graph
from job.phases.common import phase, recording_failure, scenario_of, subject_of, target_for
from job.phases.teardown import delete_resource
from job.scenario import Expectation, Scenario
from job.vocabulary import ResourceKind

log = logging.getLogger(__name__)

# What AWS answers while a new key has not reached every endpoint yet.
KEY_NOT_YET_VALID = frozenset({"InvalidAccessKeyId", "InvalidClientTokenId", "AuthFailure"})
# The run's own buckets exist (provision saw to it), but S3 may still answer NoSuchBucket for a
# while after CreateBucket: worth waiting out, for an expected denial too.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel
BUCKET_NOT_YET_VISIBLE = frozenset({"NoSuchBucket"})


def verify(
    store: Store,
    aws: Aws,
    *,
    run_id: str,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Run:
    """Waits up to the AWS principal's propagation timeout for each principal's access to work."""
    run = store.get_run(run_id)
    # By what happened, not by the status: a verify that failed or was killed leaves the run
    # "failed" or "verifying", and verifying it again is exactly what should come next.
    phases = [(a.phase, a.outcome) for a in run.attempts]
    if Phase.TEARDOWN in (phase for phase, _ in phases):
        raise BadInput(f"run {run.id} has been torn down; start a new run with `job run`")
    if (Phase.PROVISION, Outcome.SUCCEEDED) not in phases:
        raise BadInput(
            f"run {run.id} is not provisioned yet; run `job provision --run-id {run.id}` first"
        )
    target = target_for(run, aws)
    scenario = scenario_of(run, target)
    with phase(store, run, Phase.VERIFY, RunStatus.VERIFYING) as attempt:
        verification = _Verification(store, target, run, attempt, scenario, concurrency)
        passed = verification.carry_out()
        store.set_status(run, RunStatus.VERIFIED if passed else RunStatus.VERIFY_FAILED)
    return run


class _Verification:
    """One verify attempt as a graph: each principal's key, then its expected-allowed calls (at
    once, each retried through propagation), then, once all of those worked, its expected
    denials. The principals proceed side by side. The methods below come in the order they run."""

    def __init__(
        self,
        store: Store,
        target: Target,
        run: Run,
        attempt: PhaseAttempt,
        scenario: Scenario,
        concurrency: int,
    ) -> None:
        self.store, self.target, self.run, self.attempt = store, target, run, attempt
        self.expectations = scenario.expectations
        self.concurrency = concurrency
        # Every principal must exist before any key is made.
        self.users = {principal: self._user(principal) for principal in scenario.principals}
        # Keys a verify killed earlier may have left (AWS allows two per user), by user name:
        # read here, before the worker threads start adding this attempt's keys to the run.
        self.leftover_keys: dict[str, list[Resource]] = {}
        for row in run.resources:
            if row.kind == ResourceKind.IAM_ACCESS_KEY and row.state is not ResourceState.DELETED:
                self.leftover_keys.setdefault(row.attributes.get("user_name", ""), []).append(row)
        self.keys: list[Resource] = []  # this attempt's, recorded: deleted whatever happens
        self.principal_aws: dict[str, Aws] = {}
        self.checks: dict[Expectation, Check] = {}

    def _user(self, principal: str) -> Resource:
        user = self.store.find_resource(self.run, principal)
        if user is None or user.state is not ResourceState.CREATED:
            raise BadInput(f"run {self.run.id} has no user {principal!r}; provision it again first")
        return user

    def carry_out(self) -> bool:
        """Make the keys and the checks, delete the keys; True when every check passed."""
        try:
            tasks, needs = self.plan()
            run_graph(tasks, needs, concurrency=self.concurrency)
        finally:
            # Whatever happened above, no key may outlive verify.
            self.delete_keys()
        return all(check.passed for check in self.checks.values())

    def plan(self) -> tuple[dict[str, Callable[[], object]], dict[str, list[str]]]:
        tasks: dict[str, Callable[[], object]] = {}
        needs: dict[str, list[str]] = {}
        for principal in dict.fromkeys(e.principal for e in self.expectations):
            key_task = f"key:{principal}"
            tasks[key_task] = partial(self.make_key, principal)
            mine = [e for e in self.expectations if e.principal == principal]
            allowed = [e for e in mine if e.expected is Verdict.ALLOW]
            allowed_tasks = [f"check:{principal}:{index}" for index in range(len(allowed))]
            for name, expectation in zip(allowed_tasks, allowed, strict=True):
                tasks[name] = partial(self.check, expectation, wait_for_access=True)
                needs[name] = [key_task]
            denied = [e for e in mine if e.expected is not Verdict.ALLOW]
            for index, expectation in enumerate(denied, start=len(allowed)):
                name = f"check:{principal}:{index}"
                tasks[name] = partial(self.check_denial, expectation, allowed)
                needs[name] = [key_task, *allowed_tasks]
        return tasks, needs

    def make_key(self, principal: str) -> None:
        user = self.users[principal]
        for row in self.leftover_keys.get(user.name, []):
            delete_resource(self.store, self.target, row)
        row = self.store.record_pending(
            self.run,
            kind=ResourceKind.IAM_ACCESS_KEY,
            logical_name=f"{principal}-key-{self.attempt.id}",
            name=f"access key of {user.name}",
            attributes={"user_name": user.name},
        )
        self.keys.append(row)
        key = self._create_key(row)
        self.principal_aws[principal] = self.target.aws.with_keys(
            key.access_key_id, key.secret_access_key
        )

    def _create_key(self, row: Resource) -> ProbeKey:
        with recording_failure(
            self.store, row, f"creating an access key for {row.attributes['user_name']}"
        ):
            created = handler_for(row.kind).create(self.target, subject_of(row))
        self.store.set_state(row, ResourceState.CREATED, physical_id=created.physical_id)
        assert created.secret is not None
        return ProbeKey(created.physical_id, created.secret)

    def check(self, expectation: Expectation, *, wait_for_access: bool) -> None:
        """Make the call until AWS has caught up or the propagation timeout passes: while the key
        is new, while the bucket is new, and, when `wait_for_access` (an expected allow: a new
        attachment takes a while to work everywhere), while AWS still refuses it."""
        principal_aws = self.principal_aws[expectation.principal]
        retry_on = (
            KEY_NOT_YET_VALID | BUCKET_NOT_YET_VISIBLE | (DENIED if wait_for_access else set())
        )
        try:
            until_consistent(
                lambda: probe(
                    principal_aws, expectation.action, expectation.bucket, expectation.key
                ),
                retry_on=retry_on,
                timeout=self.target.propagation_timeout,
                what=f"{expectation.principal}'s access",
            )
        except AWS_ERRORS as error:
            # The code is kept: "error" alone would not say whether the bucket or the key was
            # missing.
            detail = error_code(error) if isinstance(error, ClientError) else str(error)
            self.record(expectation, verdict_of(error), detail)
            return
        self.record(expectation, verdict_of(None), None)

    def check_denial(self, expectation: Expectation, allowed: list[Expectation]) -> None:
        # A denial proves something only once the principal's allowed calls work: before that,
        # it could be IAM not having caught up yet.
        if all(self.checks[e].passed for e in allowed):
            self.check(expectation, wait_for_access=False)
            return
        self.record(
            expectation,
            Verdict.ERROR,
            "not tried: the principal's allowed calls never succeeded, so a denial would prove "
            "nothing",
        )

    def record(self, expectation: Expectation, actual: Verdict, detail: str | None) -> None:
        """Write the check to the ledger, log it, and keep it for the denials that wait on it."""
        check = self.store.record_check(
            self.run,
            self.attempt,
            principal=expectation.principal,
            action=expectation.action,
            resource=expectation.resource_arn(self.target),
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
        self.checks[expectation] = check

    def delete_keys(self) -> None:
        run_each(
            {
                row.logical_name: partial(delete_resource, self.store, self.target, row)
                for row in self.keys
            },
            concurrency=self.concurrency,
            keep_going=True,
        )


def verdict_of(error: BaseException | None) -> Verdict:
    """What a probe's outcome says: `allow` when the call succeeded (no error), `deny` for an
    authorization refusal, `error` for every other answer (a missing bucket or key, a key AWS does
    not know, a 5xx, throttling past retries, a code we do not know, no answer at all): it is no
    answer about the permission, and never passes a check."""
    if error is None:
        return Verdict.ALLOW
    return Verdict.DENY if is_denial(error) else Verdict.ERROR


@dataclass
class ProbeKey:
    """A principal's access key for the length of verify. The secret is never stored or printed."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
