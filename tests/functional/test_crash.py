"""kill -9 at every AWS call of a full `job run`, right before it and right after it, and right
after each create through AWS's lags; then `job teardown --run-id` must leave nothing of the run
in the account and every resource deleted in the ledger.

The killed process is a fork of the test process (the CLI's own `main`, with a hook that kills it
at the chosen call): a real SIGKILL, without paying Python's start-up at every crash point.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from job.emulator import EmulatorCredentials
from job.ledger.models import ResourceState
from tests.faults import AccountTrust, KillAt, StrictAws
from tests.helpers import admin_client, cli_in_fork, invoke, open_store

pytestmark = pytest.mark.usefixtures("aws")


def _leftovers(aws: EmulatorCredentials) -> list[str]:
    """Whatever any run left: the emulator held only the runner when the test started."""
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    users = [
        u["UserName"] for u in iam.list_users()["Users"] if u["UserName"] != "job-emulator-runner"
    ]
    policies = [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]]
    # Paged, as AWS requires of some accounts (the emulator's layer enforces it); one page holds
    # every bucket a test makes.
    buckets = [b["Name"] for b in s3.list_buckets(MaxBuckets=1000).get("Buckets", [])]
    roles = [r["RoleName"] for r in iam.list_roles(PathPrefix="/job/")["Roles"]]
    return users + policies + buckets + roles


def _kill_each_then_tear_down(
    aws: EmulatorCredentials,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    kills: Callable[[int], list[Any]],
    stride: int = 1,
    scenario: Path | None = None,
) -> int:
    """For index 1, 1 + stride, ...: `job run` in a fork, once killed by each hook of
    `kills(index)`, then `job teardown` of whatever it left; until every run of an index gets
    through unharmed (then every point has been tried). Returns how many kills there were."""
    survivors: list[str] = []
    points = 0
    for index in itertools.count(1, stride):
        completed = 0
        for kill in kills(index):
            args = ["run", "--database-url", database_url]
            # moto cannot read the account principal a role trusts: AccountTrust says it its way.
            hooks = [kill] if scenario is None else [AccountTrust(), kill]
            status = cli_in_fork(args + (["--scenario", str(scenario)] if scenario else []), hooks)
            if os.WIFEXITED(status):
                assert os.WEXITSTATUS(status) == 0, (kill, index)
                completed += 1
                continue
            assert os.WTERMSIG(status) == signal.SIGKILL, (kill, index)
            points += 1
            with open_store(database_url) as store:
                newest = store.list_runs(limit=1)
            if newest:  # killed before the run was recorded: nothing was created either
                run_id = newest[0].id
                result = invoke(
                    capsys,
                    "teardown",
                    "--run-id",
                    run_id,
                    "--database-url",
                    database_url,
                    # AWS's refusals to delete what still has something on it: teardown asks
                    # first and clears only when refused, so the refusals must be AWS's.
                    hooks=[
                        AccountTrust(),
                        StrictAws(admin_client(aws, "iam"), admin_client(aws, "s3")),
                    ],
                )
                assert result.exit_code == 0, (kill, index, result.stderr)
                with open_store(database_url) as store:
                    states = {row.state for row in store.get_run(run_id).resources}
                assert states <= {ResourceState.DELETED}, (kill, index)
            left = _leftovers(aws)
            if left:
                survivors.append(f"{kill}: {left}")
        if completed == len(kills(index)):
            break
    assert survivors == []
    # For the record (pytest -s shows it): how many crash points, how many left anything.
    print(f"\n{points} crash points on {database_url.split(':')[0]}: none left anything")
    return points


def test_kill_at_every_call_of_a_run_then_teardown(aws, database_url, capsys, monkeypatch) -> None:
    # A kill before a create leaves a row nothing will ever answer for, and teardown waits the
    # whole propagation window before it believes that: a short one here.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    # Every call on SQLite; every fourth on PostgreSQL, whose ledger code is the same and whose
    # own failure modes have tests of their own: the sweep is the suite's longest test.
    stride = 1 if database_url.startswith("sqlite") else 4
    points = _kill_each_then_tear_down(
        aws,
        database_url,
        capsys,
        lambda index: [KillAt("before-call", index), KillAt("after-call", index)],
        stride,
    )
    assert points > 80 / stride, "a full run makes more than 40 AWS calls"


def test_kill_at_calls_of_a_role_scenario_run_then_teardown(aws, sqlite_url, capsys, monkeypatch):
    """The same for an operator's scenario with roles (examples/roles.yaml): kinds the seed does
    not make, torn down from the ledger alone. Every fifth call, before and after (the seed's
    sweep above tries every call of the same code)."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    points = _kill_each_then_tear_down(
        aws,
        sqlite_url,
        capsys,
        lambda index: [KillAt("before-call", index), KillAt("after-call", index)],
        stride=5,
        scenario=Path(__file__).parents[2] / "examples" / "roles.yaml",
    )
    assert points > 15, "a run of the role scenario makes more than 40 AWS calls"


@dataclass
class KillAfterCreating:
    """SIGKILLs this process right after the `index`-th call that makes something has been
    answered: AWS made it, the job never heard, and AWS may not show it yet."""

    index: int
    count: int = 0
    event: str = "after-call"

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name.startswith(("Create", "Put", "Attach")):
            self.count += 1
            if self.count == self.index:
                os.kill(os.getpid(), signal.SIGKILL)


def test_kill_right_after_each_create_through_aws_lags_then_teardown(
    aws, aws_lag, sqlite_url, capsys, monkeypatch
) -> None:
    """Through AWS's lags (a new bucket, key or attachment not seen for a while), killed right
    after each create and torn down at once: teardown must wait an unseen resource out, never
    take it for gone. Only these kills can land in a lag; the sweep above tries every call."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "3s")
    points = _kill_each_then_tear_down(
        aws, sqlite_url, capsys, lambda index: [KillAfterCreating(index)]
    )
    assert points > 15, "a run makes more than 15 creating calls"
    assert any("HeadBucket" in line for line in aws_lag.refusals), "a teardown met the lag"


class TermAt:
    """Sends this process SIGTERM at the `index`-th AWS call, as a scheduler stopping it would."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name == self.operation:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_mid_verify_deletes_the_keys_and_tears_down(aws, sqlite_url) -> None:
    status = cli_in_fork(["run", "--database-url", sqlite_url], [TermAt("GetObject")])
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 143
    with open_store(sqlite_url) as store:
        [run] = store.list_runs()
        run = store.get_run(run.id)
        assert {row.state for row in run.resources} == {ResourceState.DELETED}
        assert [(a.phase, a.outcome.value) for a in run.attempts] == [
            ("provision", "succeeded"),
            ("verify", "failed"),
            ("teardown", "succeeded"),
        ]
        assert run.holder is None, "the hold was released"
    assert _leftovers(aws) == []
