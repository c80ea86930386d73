"""`job fleet`: the same canary in every account of an organization, from one ledger.

A batch is one scenario to prove in many (account, region) items. `plan` records it; any number of
`work` processes, on any machines, then claim items one at a time: each assumes the account's role,
carries out a whole run there (provision, verify, teardown, the run tied to its item), records the
item's verdict, and claims the next.

An item is claimed under a lock named after it (job.ledger.hold.lock_for), the kind a run's hold
uses: PostgreSQL drops it when its holder's connection closes, the kernel when its process exits,
`kill -9` included. So a dead worker's item is claimed again by the next worker that looks, at
once; that worker first tears down the run the dead one left (the ledger has every resource of it,
write-ahead), then runs the item again. Each claim is recorded (job.ledger.models.ItemClaim):
the ledger itself shows that no two workers ever held an item at once.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.aws.session import AWS_ERRORS, Aws, describe_aws_error, error_code, is_denial
from job.config import validate_region
from job.errors import BadInput, ExitCode, JobError, LedgerError
from job.ledger.batches import BATCH_ID, Batches, Plan
from job.ledger.engine import Ledger
from job.ledger.hold import Lock, holder_name, lock_for
from job.ledger.models import Batch, BatchItem, ItemClaim, ItemStatus, RunVerdict
from job.naming import new_run_id
from job.phases.run import run_all
from job.phases.teardown import teardown
from job.scenario import RunOptions
from job.scenario_file import ScenarioSource

log = logging.getLogger(__name__)

ACCOUNT_ID = re.compile(r"\d{12}")
# IAM's own rules for a role's name and for an external id (the AssumeRole API reference).
ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
# How long a worker waits before it looks again for an item, when every item not done is held by
# another worker: one of them may die, and its item is then this worker's to take over.
POLL_SECONDS = 2.0
# Items a worker tries to claim per look: unclaimed ones come first, so the first try nearly
# always succeeds; the rest are held items whose holders may be dead.
CANDIDATES = 256
# A session of the account's role lasts this long: the default most roles allow, and longer than
# any one run should take.
SESSION_SECONDS = 3600


class Unreachable(JobError):
    """The account could not be worked in: its role could not be assumed, or is of another
    account. The item's verdict is incomplete, with this as its reason; not a worker's failure."""


def parse_accounts(values: Iterable[str], where: str) -> list[str]:
    """Account ids, each twelve digits, in the order given and without repeats."""
    accounts: list[str] = []
    for value in values:
        account = value.strip()
        if not ACCOUNT_ID.fullmatch(account):
            raise BadInput(f"{where}: {account!r} is not an AWS account id (twelve digits)")
        if account not in accounts:
            accounts.append(account)
    return accounts


def parse_regions(values: Iterable[str]) -> list[str]:
    """Regions, each checked, in the order given and without repeats (a repeat would be the
    same item twice); blanks between commas are skipped."""
    regions: list[str] = []
    for value in values:
        region = value.strip()
        if region and validate_region(region) not in regions:
            regions.append(region)
    if not regions:
        raise BadInput("no region: give --regions R,R,..., --region or AWS_REGION")
    return regions


def read_accounts_file(path: str) -> list[str]:
    """One account id per line; blank lines and `#` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or "not UTF-8 text"
        raise BadInput(f"cannot read accounts file {path}: {why}") from None
    lines = (line.partition("#")[0].strip() for line in text.splitlines())
    return parse_accounts((line for line in lines if line), path)


def organization_accounts(aws: Aws, ous: Sequence[str] = ()) -> list[str]:
    """The organization's active accounts (organizations:ListAccounts), or those under the given
    organizational units, nested ones included (ListAccountsForParent, and
    ListOrganizationalUnitsForParent to go down)."""
    organizations = aws.client("organizations")
    try:
        if not ous:
            pages = organizations.get_paginator("list_accounts").paginate()
            found = [account for page in pages for account in page["Accounts"]]
        else:
            found = []
            for ou in ous:
                found.extend(_accounts_under(organizations, ou))
    except AWS_ERRORS as error:
        if error_code(error) in ("ParentNotFoundException", "InvalidInputException"):
            message = describe_aws_error(error, "listing accounts").message
            raise BadInput(f"--ou: {message}") from None
        raise describe_aws_error(error, "listing the organization's accounts") from None
    active = [account["Id"] for account in found if _active(account)]
    return parse_accounts(active, "the organization")


def _accounts_under(organizations: Any, parent: str) -> list[dict[str, Any]]:
    accounts = [
        account
        for page in organizations.get_paginator("list_accounts_for_parent").paginate(
            ParentId=parent
        )
        for account in page["Accounts"]
    ]
    children = organizations.get_paginator("list_organizational_units_for_parent").paginate(
        ParentId=parent
    )
    for page in children:
        for unit in page["OrganizationalUnits"]:
            accounts.extend(_accounts_under(organizations, unit["Id"]))
    return accounts


def _active(account: dict[str, Any]) -> bool:
    # `State` (ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED) replaces `Status` (ACTIVE, SUSPENDED,
    # PENDING_CLOSURE) in the API; either says whether the account is active.
    return (account.get("State") or account.get("Status")) == "ACTIVE"


def check_role_name(role_name: str) -> str:
    if not ROLE_NAME.fullmatch(role_name):
        raise BadInput(
            f"--role-name {role_name!r}: a role name is 1 to 64 letters, digits and +=,.@_-"
        )
    return role_name


def check_external_id(external_id: str | None) -> str | None:
    if external_id is not None and not EXTERNAL_ID.fullmatch(external_id):
        raise BadInput(
            "--external-id: 2 to 1224 letters, digits and +=,.@:/-_ (what sts:AssumeRole takes)"
        )
    return external_id


def new_batch_id() -> str:
    return f"b{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{new_run_id()}"


def check_batch_id(batch_id: str) -> str:
    if not BATCH_ID.fullmatch(batch_id):
        raise BadInput(
            f"--batch-id {batch_id!r}: 1 to 64 lowercase letters, digits and '-', starting and "
            "ending with a letter or digit (a Kubernetes Job's name fits)"
        )
    return batch_id


def plan_batch(
    batches: Batches,
    *,
    batch_id: str | None,
    accounts: Sequence[str],
    regions: Sequence[str],
    role_name: str,
    external_id: str | None,
    prefix: str,
    options: RunOptions,
    scenario: ScenarioSource,
) -> tuple[Batch, bool]:
    """Record a batch of one item per (account, region); or, given the id of a batch already
    planned the same way, find it (True when this call recorded it)."""
    if not accounts:
        raise BadInput("no accounts to plan: give --accounts, --accounts-file or --organization")
    plan = Plan(
        prefix=prefix,
        role_name=role_name,
        external_id=external_id,
        options=options.to_dict(),
        scenario=scenario.text,
        scenario_sha256=scenario.sha256,
        scenario_files=dict(scenario.files) or None,
        items=tuple((account, region) for account in accounts for region in regions),
    )
    return batches.plan(check_batch_id(batch_id) if batch_id else new_batch_id(), plan)


def role_arn(batch: Batch, account_id: str, partition: str) -> str:
    return f"arn:{partition}:iam::{account_id}:role/{batch.role_name}"


def assume(runner: Aws, batch: Batch, account_id: str) -> Aws:
    """The account's principal: the batch's role there, assumed with the runner's credentials.
    Unreachable when AWS refuses (AWS does not say which of the reasons it was)."""
    arn = role_arn(batch, account_id, runner.partition)
    request: dict[str, Any] = {
        "RoleArn": arn,
        # What CloudTrail shows in the account: which batch made the calls.
        "RoleSessionName": f"job-fleet-{batch.id}"[:64],
        "DurationSeconds": SESSION_SECONDS,
    }
    if batch.external_id is not None:
        request["ExternalId"] = batch.external_id
    try:
        credentials = runner.client("sts").assume_role(**request)["Credentials"]
    except AWS_ERRORS as error:
        if is_denial(error):
            raise Unreachable(
                f"cannot assume {arn}: {describe_aws_error(error, 'sts:AssumeRole').message}"
                f" (AWS refuses alike when the role does not exist, when its trust does not allow "
                f"the runner, or when the external id differs: deploy deploy/aws/canary-role.yaml "
                f"to the account with the runner's ARN and the batch's external id)"
            ) from None
        raise describe_aws_error(error, f"assuming {arn}") from None
    member = runner.with_keys(
        credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )
    identity = member.identity()
    if identity.account_id != account_id:
        raise Unreachable(
            f"{arn} gave credentials of account {identity.account_id}, not {account_id}; "
            "nothing was created there"
        )
    return member


@dataclass
class Worker:
    """One `fleet work` process's part: claims items of one batch until none is left."""

    ledger: Ledger
    batches: Batches
    # The runner's own principal in a region (App.aws).
    runner: Callable[[str], Aws]
    batch_id: str
    concurrency: int
    poll_seconds: float = POLL_SECONDS
    # Told each item's outcome as it is recorded (the CLI logs it).
    finished: Callable[[BatchItem], None] = lambda item: None

    def __post_init__(self) -> None:
        self.holder = holder_name()
        self._runners: dict[str, Aws] = {}

    def work(self, max_items: int | None = None) -> int:
        """Claim and run items until none is left to claim (or `max_items` are done); the number
        done. A worker waits while others hold every item left: if one of them dies, its item
        is taken over here."""
        batch = self.batches.get(self.batch_id)
        guard = self._sole_worker_on_sqlite()
        try:
            done = 0
            while max_items is None or done < max_items:
                claimed = self._claim_next()
                if claimed is None:
                    if not self.batches.open_items(batch.id, 1):
                        break
                    time.sleep(self.poll_seconds * random.uniform(0.5, 1.0))
                    continue
                item, claim, lock = claimed
                try:
                    self._work_item(batch, item, claim)
                finally:
                    lock.release()
                done += 1
            return done
        finally:
            if guard is not None:
                guard.release()

    def _sole_worker_on_sqlite(self) -> Lock | None:
        """A SQLite ledger is one file on one machine: one worker works a batch there, and a
        second is refused (on PostgreSQL, any number may)."""
        engine = self.ledger.engine
        if engine.dialect.name == "postgresql":
            return None
        guard = lock_for(engine, f"batch:{self.batch_id}")
        if not guard.try_acquire():
            guard.release()
            raise BadInput(
                f"batch {self.batch_id} is being worked on by another `job fleet work` on this "
                "SQLite ledger, which cannot be shared between workers; wait for it, or use a "
                "PostgreSQL ledger (JOB_DATABASE_URL) to run several workers"
            )
        return guard

    def _claim_next(self) -> tuple[BatchItem, ItemClaim, Lock] | None:
        for item_id in self.batches.open_items(self.batch_id, CANDIDATES):
            lock = lock_for(self.ledger.engine, f"item:{item_id}")
            try:
                if lock.try_acquire():
                    claimed = self.batches.claim(item_id, self.holder)
                    if claimed is not None:
                        return (*claimed, lock)
            except BaseException:
                lock.release()
                raise
            lock.release()
        return None

    def _work_item(self, batch: Batch, item: BatchItem, claim: ItemClaim) -> None:
        started = time.monotonic()
        log.info("item %s: account %s, %s", item.id, item.account_id, item.region)
        try:
            verdict, error = self._run_item(batch, item)
        except LedgerError:
            raise  # the ledger is gone: nothing can be recorded; the item stays claimable
        except JobError as failure:
            verdict, error = RunVerdict.INCOMPLETE, failure.message
        except BaseException:
            # Stopped (SIGTERM, Ctrl-C): run_all has torn its run down on the way out; the item
            # goes back to the batch for the next worker. kill -9 skips this, and the item's
            # lock, gone with the process, lets the next worker take it over all the same.
            try:
                self.batches.release(item, claim)
            except Exception as failure:
                log.warning("could not give item %s back: %s", item.id, failure)
            raise
        self.batches.finish(item, claim, verdict, error, time.monotonic() - started)
        self.finished(item)

    def _run_item(self, batch: Batch, item: BatchItem) -> tuple[RunVerdict, str | None]:
        member = assume(self._runner(item.region), batch, item.account_id)
        store = self.batches.store
        # A run a dead worker left of this item: torn down from the ledger before the item runs
        # again, so that every item ends with one whole run and nothing else in its account.
        for run_id in self.batches.unfinished_runs([item.id]):
            log.info("item %s: tearing down run %s, which a stopped worker left", item.id, run_id)
            with self.ledger.hold(run_id):
                teardown(store, member, run_id=run_id, concurrency=self.concurrency)
        outcome = run_all(
            store,
            member,
            prefix=batch.prefix,
            options=RunOptions.of(batch),
            hold=self.ledger.hold,
            started=lambda run_id: self.batches.started(item, run_id),
            concurrency=self.concurrency,
            scenario=ScenarioSource(
                batch.scenario, f"the scenario of batch {batch.id}", batch.scenario_files or {}
            ),
            batch_item_id=item.id,
        )
        run = store.get_run(outcome.run.id)
        verdict = run.verdict or RunVerdict.INCOMPLETE
        if outcome.error is not None:
            # A phase, or the teardown, could not finish: not a pass, whatever verify said.
            if verdict is RunVerdict.PASSED:
                verdict = RunVerdict.INCOMPLETE
            return verdict, outcome.error.message
        if verdict is RunVerdict.INCOMPLETE:
            return verdict, run.verdict_summary
        return verdict, None

    def _runner(self, region: str) -> Aws:
        if region not in self._runners:
            self._runners[region] = self.runner(region)
        return self._runners[region]


@dataclass(frozen=True)
class TeardownFailure:
    run_id: str
    error: str


def teardown_batch(
    ledger: Ledger,
    batches: Batches,
    runner: Callable[[str], Aws],
    batch_id: str,
    concurrency: int,
) -> tuple[list[str], list[TeardownFailure]]:
    """Tear down every run of the batch that is not torn down, each in its account through the
    batch's role: the runs torn down, and those that could not be (held by a worker, say)."""
    batch = batches.get(batch_id)
    store = batches.store
    torn_down: list[str] = []
    failures: list[TeardownFailure] = []
    runners: dict[str, Aws] = {}
    for run_id in batches.unfinished_runs(batches.item_ids(batch.id)):
        run = store.get_run(run_id)
        try:
            if run.region not in runners:
                runners[run.region] = runner(run.region)
            member = assume(runners[run.region], batch, run.account_id)
            with ledger.hold(run_id):
                teardown(store, member, run_id=run_id, concurrency=concurrency)
        except LedgerError:
            raise
        except JobError as failure:
            failures.append(TeardownFailure(run_id, failure.message))
            continue
        torn_down.append(run_id)
    return torn_down, failures


def batch_status(statuses: Counter[ItemStatus]) -> str:
    """done when every item is, pending while none has been claimed, running otherwise."""
    total = sum(statuses.values())
    if statuses[ItemStatus.DONE] == total:
        return "done"
    return "pending" if statuses[ItemStatus.PENDING] == total else "running"


def totals(rows: Sequence[Any]) -> dict[str, int]:
    statuses = Counter(row.status for row in rows)
    verdicts = Counter(row.verdict for row in rows if row.verdict is not None)
    return {
        "items": len(rows),
        **{status.value: statuses[status] for status in ItemStatus},
        **{verdict.value: verdicts[verdict] for verdict in RunVerdict},
    }


def show_exit_code(rows: Sequence[Any]) -> ExitCode:
    """0 when every item passed, 1 when any failed, 4 when any is incomplete or not done."""
    if any(row.verdict is RunVerdict.FAILED for row in rows):
        return ExitCode.FAILED
    if all(row.verdict is RunVerdict.PASSED for row in rows):
        return ExitCode.DONE
    return ExitCode.NOT_FINISHED
