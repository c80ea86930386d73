"""`job fleet`: one scenario in many accounts, through each account's role, from one ledger.

The accounts are moto's: an AssumeRole into another account's role switches accounts there, and
the AWS-like layer refuses a role that does not exist in that account, or whose trust does not
let the caller in (tests/awslike.py). Each member account's role is made first
(job.emulator.add_member_role), as a StackSet of deploy/aws/canary-role.yaml makes it on AWS.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from sqlalchemy import select

from job.aws.session import make_aws
from job.config import parse_database_url
from job.emulator import RUNNER_USER, EmulatorCredentials, add_member_role, member_trust_policy
from job.fleet import assume
from job.ledger.batches import Batches
from job.ledger.engine import Ledger
from job.ledger.hold import lock_for
from job.ledger.models import (
    BatchItem,
    ItemClaim,
    ItemStatus,
    Outcome,
    Phase,
    Resource,
    ResourceState,
    Run,
    RunStatus,
    RunVerdict,
)
from job.phases.provision import provision, start_run
from tests.helpers import EMULATED, Result, client_as, invoke, open_store

MEMBERS = [f"{n:012d}" for n in range(210000000001, 210000000021)]  # twenty accounts
RUNNER_ARN = f"arn:aws:iam::123456789012:user/{RUNNER_USER}"
EXTERNAL_ID = "canary-fleet-1"
REGION = "us-east-1"


def _members(aws: EmulatorCredentials, accounts: list[str], **role: Any) -> None:
    for account in accounts:
        add_member_role(aws.endpoint_url, account, trusted_arn=RUNNER_ARN, **role)


def _fleet(capsys: pytest.CaptureFixture[str], database_url: str, *args: str) -> Result:
    return invoke(capsys, "fleet", *args, "--database-url", database_url)


def _plan(capsys: pytest.CaptureFixture[str], database_url: str, *args: str) -> str:
    planned = _fleet(capsys, database_url, "plan", "--output", "json", *args)
    assert planned.exit_code == 0, planned
    batch_id: str = planned.json()["batch_id"]
    return batch_id


def _member_client(aws: EmulatorCredentials, account: str, service: str) -> Any:
    sts = client_as(
        aws.endpoint_url,
        "sts",
        {"AccessKeyId": aws.access_key_id, "SecretAccessKey": aws.secret_access_key},
    )
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/job-canary",
        RoleSessionName="test-look",
        ExternalId=EXTERNAL_ID,
    )["Credentials"]
    return client_as(aws.endpoint_url, service, credentials)


def _left_in(aws: EmulatorCredentials, account: str, prefix: str = "job-") -> list[str]:
    """What of the job's is in the member account: users, roles, policies, buckets."""
    iam = _member_client(aws, account, "iam")
    s3 = _member_client(aws, account, "s3")
    found = [f"user {u['UserName']}" for u in iam.list_users()["Users"]]
    found += [
        f"role {r['RoleName']}" for r in iam.list_roles()["Roles"] if r["RoleName"] != "job-canary"
    ]
    found += [f"policy {p['PolicyName']}" for p in iam.list_policies(Scope="Local")["Policies"]]
    found += [
        f"bucket {b['Name']}"
        for b in s3.list_buckets(MaxBuckets=1000).get("Buckets", [])
        if b["Name"].startswith(prefix)
    ]
    return found


def test_a_batch_proves_every_account_and_leaves_nothing(
    aws: EmulatorCredentials, database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    accounts = MEMBERS[:3]
    _members(aws, accounts, external_id=EXTERNAL_ID)
    batch_id = _plan(
        capsys,
        database_url,
        "--accounts",
        ",".join(accounts),
        "--regions",
        "us-east-1",
        "--external-id",
        EXTERNAL_ID,
    )
    worked = _fleet(capsys, database_url, "work", "--batch", batch_id)
    assert worked.exit_code == 0, worked

    metrics, junit = tmp_path / "fleet.prom", tmp_path / "fleet.xml"
    shown = _fleet(
        capsys,
        database_url,
        "show",
        "--batch",
        batch_id,
        "--output",
        "json",
        "--junit-xml",
        str(junit),
        "--metrics-file",
        str(metrics),
    )
    assert shown.exit_code == 0, shown
    document = shown.json()
    assert document["batch_id"] == batch_id and document["status"] == "done"
    assert document["totals"]["passed"] == 3 and document["totals"]["items"] == 3
    assert [item["account"] for item in document["items"]] == accounts
    with open_store(database_url) as store:
        for item in document["items"]:
            assert item["verdict"] == "passed" and item["error"] is None, item
            assert item["seconds"] > 0
            run = store.get_run(item["run_id"])
            # The run lived in the item's own account, and took everything down with it.
            assert run.account_id == item["account"] and run.status is RunStatus.TORN_DOWN
            assert all(row.state is ResourceState.DELETED for row in run.resources)
    for account in accounts:
        assert _left_in(aws, account) == [], account
    # Nothing was made in the runner's own account.
    with open_store(database_url) as store:
        assert not store.session.scalars(select(Run).where(Run.account_id == "123456789012")).all()
    assert 'job_fleet_items{command="fleet show",prefix="job",verdict="passed"} 3' in (
        metrics.read_text()
    )
    report = junit.read_text()
    assert report.count("<testsuite ") == 3 and 'failures="0"' in report

    listed = _fleet(capsys, database_url, "list", "--output", "json")
    assert listed.json()["batches"][0]["batch_id"] == batch_id
    assert listed.json()["batches"][0]["passed"] == 3


def test_an_account_whose_role_cannot_be_assumed_is_incomplete_with_the_reason(
    aws: EmulatorCredentials, sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reachable, missing, untrusting = MEMBERS[:3]
    _members(aws, [reachable])
    # A role of that name, but trusting someone else.
    _members_trusting_other = "arn:aws:iam::999999999999:user/someone"
    add_member_role(aws.endpoint_url, untrusting, trusted_arn=_members_trusting_other)
    batch_id = _plan(capsys, sqlite_url, "--accounts", f"{reachable},{missing},{untrusting}")
    worked = _fleet(capsys, sqlite_url, "work", "--batch", batch_id)
    assert worked.exit_code == 0, worked  # a worker's job is done; the verdicts say the rest

    shown = _fleet(capsys, sqlite_url, "show", "--batch", batch_id, "--output", "json")
    assert shown.exit_code == 4, shown
    items = {item["account"]: item for item in shown.json()["items"]}
    assert items[reachable]["verdict"] == "passed"
    for account in (missing, untrusting):
        item = items[account]
        assert item["verdict"] == "incomplete" and item["run_id"] is None, item
        assert f"cannot assume arn:aws:iam::{account}:role/job-canary" in item["error"]
        assert "AccessDenied" in item["error"] and "external id" in item["error"]
    junit = tmp_path / "fleet.xml"
    text = _fleet(capsys, sqlite_url, "show", "--batch", batch_id, "--junit-xml", str(junit))
    assert "1 passed" in text.stdout and "2 incomplete" in text.stdout, text
    # Each unreachable account is its own suite with one errored case that says why.
    report = ElementTree.parse(junit).getroot()
    assert (report.get("tests"), report.get("failures"), report.get("errors")) == ("3", "0", "2")
    for account in (missing, untrusting):
        [suite] = [s for s in report if s.get("name") == f"account {account}"]
        assert (suite.get("tests"), suite.get("errors")) == ("1", "1")
        error = suite.find("testcase/error")
        assert error is not None and "cannot assume" in (error.get("message") or "")


def test_a_wrong_external_id_is_refused_and_nothing_is_made(
    aws: EmulatorCredentials, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    account = MEMBERS[0]
    _members(aws, [account], external_id=EXTERNAL_ID)
    batch_id = _plan(capsys, sqlite_url, "--accounts", account, "--external-id", "not-the-one")
    assert _fleet(capsys, sqlite_url, "work", "--batch", batch_id).exit_code == 0
    shown = _fleet(capsys, sqlite_url, "show", "--batch", batch_id, "--output", "json")
    assert shown.exit_code == 4
    assert shown.json()["items"][0]["verdict"] == "incomplete"
    assert _left_in(aws, account) == []


def test_a_second_worker_on_sqlite_is_refused(
    aws: EmulatorCredentials, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    batch_id = _plan(capsys, sqlite_url, "--accounts", MEMBERS[0])
    ledger = Ledger(parse_database_url(sqlite_url)).open()
    # What a first worker holds while it works the batch (a flock: another process's is refused
    # the same way, since flock is per open file).
    first = lock_for(ledger.engine, f"batch:{batch_id}")
    assert first.try_acquire()
    try:
        second = _fleet(capsys, sqlite_url, "work", "--batch", batch_id)
    finally:
        first.release()
        ledger.dispose()
    assert second.exit_code == 2, second
    assert "cannot be shared between workers" in second.stderr
    assert "PostgreSQL" in second.stderr and "Traceback" not in second.stderr
    with open_store(sqlite_url) as store:
        statuses = store.session.scalars(select(BatchItem.status)).all()
    assert statuses == [ItemStatus.PENDING]  # nothing claimed, nothing run


def test_planning_again_is_a_no_op_and_another_plan_under_the_same_id_is_refused(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--batch-id", "nightly-29412345", "--accounts", MEMBERS[0], "--region", "us-east-1")
    assert _plan(capsys, sqlite_url, *args) == "nightly-29412345"
    again = _fleet(capsys, sqlite_url, "plan", "--output", "json", *args)
    assert again.exit_code == 0 and again.json()["created"] is False
    other = _fleet(
        capsys,
        sqlite_url,
        "plan",
        "--batch-id",
        "nightly-29412345",
        "--accounts",
        MEMBERS[1],
        "--region",
        "us-east-1",
    )
    assert other.exit_code == 2 and "already planned" in other.stderr, other


def test_a_region_or_account_given_twice_is_one_item(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    twice = f"{MEMBERS[0]},{MEMBERS[0]}"
    planned = _fleet(
        capsys,
        sqlite_url,
        "plan",
        "--output",
        "json",
        "--accounts",
        twice,
        "--regions",
        "us-east-1, eu-west-1,,us-east-1",
    )
    assert planned.exit_code == 0, planned
    assert planned.json()["items"] == 2 and planned.json()["regions"] == ["us-east-1", "eu-west-1"]
    # Without --regions: the region a new run would use, here AWS_REGION's.
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    default = _fleet(capsys, sqlite_url, "plan", "--output", "json", "--accounts", MEMBERS[1])
    assert default.exit_code == 0 and default.json()["regions"] == ["eu-central-1"], default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accounts", "12345"], "'12345' is not an AWS account id"),
        (["--accounts", MEMBERS[0], "--accounts-file", "x"], "give one of"),
        ([], "give one of"),
        (["--accounts", MEMBERS[0], "--role-name", "no/slash"], "--role-name"),
        (["--accounts", MEMBERS[0], "--external-id", "x"], "--external-id"),
        (["--accounts", MEMBERS[0], "--regions", "us_east_1"], "invalid AWS region"),
        (["--accounts", MEMBERS[0], "--regions", " ,"], "no region"),
        (["--accounts", MEMBERS[0], "--batch-id", "Bad_Id"], "--batch-id"),
        (["--accounts-file", "no-such-file"], "cannot read accounts file"),
        (["--accounts", MEMBERS[0], "--ou", "ou-1"], "--ou works with --organization"),
    ],
)
def test_bad_plans_are_refused_in_one_line_and_record_nothing(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    refused = _fleet(capsys, sqlite_url, "plan", "--region", "us-east-1", *args)
    assert refused.exit_code == 2, refused
    assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused
    listed = _fleet(capsys, sqlite_url, "list", "--output", "json")
    assert listed.json()["batches"] == []


def test_an_unknown_batch_is_bad_input(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("work", "show", "teardown"):
        result = _fleet(capsys, sqlite_url, command, "--batch", "nosuchbatch")
        assert result.exit_code == 2 and "unknown batch id 'nosuchbatch'" in result.stderr


def test_the_organization_s_active_accounts_are_planned(
    aws: EmulatorCredentials, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    org = client_as(
        aws.endpoint_url,
        "organizations",
        {"AccessKeyId": aws.access_key_id, "SecretAccessKey": aws.secret_access_key},
    )
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    unit = org.create_organizational_unit(ParentId=root, Name="canaries")["OrganizationalUnit"]
    nested = org.create_organizational_unit(ParentId=unit["Id"], Name="nested")
    made = []
    for index in range(3):
        status = org.create_account(Email=f"m{index}@example.com", AccountName=f"m{index}")
        made.append(status["CreateAccountStatus"]["AccountId"])
    org.move_account(AccountId=made[0], SourceParentId=root, DestinationParentId=unit["Id"])
    org.move_account(
        AccountId=made[1],
        SourceParentId=root,
        DestinationParentId=nested["OrganizationalUnit"]["Id"],
    )
    every = set(org.list_accounts()["Accounts"][i]["Id"] for i in range(4))

    whole = _fleet(capsys, sqlite_url, "plan", "--organization", "--output", "json")
    assert whole.exit_code == 0, whole
    assert whole.json()["accounts"] == len(every) == 4  # the management account and three

    under = _fleet(
        capsys, sqlite_url, "plan", "--organization", "--ou", unit["Id"], "--output", "json"
    )
    assert under.exit_code == 0, under
    with open_store(sqlite_url) as store:
        planned = store.session.scalars(
            select(BatchItem.account_id).where(BatchItem.batch_id == under.json()["batch_id"])
        ).all()
    assert sorted(planned) == sorted(made[:2])  # the unit's, and its nested unit's

    wrong = _fleet(capsys, sqlite_url, "plan", "--organization", "--ou", "ou-zzzz-00000000")
    assert wrong.exit_code == 2, wrong


def _whole(run: Run) -> bool:
    phases = {attempt.phase for attempt in run.attempts}
    workers = {(attempt.host, attempt.pid) for attempt in run.attempts}
    return (
        phases == {Phase.PROVISION, Phase.VERIFY, Phase.TEARDOWN}
        and len(workers) == 1
        and all(attempt.outcome is Outcome.SUCCEEDED for attempt in run.attempts)
    )


WORKER = [sys.executable, "-m", "job", "fleet", "work", "--batch"]


def test_workers_killed_at_random_lose_nothing_and_never_share_an_item(
    aws: EmulatorCredentials,
    postgres_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """20 accounts, 4 workers on one PostgreSQL ledger, workers killed with kill -9 at random
    points and replaced: every item ends with exactly one completed run, nothing is left in any
    account, and the ledger's own claims show no item held by two workers at once."""
    _members(aws, MEMBERS, external_id=EXTERNAL_ID)
    batch_id = _plan(
        capsys, postgres_url, "--accounts", ",".join(MEMBERS), "--external-id", EXTERNAL_ID
    )
    environment = {**os.environ, "JOB_DATABASE_URL": postgres_url}
    chance = random.Random(20261207)
    workers: list[subprocess.Popen[bytes]] = []
    killed_at: dict[int, float] = {}  # pid: when it was killed (time.time())

    logs = tmp_path / "workers"
    logs.mkdir()

    def start() -> None:
        # Each worker's stderr in a file of its own, shown when one fails.
        with (logs / f"{len(workers)}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    [*WORKER, batch_id],
                    env=environment,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )

    for _ in range(4):
        start()
    kills = 0
    deadline = time.monotonic() + 240
    while any(worker.poll() is None for worker in workers):
        assert time.monotonic() < deadline, "the workers did not finish the batch"
        time.sleep(chance.uniform(0.5, 2.5))
        alive = [worker for worker in workers if worker.poll() is None]
        if alive and kills < 6:
            victim = chance.choice(alive)
            killed_at[victim.pid] = time.time()
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            kills += 1
            start()
    for index, worker in enumerate(workers):
        if worker.pid not in killed_at:
            assert worker.returncode == 0, (logs / f"{index}.log").read_text()
    assert kills == 6

    with open_store(postgres_url) as store:
        session = store.session
        items = session.scalars(select(BatchItem).where(BatchItem.batch_id == batch_id)).all()
        assert len(items) == 20
        for item in items:
            assert item.status is ItemStatus.DONE and item.verdict is RunVerdict.PASSED, (
                item.account_id,
                item.error,
            )
            runs = session.scalars(select(Run).where(Run.batch_item_id == item.id)).all()
            # Completed: provisioned, verified and torn down by one worker, each phase to its
            # end. A dead worker's run may have a verdict too, but its teardown was the next
            # worker's, before that worker ran the item again.
            completed = [run for run in runs if _whole(run)]
            assert [run.id for run in completed] == [item.run_id]
            for run in runs:  # a dead worker's run was torn down before the item ran again
                assert run.status is RunStatus.TORN_DOWN and run.account_id == item.account_id
            claims = session.scalars(
                select(ItemClaim).where(ItemClaim.item_id == item.id).order_by(ItemClaim.id)
            ).all()
            # Turns never overlap: each claim but the last ended before the next began, by
            # its release or by its holder's death.
            for earlier, later in itertools.pairwise(claims):
                ended = earlier.released_at
                if ended is None:
                    pid = int(earlier.holder.rpartition(":")[2])
                    assert pid in killed_at, f"claim {earlier.id} was never let go"
                    assert later.claimed_at.timestamp() > killed_at[pid]
                else:
                    assert later.claimed_at >= ended
            assert claims[-1].released_at is not None
        live = session.scalars(
            select(Resource.name).where(Resource.state != ResourceState.DELETED)
        ).all()
        assert live == []
    for account in MEMBERS:
        assert _left_in(aws, account) == [], account
    shown = _fleet(capsys, postgres_url, "show", "--batch", batch_id)
    assert shown.exit_code == 0, shown
    # The test itself must have killed workers mid-item, or it proves nothing about take-overs.
    with open_store(postgres_url) as store:
        taken_over = store.session.scalars(
            select(ItemClaim.item_id).where(ItemClaim.released_at.is_(None))
        ).all()
    assert taken_over, "no worker was killed while it held an item"


def _a_run_left_behind(
    aws: EmulatorCredentials, database_url: str, capsys: pytest.CaptureFixture[str], account: str
) -> tuple[str, str]:
    """A batch of one account, and a run of its item provisioned there and left: what a worker
    that died for good leaves behind. (batch id, run id)"""
    _members(aws, [account], external_id=EXTERNAL_ID)
    batch_id = _plan(capsys, database_url, "--accounts", account, "--external-id", EXTERNAL_ID)
    with open_store(database_url) as store:
        batch = Batches(store).get(batch_id)
        member = assume(make_aws(REGION), batch, account)
        run = start_run(store, member, "job", EMULATED, batch_item_id=batch.items[0].id)
        provision(store, member, run_id=run.id)
        return batch_id, run.id


def test_fleet_teardown_takes_down_what_a_batch_left_and_the_janitor_leaves_it_alone(
    aws: EmulatorCredentials, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    account = MEMBERS[0]
    batch_id, run_id = _a_run_left_behind(aws, database_url, capsys, account)
    assert _left_in(aws, account) != []

    # The janitor's credentials are of its own account: it leaves a fleet's run to the fleet.
    janitor = invoke(
        capsys,
        "teardown",
        "--stale",
        "--older-than",
        "0s",
        "--output",
        "json",
        "--database-url",
        database_url,
    )
    assert janitor.exit_code == 0 and janitor.json()["runs"] == [], janitor

    torn = _fleet(capsys, database_url, "teardown", "--batch", batch_id, "--output", "json")
    assert torn.exit_code == 0, torn
    assert torn.json()["torn_down"] == [run_id]
    assert _left_in(aws, account) == []
    again = _fleet(capsys, database_url, "teardown", "--batch", batch_id, "--output", "json")
    assert again.exit_code == 0 and again.json()["torn_down"] == []


def test_a_worker_stopped_with_sigterm_tears_its_run_down_and_gives_the_item_back(
    aws: EmulatorCredentials, sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    account = MEMBERS[0]
    _members(aws, [account], external_id=EXTERNAL_ID)
    batch_id = _plan(capsys, sqlite_url, "--accounts", account, "--external-id", EXTERNAL_ID)
    # A settle interval long enough to stop the worker in the middle of the item's verify (which
    # then finishes the wait it is in before it stops: the stop takes up to that long).
    environment = {**os.environ, "JOB_DATABASE_URL": sqlite_url, "JOB_DENY_SETTLE": "5s"}
    log = tmp_path / "worker.log"
    with log.open("wb") as stderr:
        worker = subprocess.Popen([*WORKER, batch_id], env=environment, stderr=stderr)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, log.read_text()
            with open_store(sqlite_url) as store:
                run_ids = store.session.scalars(select(Run.id)).all()
                verifying = store.session.scalars(
                    select(Run.id).where(Run.status == RunStatus.VERIFYING)
                ).all()
            if verifying:
                break
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    with open_store(sqlite_url) as store:
        item = store.session.scalars(select(BatchItem)).one()
        assert item.status is ItemStatus.PENDING and item.holder is None
        assert [claim.released_at is not None for claim in item.claims] == [True]
        run = store.get_run(run_ids[0])
        assert run.status is RunStatus.TORN_DOWN
    assert _left_in(aws, account) == []
    # The next worker runs the item whole.
    environment["JOB_DENY_SETTLE"] = "0s"
    again = subprocess.run([*WORKER, batch_id], env=environment, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    shown = _fleet(capsys, sqlite_url, "show", "--batch", batch_id, "--output", "json")
    assert shown.exit_code == 0 and shown.json()["items"][0]["run_id"] != run_ids[0]


def test_fleet_teardown_says_which_runs_it_could_not_reach_and_finishes_them_later(
    aws: EmulatorCredentials, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    account = MEMBERS[0]
    batch_id, run_id = _a_run_left_behind(aws, sqlite_url, capsys, account)
    # The account's role stops trusting the runner (someone changed the StackSet, say).
    iam = _member_client(aws, account, "iam")
    trust_other = member_trust_policy("arn:aws:iam::999999999999:user/someone", EXTERNAL_ID)
    iam.update_assume_role_policy(RoleName="job-canary", PolicyDocument=json.dumps(trust_other))

    refused = _fleet(capsys, sqlite_url, "teardown", "--batch", batch_id, "--output", "json")
    assert refused.exit_code == 4, refused
    document = refused.json()
    assert document["status"] == "error" and document["torn_down"] == []
    [failure] = document["failures"]
    assert failure["run_id"] == run_id and "cannot assume" in failure["error"]
    with open_store(sqlite_url) as store:
        assert store.get_run(run_id).status is not RunStatus.TORN_DOWN  # still owed, and shown

    # Trusted again (through the session taken before, still valid): the same command finishes.
    trust = member_trust_policy(RUNNER_ARN, EXTERNAL_ID)
    iam.update_assume_role_policy(RoleName="job-canary", PolicyDocument=json.dumps(trust))
    torn = _fleet(capsys, sqlite_url, "teardown", "--batch", batch_id, "--output", "json")
    assert torn.exit_code == 0 and torn.json()["torn_down"] == [run_id], torn
    assert _left_in(aws, account) == []
