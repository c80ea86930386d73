"""Verify: prove, with each principal's own credentials, that it can do exactly what it should.

A user principal gets an access key (recorded first; its secret lives only in this process's
memory), deleted at the end, whatever happened. A role principal is assumed by the job's own
principal (sts:AssumeRole, retried while AWS does not know the new role yet): its temporary
credentials, in memory only, last as long as verify may need them (session_seconds) and are
assumed again if they expire all the same. With either, the expected-allowed calls are tried until
they succeed or the propagation timeout passes.

A denial is believed only where the principal is known to be in effect: AWS propagates a
principal's credentials and policies to each service separately ("Any change that you make in IAM
... takes time to become visible from all possible endpoints"), so an S3 call that works proves
nothing about what IAM has seen. A denied cell therefore waits for an allowed call of the same
principal in the same service to succeed (its witness), and is not tried when none did. Where the
principal has no allowed call in that service, a first denial is asked again DENY_SETTLE later,
and only a second denial is recorded as one.
https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency

Checks do not race each other: a check that changes an object (an overwrite, a delete) runs only
after every check that reads that object, whoever's, so the verdicts do not depend on the order AWS
sees the calls in.

Every cell of the scenario ends with an answer or a reason (`error`, with why: the role could not
be assumed, the key never worked, AWS answered something else), and the run's verdict is judged
against all of them (job.ledger.states.RunVerdict): a verify that stopped part-way is incomplete,
never passed.

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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from botocore.exceptions import ClientError

from job.aws.handler import Target
from job.aws.iam.roles import REVOKE_SESSIONS_POLICY, assume_role
from job.aws.iam.roles import session_seconds as role_session_seconds
from job.aws.probes import probe
from job.aws.retry import until_consistent, until_refused
from job.aws.session import AWS_ERRORS, DENIED, Aws, describe_aws_error, error_code, is_denial
from job.config import DEFAULT_CONCURRENCY
from job.errors import AwsError, BadInput, LedgerError
from job.kinds import (
    AccessKeyAttributes,
    GroupMembershipAttributes,
    SessionRevocationAttributes,
    attributes_of,
    read_as,
)
from job.ledger.models import (
    Check,
    Outcome,
    Phase,
    PhaseAttempt,
    Resource,
    ResourceState,
    Run,
    RunStatus,
    RunVerdict,
    Verdict,
    utcnow,
)
from job.ledger.store import Store
from job.parallel import run_each, run_graph
from job.phases.common import (
    CreatedHere,
    create_recorded,
    delete_recorded,
    naming_of,
    phase,
    scenario_of,
    target_for,
)
from job.probes import PROBES
from job.scenario import Expectation, Scenario
from job.vocabulary import ResourceKind

log = logging.getLogger(__name__)

# What AWS answers while a new key has not reached every endpoint yet.
KEY_NOT_YET_VALID = frozenset({"InvalidAccessKeyId", "InvalidClientTokenId", "AuthFailure"})
# The run's own buckets exist (provision saw to it), but S3 may still answer NoSuchBucket for a
# while after CreateBucket: worth waiting out, for an expected denial too.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel
BUCKET_NOT_YET_VISIBLE = frozenset({"NoSuchBucket"})
# What AWS answers to a role session's credentials once they have expired: assumed again, then
# asked again. https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
SESSION_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException"})
# How long a denial with no witness in its service (no allowed call of the same principal there)
# waits before it is asked again. IAM documents no bound on propagation, only that it takes time;
# an S3 or IAM policy change is usually seen within seconds, so ten is several times the usual, and
# a denial still standing then is taken as the policy's. A quarter of the propagation timeout when
# that is shorter, so that a short JOB_PROPAGATION_TIMEOUT (tests, impatient canaries) shortens it.
DENY_SETTLE = timedelta(seconds=10)


def deny_settle(propagation_timeout: timedelta, given: timedelta | None = None) -> timedelta:
    """JOB_DENY_SETTLE when given; otherwise DENY_SETTLE, or a quarter of the propagation timeout
    when that is shorter."""
    return given if given is not None else min(DENY_SETTLE, propagation_timeout / 4)


def session_seconds(propagation_timeout: timedelta, settle: timedelta | None = None) -> int:
    """How long a role session must last: an allowed call may be retried for the propagation
    timeout, a denial asked again after the settle interval, and a revocation timed for the
    propagation timeout again, with a few minutes to spare; within what STS and the role allow
    (job.aws.iam.roles.session_seconds)."""
    needed = (
        2 * propagation_timeout + deny_settle(propagation_timeout, settle) + timedelta(minutes=5)
    )
    return role_session_seconds(needed.total_seconds())


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
    scenario = scenario_of(run)
    try:
        with phase(store, run, Phase.VERIFY, RunStatus.VERIFYING) as attempt:
            # Before the first check: a verify killed at any point from here leaves a true
            # verdict behind (incomplete), and never the one an earlier verify recorded.
            verification = _Verification(
                store, target, run, attempt, scenario, concurrency, measure_revocation, created_here
            )
            store.set_verdict(run, RunVerdict.INCOMPLETE, "verify did not finish")
            try:
                verification.carry_out()
            finally:
                _record_verdict(store, run, scenario.expectations, verification.checks)
            if run.verdict is RunVerdict.INCOMPLETE:
                # The attempt failed (`runs show` says why), and the run with it; the verdict and
                # every check are recorded all the same.
                raise _Incomplete(run.verdict_summary or "")
            store.set_status(
                run,
                RunStatus.VERIFIED if run.verdict is RunVerdict.PASSED else RunStatus.VERIFY_FAILED,
            )
    except _Incomplete:
        pass
    return run


class _Incomplete(AwsError):
    """Some cell has no answer: the verify attempt is recorded as failed with the verdict's
    summary; the command still reports the run, and exits 4 by its verdict."""


def judge(
    expectations: Sequence[Expectation], checks: Mapping[Expectation, Check]
) -> tuple[RunVerdict, str]:
    """The run's verdict over every cell of the scenario, and its one-line summary. A cell with
    no check (never run) or whose answer was `error` is not answered; a cell answered `allow` or
    `deny` otherwise than expected failed."""
    total = len(expectations)
    failed = [e for e in expectations if e in checks and _differs(checks[e])]
    unanswered = [e for e in expectations if e not in checks or checks[e].actual is Verdict.ERROR]
    reasons = [_reason(e, checks.get(e)) for e in unanswered]
    not_answered = (
        f"{len(unanswered)} of {total} checks not answered: {reasons[0]}" if unanswered else ""
    )
    if failed:
        summary = f"{len(failed)} of {total} checks FAILED"
        return RunVerdict.FAILED, summary + (f"; {not_answered}" if not_answered else "")
    if unanswered:
        return RunVerdict.INCOMPLETE, not_answered
    return RunVerdict.PASSED, f"all checks passed, {total} of {total}"


def _differs(check: Check) -> bool:
    return check.actual is not Verdict.ERROR and check.actual is not check.expected


def _reason(expectation: Expectation, check: Check | None) -> str:
    cell = f"{expectation.principal} {expectation.action}"
    if check is None:
        return f"{cell}: not run (verify stopped before it)"
    return f"{cell}: {check.detail or 'AWS answered neither allow nor deny'}"


def _record_verdict(
    store: Store, run: Run, expectations: Sequence[Expectation], checks: Mapping[Expectation, Check]
) -> None:
    verdict, summary = judge(expectations, checks)
    try:
        store.set_verdict(run, verdict, summary)
    except LedgerError:
        # Raised from a `finally`: the error that stopped verify says more. The verdict already
        # recorded (incomplete, from the start of this attempt) is true.
        log.error("could not record the verdict of run %s (%s)", run.id, summary)


# Who a row of each kind gives permissions to: the attribute naming its user, role or group.
_HOLDERS = {
    ResourceKind.IAM_USER_POLICY_ATTACHMENT: "user_name",
    ResourceKind.IAM_ROLE_POLICY_ATTACHMENT: "role_name",
    ResourceKind.IAM_GROUP_POLICY_ATTACHMENT: "group_name",
    ResourceKind.IAM_GROUP_MEMBERSHIP: "user_name",
}


def _policy_since(principal: Resource, rows: Sequence[Resource]) -> datetime:
    """When the last of what gives `principal` (a user's or role's row) its permissions was
    created: the principal itself, its attachments, its memberships and its groups'
    attachments."""
    created = [row for row in rows if row.kind in _HOLDERS and row.state is ResourceState.CREATED]
    holders = {principal.name} | {
        read_as(attributes_of(row), GroupMembershipAttributes).group_name
        for row in created
        if row.kind == ResourceKind.IAM_GROUP_MEMBERSHIP
        and read_as(attributes_of(row), GroupMembershipAttributes).user_name == principal.name
    }
    return max(
        [
            principal.updated_at,
            *(
                row.updated_at
                for row in created
                if getattr(attributes_of(row), _HOLDERS[ResourceKind(row.kind)]) in holders
            ),
        ]
    )


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
        self.naming = naming_of(run)
        self.expectations = scenario.expectations
        self.concurrency = concurrency
        self.measure_revocation = measure_revocation
        # Every principal the run made must exist before any credentials are made (an existing
        # role has no row: the run owns nothing of it).
        self.principals = {
            principal: self._principal(principal)
            for principal in scenario.principals
            if principal not in scenario.existing_roles
        }
        # Keys a verify killed earlier may have left (AWS allows two per user), by user name:
        # read here, before the worker threads start adding this attempt's keys to the run.
        self.leftover_keys: dict[str, list[Resource]] = {}
        for row in run.resources:
            if row.kind == ResourceKind.IAM_ACCESS_KEY and row.state is not ResourceState.DELETED:
                user_name = read_as(attributes_of(row), AccessKeyAttributes).user_name
                self.leftover_keys.setdefault(user_name, []).append(row)
        # A principal's permissions are in force from its policy attachments' creation, or the
        # user's or role's if that came later: when the ledger marked each created, as AWS
        # answered. A user has its groups' policies too: its memberships, and its groups'
        # attachments, take time to reach AWS's endpoints as its own attachments do.
        # https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
        # Read here, before the worker threads start adding rows to the run.
        self.policy_since: dict[str, datetime] = {
            principal: _policy_since(row, run.resources)
            for principal, row in self.principals.items()
        }
        # When each of the run's roles was made: a new role's trust takes a while to reach
        # everywhere too, so a cell aimed at it (sts:AssumeRole) is not denied before it settled.
        self.role_since: dict[str, datetime] = {
            row.name: row.updated_at
            for row in run.resources
            if row.kind == ResourceKind.IAM_ROLE and row.state is ResourceState.CREATED
        }
        # The denials a missing role would give too (job.probes, refused_when_role_missing)
        # aimed at an existing role: by cell, the role's logical name.
        existing_by_arn = {arn: name for name, arn in scenario.existing_roles.items()}
        self.roles_shown_to_exist: dict[Expectation, str] = {
            e: existing_by_arn[str(e.resource)]
            for e in scenario.expectations
            if e.expected is Verdict.DENY
            and PROBES[e.action].refused_when_role_missing
            and e.resource in existing_by_arn
        }
        # An existing role's permissions are whatever they were before the run: in force.
        for principal in scenario.existing_roles:
            self.policy_since[principal] = run.created_at
        # This attempt's keys, recorded, by principal: deleted whatever happens.
        self.keys: dict[str, Resource] = {}
        self.principal_aws: dict[str, Aws] = {}
        # When STS says each role session was issued (its expiry less its length): AWS's clock.
        self.session_issued: dict[str, datetime] = {}
        self.checks: dict[Expectation, Check] = {}
        # Why a principal has no credentials (its cells are then recorded unanswered with it).
        self.credential_failures: dict[str, str] = {}
        self.session_seconds = session_seconds(target.propagation_timeout, target.deny_settle)
        self.settle = deny_settle(target.propagation_timeout, target.deny_settle)
        self._renewing = threading.Lock()
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

    def carry_out(self) -> None:
        """Make the credentials and the checks, delete the keys, record what was measured."""
        try:
            tasks, needs = self.plan()
            run_graph(tasks, needs, concurrency=self.concurrency)
        finally:
            # Whatever happened above, no key may outlive verify.
            self.end_credentials()
        self.store.set_measurements(self.run, self.measurements())

    def plan(self) -> tuple[dict[str, Callable[[], object]], dict[str, list[str]]]:
        """Each principal's credentials first. Then its allowed cells; each denied cell after its
        witnesses (the principal's allowed cells in the same service); and every cell that changes
        an object after every cell that reads that object, whoever's."""
        tasks: dict[str, Callable[[], object]] = {}
        needs: dict[str, list[str]] = {}
        names = {e: f"check:{e.principal}:{index}" for index, e in enumerate(self.expectations)}
        reads: dict[tuple[str | None, str | None], list[str]] = {}
        for expectation in self.expectations:
            if expectation.key is not None and not PROBES[expectation.action].mutates_object:
                reads.setdefault((expectation.bucket, expectation.key), []).append(
                    names[expectation]
                )
        for principal in dict.fromkeys(e.principal for e in self.expectations):
            tasks[f"key:{principal}"] = partial(self.make_credentials, principal)
        # An existing role a denial is aimed at is assumed by the job itself first, as its own
        # cells' principal would be: that it can be shows the role exists (job.probes,
        # refused_when_role_missing).
        for role in self.roles_shown_to_exist.values():
            tasks.setdefault(f"key:{role}", partial(self.make_credentials, role))
        # In the order the graph prefers them (all it can order with concurrency 1).
        ordered = sorted(
            self.expectations,
            key=lambda e: (PROBES[e.action].mutates_object, e.expected is not Verdict.ALLOW),
        )
        for expectation in ordered:
            name, probe_ = names[expectation], PROBES[expectation.action]
            needs[name] = [f"key:{expectation.principal}"]
            if probe_.mutates_object:
                needs[name] += reads.get((expectation.bucket, expectation.key), [])
            if expectation.expected is Verdict.ALLOW:
                tasks[name] = partial(self.check, expectation, wait_for_access=True)
                continue
            witnesses = self.witnesses(expectation)
            needs[name] += [names[witness] for witness in witnesses]
            if expectation in self.roles_shown_to_exist:
                needs[name].append(f"key:{self.roles_shown_to_exist[expectation]}")
            tasks[name] = partial(self.check_denial, expectation, witnesses)
        return tasks, needs

    def witnesses(self, denied: Expectation) -> list[Expectation]:
        """The allowed cells whose success shows the principal in effect where `denied` is
        decided: the same principal's, in the same service, not always allowed (GetCallerIdentity
        proves the key, not the policy), and, for a cell that only reads an object, none that
        changes one (those wait for the reads)."""
        probe_ = PROBES[denied.action]
        return [
            e
            for e in self.expectations
            if e.principal == denied.principal
            and e.expected is Verdict.ALLOW
            and PROBES[e.action].service == probe_.service
            and not PROBES[e.action].always_allowed
            and (probe_.mutates_object or not PROBES[e.action].mutates_object)
        ]

    def make_credentials(self, principal: str) -> None:
        """A principal whose credentials cannot be made is not the end of verify: its cells are
        recorded as not answered, with why, and the other principals go on."""
        try:
            if self.scenario.principal_kind(principal) is ResourceKind.IAM_ROLE:
                self.assume(principal)
            else:
                self.make_key(principal)
        except AwsError as failure:
            log.warning("%s's checks cannot be made: %s", principal, failure.message)
            with self._measuring:
                self.credential_failures[principal] = failure.message

    def assume(self, principal: str) -> None:
        existing = self.scenario.existing_roles.get(principal)
        name = self.principals[principal].name if existing is None else existing
        try:
            session = assume_role(
                self.target,
                name,
                f"job-{self.run.id}",
                duration_seconds=self.session_seconds,
                session_policy=self.scenario.session_policies.get(principal),
                existing_arn=existing,
            )
        except AWS_ERRORS as error:
            waited = self.target.propagation_timeout.total_seconds()
            if existing is not None and is_denial(error):
                # Two policies decide, and AWS does not say which refused: name both.
                # https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_permissions-to-switch.html
                runner = self.target.aws.identity().arn
                raise AwsError(
                    f"assuming existing role {existing} as {runner} failed:"
                    f" {error_code(error)}: the role's trust policy must allow {runner}, and"
                    f" {runner}'s own policy must allow sts:AssumeRole on the role (`job"
                    " runner-policy --scenario FILE` prints that grant)"
                ) from None
            doing = (
                f"assuming existing role {existing} (sts:AssumeRole)"
                if existing is not None
                else f"assuming role {name} (sts:AssumeRole, retried for {waited:g}s while AWS "
                "caught up with the new role)"
            )
            raise describe_aws_error(error, doing) from None
        with self._measuring:
            # An existing role's permissions were in force before the run: its credentials
            # are as old as its session.
            since = utcnow() if existing is not None else self.policy_since[principal]
            self.credentials_since.setdefault(principal, since)
            if session.expiration is not None:
                self.session_issued[principal] = session.expiration - timedelta(
                    seconds=self.session_seconds
                )
        self.principal_aws[principal] = self.target.aws.with_keys(
            session.access_key_id, session.secret_access_key, session.session_token
        )

    def renew_session(self, principal: str, expired: Aws) -> None:
        """Assume the role again when its session expired (a verify that outlived it after all),
        once, however many checks noticed: the checks then try again with the new session."""
        with self._renewing:
            if self.principal_aws.get(principal) is expired:
                log.info("%s's session expired; assuming the role again", principal)
                self.assume(principal)

    def make_key(self, principal: str) -> None:
        user = self.principals[principal]
        for row in self.leftover_keys.get(user.name, []):
            delete_recorded(self.store, self.target, row)
        row = self.store.record_pending(
            self.run,
            kind=ResourceKind.IAM_ACCESS_KEY,
            logical_name=f"{principal}-key-{self.attempt.id}",
            name=f"access key of {user.name}",
            attributes=AccessKeyAttributes(user_name=user.name),
        )
        self.keys[principal] = row
        key = self._create_key(row)
        with self._measuring:
            self.credentials_since[principal] = utcnow()
        self.principal_aws[principal] = self.target.aws.with_keys(
            key.access_key_id, key.secret_access_key
        )

    def _create_key(self, row: Resource) -> ProbeKey:
        user_name = read_as(attributes_of(row), AccessKeyAttributes).user_name
        created = create_recorded(
            self.store,
            self.target,
            row,
            f"creating an access key for {user_name}",
            self.created_here,
        )
        assert created.secret is not None
        return ProbeKey(created.physical_id, created.secret)

    def check(self, expectation: Expectation, *, wait_for_access: bool) -> None:
        """Make the call until AWS has caught up or the propagation timeout passes: while the key
        is new, while the bucket is new, while a role's session is renewed, and, when
        `wait_for_access` (an expected allow: a new attachment takes a while to work everywhere),
        while AWS still refuses it."""
        failure = self.credential_failures.get(expectation.principal)
        if failure is not None:
            self.record(expectation, Verdict.ERROR, f"not run: {failure}")
            return
        error = self.ask(expectation, wait_for_access=wait_for_access)
        if error is None and wait_for_access:
            now = utcnow()
            with self._measuring:
                first = self.first_success.get(expectation.principal)
                if first is None or now < first:
                    self.first_success[expectation.principal] = now
        self.record(expectation, verdict_of(error), _detail(error))

    def ask(self, expectation: Expectation, *, wait_for_access: bool) -> BaseException | None:
        """One answer to the cell's call (None: allowed), after the retries `check` describes."""
        retry_on = KEY_NOT_YET_VALID | BUCKET_NOT_YET_VISIBLE | SESSION_EXPIRED
        try:
            until_consistent(
                partial(self.call, expectation),
                retry_on=retry_on | (DENIED if wait_for_access else set()),
                timeout=self.target.propagation_timeout,
                what=f"{expectation.principal}'s access",
            )
        except AWS_ERRORS as error:
            return error
        return None

    def call(self, expectation: Expectation) -> None:
        principal_aws = self.principal_aws[expectation.principal]
        try:
            probe(principal_aws, expectation.action, expectation.aim, expectation.context_values)
        except ClientError as error:
            role = self.scenario.principal_kind(expectation.principal) is ResourceKind.IAM_ROLE
            if role and error_code(error) in SESSION_EXPIRED:
                self.renew_session(expectation.principal, principal_aws)
            raise

    def check_denial(self, expectation: Expectation, witnesses: list[Expectation]) -> None:
        """A denial is recorded only where the principal is known to be in effect: once one of
        its witnesses succeeded; or, with none in this service, when it is denied at least the
        settle interval (DENY_SETTLE) after the principal's policy changed (its attachment's
        creation), asking a second time if the first denial came sooner. Before that, a denial
        could be the policy not having reached this service yet, and proves nothing."""
        if self.credential_failures.get(expectation.principal) is not None:
            self.check(expectation, wait_for_access=False)
            return
        aimed_existing = self.roles_shown_to_exist.get(expectation)
        if aimed_existing is not None and aimed_existing in self.credential_failures:
            self.record(
                expectation,
                Verdict.ERROR,
                f"not run: the job could not assume {aimed_existing} itself, so its existence"
                " is not shown and a refusal could be a missing role's",
            )
            return
        aimed_role = (
            self.role_since.get(expectation.aim.role_name) if expectation.aim.role_arn else None
        )
        if aimed_role is not None:
            # Whatever the witnesses say of the principal, the role it is aimed at may be newer.
            time.sleep(max((aimed_role + self.settle - utcnow()).total_seconds(), 0))
        if witnesses:
            if any(
                self.checks.get(w) is not None and self.checks[w].actual is Verdict.ALLOW
                for w in witnesses
            ):
                self.check(expectation, wait_for_access=False)
                return
            service = PROBES[expectation.action].service
            self.record(
                expectation,
                Verdict.ERROR,
                f"not run: none of {expectation.principal}'s allowed {service} calls succeeded, "
                "so a denial would prove nothing",
            )
            return
        first = self.ask(expectation, wait_for_access=False)
        settled_at = self.policy_since[expectation.principal] + self.settle
        if verdict_of(first) is Verdict.DENY and utcnow() < settled_at:
            # No witness here, and the denial came before the principal's policy had had the
            # settle interval to reach this service: asked again once it has.
            time.sleep(max((settled_at - utcnow()).total_seconds(), 0))
            first = self.ask(expectation, wait_for_access=False)
        self.record(expectation, verdict_of(first), _detail(first))

    def record(self, expectation: Expectation, actual: Verdict, detail: str | None) -> None:
        """Write the check to the ledger, log it, and keep it for the denials that wait on it."""
        check = self.store.record_check(
            self.run,
            self.attempt,
            principal=expectation.principal,
            action=expectation.action,
            resource=expectation.resource_arn(self.naming),
            context=expectation.context or None,
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
                # Only the run's own roles: revoking puts a policy on the role, and an existing
                # role is never changed.
                row = self.principals.get(principal)
                if row is not None and row.kind == ResourceKind.IAM_ROLE:
                    tasks[f"revoke:{principal}"] = partial(self.revoke_session, principal)
        run_each(tasks, concurrency=self.concurrency, keep_going=True)

    def delete_key(self, principal: str, row: Resource) -> None:
        delete_recorded(self.store, self.target, row, self.created_here)
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
            attributes=SessionRevocationAttributes(
                role_name=role.name,
                issued_before=(issued_before + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            ),
        )
        try:
            create_recorded(
                self.store,
                self.target,
                row,
                f"revoking the sessions of role {role.name}",
                self.created_here,
            )
            principal_aws = self.principal_aws[principal]
            self._time_refusal(
                principal,
                lambda: probe(principal_aws, retry.action, retry.aim, retry.context_values),
                refused=DENIED,
                what="revoked session",
            )
        finally:
            delete_recorded(self.store, self.target, row, self.created_here)

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


def _detail(error: BaseException | None) -> str | None:
    """The error code is kept: "error" alone would not say whether the bucket or the key was
    missing."""
    if error is None:
        return None
    return error_code(error) if isinstance(error, ClientError) else str(error)


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
