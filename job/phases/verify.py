"""Verify: prove, with each principal's own credentials, that it can do exactly what it should.

A user principal gets an access key (recorded first; its secret lives only in this process's
memory), deleted at the end, whatever happened. A role principal is assumed by the job's own
principal (sts:AssumeRole, retried while AWS does not know the new role yet): its temporary
credentials, in memory only, expire by themselves after 15 minutes. With either, the
expected-allowed calls are tried until they succeed or the propagation timeout passes, and only
then the expected-denied ones: a denial seen before the principal's allowed calls work could be IAM
not having caught up yet, and proves nothing.

What AWS took is measured, not assumed, and kept with the run (Run.measurements): for each
principal, the seconds from its credentials' creation (a user's key; a role's policy attachment, or
the role if later) to its first allowed call succeeding ("propagation_seconds"); and, when asked,
the seconds from revoking a principal's credentials to AWS refusing them ("revocation_seconds"): for
a user, from its key's deletion; for a role, from putting AWS's revoke-older-sessions deny policy on
it (recorded like any resource, and taken off again at once) to its session's allowed call being
refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from botocore.exceptions import ClientError

from job.aws.handler import Target
from job.aws.iam import REVOKE_SESSIONS_POLICY, ROLE_SESSION_SECONDS, assume_role
from job.aws.kinds import handler_for
from job.aws.probes import PROBES, probe
from job.aws.retry import until_consistent, until_refused
from job.aws.session import AWS_ERRORS, DENIED, Aws, describe_aws_error, error_code, is_denial
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
    utcnow,
)
from job.ledger.store import Store
from job.parallel import run_each, run_graph
from job.phases.common import (
    CreatedHere,
    phase,
    recording_failure,
    scenario_of,
    subject_of,
    target_for,
)
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
    measure_revocation: bool = False,
    created_here: CreatedHere | None = None,
) -> Run:
    """Waits up to the AWS principal's propagation timeout for each principal's access to work.
    With `measure_revocation`, each principal's credentials are revoked (a user's key deleted, a
    role's sessions denied) and tried until AWS refuses them (up to the propagation timeout), and
    the time that took is recorded."""
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
        verification = _Verification(
            store, target, run, attempt, scenario, concurrency, measure_revocation, created_here
        )
        passed = verification.carry_out()
        store.set_status(run, RunStatus.VERIFIED if passed else RunStatus.VERIFY_FAILED)
    return run


class _Verification:
    """One verify attempt as a graph: each principal's credentials (a user's new key, a role's
    session), then its expected-allowed calls (at once, each retried through propagation), then,
    once all of those worked, its expected denials. The principals proceed side by side. The
    methods below come in the order they run."""

    def __init__(
        self,
        store: Store,
        target: Target,
        run: Run,
        attempt: PhaseAttempt,
        scenario: Scenario,
        concurrency: int,
        measure_revocation: bool = False,
        created_here: CreatedHere | None = None,
    ) -> None:
        self.store, self.target, self.run, self.attempt = store, target, run, attempt
        # This attempt's keys and revocations are made and deleted under one hold, by this
        # process: deleted without asking AWS whose they are (leftovers of earlier ones are not).
        self.created_here = created_here if created_here is not None else CreatedHere()
        self.scenario = scenario
        self.expectations = scenario.expectations
        self.concurrency = concurrency
        self.measure_revocation = measure_revocation
        # Every principal must exist before any credentials are made.
        self.principals = {
            principal: self._principal(principal) for principal in scenario.principals
        }
        # Keys a verify killed earlier may have left (AWS allows two per user), by user name:
        # read here, before the worker threads start adding this attempt's keys to the run.
        self.leftover_keys: dict[str, list[Resource]] = {}
        for row in run.resources:
            if row.kind == ResourceKind.IAM_ACCESS_KEY and row.state is not ResourceState.DELETED:
                self.leftover_keys.setdefault(row.attributes.get("user_name", ""), []).append(row)
        # A role's permissions are in force from its policy attachment's creation, or the role's
        # if that came later: when the ledger marked each created, as AWS answered. Read here,
        # before the worker threads start adding rows to the run.
        self.role_ready_at: dict[str, datetime] = {}
        for principal, row in self.principals.items():
            if row.kind == ResourceKind.IAM_ROLE:
                self.role_ready_at[principal] = max(
                    [
                        row.updated_at,
                        *(
                            other.updated_at
                            for other in run.resources
                            if other.kind == ResourceKind.IAM_ROLE_POLICY_ATTACHMENT
                            and other.state is ResourceState.CREATED
                            and other.attributes.get("role_name") == row.name
                        ),
                    ]
                )
        # This attempt's keys, recorded, by principal: deleted whatever happens.
        self.keys: dict[str, Resource] = {}
        self.principal_aws: dict[str, Aws] = {}
        # When STS says each role session was issued (its expiry less its length): AWS's clock.
        self.session_issued: dict[str, datetime] = {}
        self.checks: dict[Expectation, Check] = {}
        # Measurements: when each principal's credentials came to be, and its first success.
        self._measuring = threading.Lock()
        self.credentials_since: dict[str, datetime] = {}
        self.first_success: dict[str, datetime] = {}
        self.revocation: dict[str, float] = {}

    def _principal(self, principal: str) -> Resource:
        try:
            kind = self.scenario.principal_kind(principal)
        except KeyError:
            raise BadInput(
                f"the scenario of run {self.run.id} expects permissions of {principal!r}, which "
                "it does not create as a user or role"
            ) from None
        row = self.store.find_resource(self.run, principal)
        if row is None or row.state is not ResourceState.CREATED:
            what = "role" if kind is ResourceKind.IAM_ROLE else "user"
            raise BadInput(
                f"run {self.run.id} has no {what} {principal!r}; provision it again first"
            )
        return row

    def carry_out(self) -> bool:
        """Make the credentials and the checks, delete the keys, record what was measured; True
        when every check passed."""
        try:
            tasks, needs = self.plan()
            run_graph(tasks, needs, concurrency=self.concurrency)
        finally:
            # Whatever happened above, no key may outlive verify.
            self.end_credentials()
        self.store.set_measurements(self.run, self.measurements())
        return all(check.passed for check in self.checks.values())

    def plan(self) -> tuple[dict[str, Callable[[], object]], dict[str, list[str]]]:
        tasks: dict[str, Callable[[], object]] = {}
        needs: dict[str, list[str]] = {}
        for principal in dict.fromkeys(e.principal for e in self.expectations):
            key_task = f"key:{principal}"
            tasks[key_task] = partial(self.make_credentials, principal)
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

    def make_credentials(self, principal: str) -> None:
        if self.principals[principal].kind == ResourceKind.IAM_ROLE:
            self.assume(principal)
        else:
            self.make_key(principal)

    def assume(self, principal: str) -> None:
        role = self.principals[principal]
        try:
            session = assume_role(self.target, role.name, f"job-{self.run.id}")
        except AWS_ERRORS as error:
            waited = self.target.propagation_timeout.total_seconds()
            raise describe_aws_error(
                error,
                f"assuming role {role.name} (sts:AssumeRole, retried for {waited:g}s while AWS "
                "caught up with the new role)",
            ) from None
        with self._measuring:
            self.credentials_since[principal] = self.role_ready_at[principal]
            if session.expiration is not None:
                self.session_issued[principal] = session.expiration - timedelta(
                    seconds=ROLE_SESSION_SECONDS
                )
        self.principal_aws[principal] = self.target.aws.with_keys(
            session.access_key_id, session.secret_access_key, session.session_token
        )

    def make_key(self, principal: str) -> None:
        user = self.principals[principal]
        for row in self.leftover_keys.get(user.name, []):
            delete_resource(self.store, self.target, row)
        row = self.store.record_pending(
            self.run,
            kind=ResourceKind.IAM_ACCESS_KEY,
            logical_name=f"{principal}-key-{self.attempt.id}",
            name=f"access key of {user.name}",
            attributes={"user_name": user.name},
        )
        self.keys[principal] = row
        key = self._create_key(row)
        with self._measuring:
            self.credentials_since[principal] = utcnow()
        self.principal_aws[principal] = self.target.aws.with_keys(
            key.access_key_id, key.secret_access_key
        )

    def _create_key(self, row: Resource) -> ProbeKey:
        with recording_failure(
            self.store, row, f"creating an access key for {row.attributes['user_name']}"
        ):
            created = handler_for(row.kind).create(self.target, subject_of(row))
        self.store.set_state(row, ResourceState.CREATED, physical_id=created.physical_id)
        self.created_here.add(row)
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
        if wait_for_access:
            now = utcnow()
            with self._measuring:
                first = self.first_success.get(expectation.principal)
                if first is None or now < first:
                    self.first_success[expectation.principal] = now
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

    def end_credentials(self) -> None:
        """Delete every key; with measure_revocation, also time each role's session revocation."""
        tasks: dict[str, Callable[[], object]] = {
            row.logical_name: partial(self.delete_key, principal, row)
            for principal, row in self.keys.items()
        }
        if self.measure_revocation:
            for principal in self.principal_aws:
                if self.principals[principal].kind == ResourceKind.IAM_ROLE:
                    tasks[f"revoke:{principal}"] = partial(self.revoke_session, principal)
        run_each(tasks, concurrency=self.concurrency, keep_going=True)

    def delete_key(self, principal: str, row: Resource) -> None:
        delete_resource(self.store, self.target, row, self.created_here)
        principal_aws = self.principal_aws.get(principal)
        if self.measure_revocation and principal_aws is not None:
            self.measure_revocation_of(principal, principal_aws)

    def measure_revocation_of(self, principal: str, principal_aws: Aws) -> None:
        """Use the deleted key until AWS refuses it. GetCallerIdentity needs no permission, so
        only the key's own validity decides its answer."""
        self._time_refusal(
            principal,
            lambda: principal_aws.client("sts").get_caller_identity(),
            refused=KEY_NOT_YET_VALID | DENIED,
            what="deleted key",
        )

    def revoke_session(self, principal: str) -> None:
        """Put AWS's revoke-older-sessions policy on the role (recorded first, like everything
        the job creates), try one of the session's allowed calls until AWS refuses it, and take the
        policy off again, whatever happened: later sessions of the role are not affected, so the
        role stays as provision made it. A session is tried with an allowed call that worked: a
        deny policy cannot refuse sts:GetCallerIdentity, and a principal that is only expected
        denied has nothing to be refused."""
        retry = next(
            (
                expectation
                for expectation, check in self.checks.items()
                if expectation.principal == principal
                and check.passed
                and expectation.expected is Verdict.ALLOW
                and not PROBES[expectation.action].always_allowed
            ),
            None,
        )
        if retry is None:
            log.warning(
                "not timing the revocation of %s's session: none of its allowed calls (other than "
                "sts:GetCallerIdentity) worked, so there is nothing for AWS to refuse",
                principal,
            )
            return
        role = self.principals[principal]
        # The deny covers sessions issued before this moment, by the local clock or, if that is
        # behind, by STS's own account of when the session began.
        issued_before = max(utcnow(), self.session_issued.get(principal, utcnow()))
        row = self.store.record_pending(
            self.run,
            kind=ResourceKind.IAM_ROLE_SESSION_REVOCATION,
            logical_name=f"{principal}-revocation-{self.attempt.id}",
            name=REVOKE_SESSIONS_POLICY,
            attributes={
                "role_name": role.name,
                "issued_before": (issued_before + timedelta(seconds=1)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            },
        )
        try:
            with recording_failure(self.store, row, f"revoking the sessions of role {role.name}"):
                created = handler_for(row.kind).create(self.target, subject_of(row))
            self.store.set_state(row, ResourceState.CREATED, physical_id=created.physical_id)
            self.created_here.add(row)
            principal_aws = self.principal_aws[principal]
            self._time_refusal(
                principal,
                lambda: probe(principal_aws, retry.action, retry.bucket, retry.key),
                refused=DENIED,
                what="revoked session",
            )
        finally:
            delete_resource(self.store, self.target, row, self.created_here)

    def _time_refusal(
        self, principal: str, call: Callable[[], object], *, refused: frozenset[str], what: str
    ) -> None:
        try:
            seconds = until_refused(
                call,
                refused=refused,
                timeout=self.target.propagation_timeout,
                what=f"{principal}'s {what} to be refused",
            )
        except AWS_ERRORS as error:
            log.warning(
                "could not measure how long %s's %s kept working: %s",
                principal,
                what,
                describe_aws_error(error, "trying it").message,
            )
            return
        if seconds is None:
            log.warning(
                "%s's %s still worked after %s; no revocation time recorded",
                principal,
                what,
                self.target.propagation_timeout,
            )
            return
        with self._measuring:
            self.revocation[principal] = seconds

    def measurements(self) -> dict[str, dict[str, float]]:
        with self._measuring:
            propagation = {
                principal: round(
                    max((at - self.credentials_since[principal]).total_seconds(), 0), 3
                )
                for principal, at in self.first_success.items()
                if principal in self.credentials_since
            }
            measured = {"propagation_seconds": propagation}
            if self.measure_revocation:
                measured["revocation_seconds"] = {
                    principal: round(seconds, 3) for principal, seconds in self.revocation.items()
                }
        return measured


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
