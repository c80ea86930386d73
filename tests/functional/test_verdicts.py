"""A verdict is true or says it is unknown: a verify that stopped part-way is incomplete, never
passed; a failed run stays failed through teardown; checks on one object do not race; a denial is
believed only where the principal's policy is known to have arrived; a role session that expires
is assumed again."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import job.phases.verify as verify_phase
from job.aws.session import make_aws
from job.ledger.models import RunStatus, RunVerdict, Verdict
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import session_seconds, verify
from tests.faults import client_error
from tests.helpers import EMULATED, ROLE_SCENARIO, invoke, leftovers, open_store

REGION = "us-east-1"
# The job's own default (tests/conftest.py shortens it for every other test).
AWS_DENY_SETTLE = verify_phase.DENY_SETTLE
pytestmark = pytest.mark.usefixtures("aws")


class RefuseKeyOf:
    """IAM refuses one user's CreateAccessKey (a permissions boundary, an SCP, a quota): that
    principal's cells cannot be answered."""

    def __init__(self, role: str) -> None:
        self.role = role

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        user = context["arguments"].get("UserName", "")
        if model.name == "CreateAccessKey" and user.endswith(self.role):
            raise client_error("AccessDenied", model.name, "refused by a test")


def test_a_verify_that_stops_part_way_is_incomplete_and_says_so(
    aws, database_url, capsys, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "2s")
    junit = tmp_path / "report.xml"
    ran = invoke(
        capsys,
        *("run", "--database-url", database_url, "--junit-xml", str(junit)),
        hooks=[RefuseKeyOf("-reader")],
    )

    assert ran.exit_code == 4, ran.stderr
    assert "all checks passed" not in ran.stdout
    # CI is not shown green: the reader's six unanswered cells and the run's own errored case.
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("failures"), suite.get("errors")) == ("0", "7")
    assert "verdict: incomplete (6 of 12 checks not answered: reader " in ran.stdout
    with open_store(database_url) as store:
        [row] = store.list_runs()
        run = store.get_run(row.id)
        assert run.status is RunStatus.TORN_DOWN and run.verdict is RunVerdict.INCOMPLETE
        checks = store.latest_checks(run)
        # The writer's cells were answered; the reader's have an answer too: why they have none.
        assert all(c.passed for c in checks if c.principal == "writer")
        readers = [c for c in checks if c.principal == "reader"]
        assert len(readers) == 6
        assert all(
            c.actual is Verdict.ERROR and "AccessDenied" in (c.detail or "") for c in readers
        )
    assert leftovers(aws, run.id) == []

    listed = invoke(
        capsys,
        *("runs", "list", "--verdict", "incomplete", "--output", "json"),
        *("--database-url", database_url),
    )
    assert [(r["run_id"], r["verdict"]) for r in listed.json()["runs"]] == [(run.id, "incomplete")]
    shown = invoke(capsys, "runs", "show", run.id, "--database-url", database_url)
    # The phases with their outcomes and the error that failed verify, then the verdict.
    assert "PHASE" in shown.stdout and "verify     failed" in shown.stdout
    assert "6 of 12 checks not answered" in shown.stdout
    assert "verdict: incomplete" in shown.stdout


def test_a_failed_run_stays_failed_after_teardown(aws, database_url, capsys, monkeypatch) -> None:
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    # The writer's put is refused for good: an allowed cell answered deny.
    refuse_puts = _Refuse("PutObject", "AccessDenied", key="writer-putobject")
    ran = invoke(capsys, "run", "--database-url", database_url, hooks=[refuse_puts])
    assert ran.exit_code == 1, ran.stderr
    assert "verdict: failed (1 of 12 checks FAILED)" in ran.stdout

    listed = invoke(capsys, "runs", "list", "--output", "json", "--database-url", database_url)
    [item] = listed.json()["runs"]
    assert (item["status"], item["verdict"]) == ("torn_down", "failed")
    failed = invoke(capsys, "runs", "list", "--verdict", "failed", "--database-url", database_url)
    assert item["run_id"] in failed.stdout and "failed" in failed.stdout
    passed = invoke(capsys, "runs", "list", "--verdict", "passed", "--database-url", database_url)
    assert passed.stdout.strip() == "no runs in the ledger"


class _Refuse:
    def __init__(self, operation: str, code: str, key: str) -> None:
        self.operation, self.code, self.key = operation, code, key

    def __call__(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if model.name == self.operation and self.key in context["arguments"].get("Key", ""):
            raise client_error(self.code, model.name)


# A principal may delete the fixture that others (and it) read.
RACE = """
version: 1
buckets:
  data:
    objects: {f.txt: "read, then deleted"}
users:
  cleaner:
    policy:
      - {effect: Allow, actions: [s3:GetObject, s3:DeleteObject], resources: ["bucket:data/*"]}
  reader:
    policy:
      - {effect: Allow, actions: [s3:GetObject], resources: ["bucket:data/*"]}
expect:
  - {principal: cleaner, action: s3:DeleteObject, resource: "bucket:data/f.txt", result: allow}
  - {principal: cleaner, action: s3:GetObject, resource: "bucket:data/f.txt", result: allow}
  - {principal: reader, action: s3:GetObject, resource: "bucket:data/f.txt", result: allow}
  - {principal: reader, action: s3:DeleteObject, resource: "bucket:data/f.txt", result: deny}
"""


class SlowReads:
    """Holds every GetObject back before it is sent: were the deletes not ordered after the
    reads, they would reach S3 first, and the reads would find no object."""

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == "GetObject":
            time.sleep(0.5)


def test_checks_that_change_an_object_run_after_those_that_read_it(
    aws, sqlite_url, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "2s")
    scenario = tmp_path / "race.yaml"
    scenario.write_text(RACE)
    verdicts = set()
    for _ in range(3):
        ran = invoke(
            capsys,
            "run",
            "--scenario",
            str(scenario),
            "--database-url",
            sqlite_url,
            "--output",
            "json",
            hooks=[SlowReads()],
        )
        document = ran.json()
        verdicts.add(
            (
                document["verdict"],
                tuple(
                    sorted((c["principal"], c["action"], c["actual"]) for c in document["checks"])
                ),
            )
        )
        assert ran.exit_code == 0, document
    assert len(verdicts) == 1


SCATTERED = """
version: 1
buckets:
  data:
    objects: {f.txt: "read by job verify"}
users:
  writer:
    policy:
      - {effect: Allow, actions: [s3:GetObject], resources: ["bucket:data/*"]}
      # Granted by mistake: the canary exists to catch this.
      - {effect: Allow, actions: [iam:ListUsers], resources: ["*"]}
expect:
  - {principal: writer, action: s3:GetObject, resource: "bucket:data/f.txt", result: allow}
  - {principal: writer, action: iam:ListUsers, resource: "*", result: deny}
"""


def test_a_wrong_grant_that_iam_has_not_seen_yet_is_caught(
    aws, aws_like, tmp_path: Path, sqlite_url, capsys, monkeypatch
) -> None:
    """AWS propagates a policy to each service separately: here it reaches S3 at once and IAM
    three seconds later. The writer's S3 call works at once, which says nothing about IAM; its
    wrongly granted iam:ListUsers is denied for those three seconds, and a denial believed then
    would pass the check. It is asked again once the settle interval (a quarter of the 16 s
    propagation timeout: 4 s) has passed since the attachment, and then AWS allows it."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "16s")
    monkeypatch.setattr(verify_phase, "DENY_SETTLE", AWS_DENY_SETTLE)
    monkeypatch.delenv("JOB_DENY_SETTLE")
    aws_like.service_policy_lag = {"iam": 3.0}
    scenario = tmp_path / "scattered.yaml"
    scenario.write_text(SCATTERED)
    ran = invoke(
        capsys, "run", "--scenario", str(scenario), "--database-url", sqlite_url, "--output", "json"
    )
    document = ran.json()
    assert ran.exit_code == 1, document
    assert document["verdict"] == "failed"
    [iam] = [c for c in document["checks"] if c["action"] == "iam:ListUsers"]
    assert (iam["actual"], iam["passed"]) == ("allow", False)
    # The layer really did deny it first: the test shows the lag, not a policy IAM saw at once.
    assert any("iam" in refusal for refusal in aws_like.refusals), aws_like.refusals


class ExpireFirstSessionCall:
    """A role session's first ListObjectsV2 answered ExpiredToken, as STS's credentials are once
    they outlive their DurationSeconds; every AssumeRole's DurationSeconds is kept."""

    def __init__(self) -> None:
        self.expired = 0
        self.durations: list[int] = []

    def __call__(self, model: Any, context: dict[str, Any], request_signer: Any, **_: Any) -> None:
        if model.name == "AssumeRole":
            self.durations.append(context["arguments"]["DurationSeconds"])
        credentials = request_signer._credentials
        session = credentials is not None and credentials.token is not None
        if model.name == "ListObjectsV2" and session and not self.expired:
            self.expired += 1
            raise client_error(
                "ExpiredToken", model.name, "The security token included in the request is expired"
            )


def test_an_expired_role_session_is_assumed_again(aws, sqlite_url) -> None:
    timeout = timedelta(seconds=20)
    expire = ExpireFirstSessionCall()
    job_aws = make_aws(REGION, call_hooks=[expire], propagation_timeout=timeout)
    with open_store(sqlite_url) as store:
        run = start_run(store, job_aws, "job", EMULATED, ROLE_SCENARIO)
        provision(store, job_aws, run_id=run.id)
        run = verify(store, job_aws, run_id=run.id)
        checks = store.latest_checks(run)
        assert run.verdict is RunVerdict.PASSED, [(c.action, c.actual, c.detail) for c in checks]
        assert expire.expired == 1
        # Assumed twice, each time for as long as verify may need, not STS's 15-minute minimum
        # whatever the propagation timeout.
        assert expire.durations == [session_seconds(timeout)] * 2
        assert session_seconds(timedelta(minutes=30)) == 3600
        assert session_seconds(timedelta(seconds=1)) == 900
        teardown(store, job_aws, run_id=run.id)
    assert leftovers(aws, run.id) == []
