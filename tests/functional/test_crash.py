"""kill -9 at every AWS call of a full `job run`, right before it and, when it can change
something, right after it, and right after each create through AWS's lags; then `job teardown
--run-id` must leave nothing of the run in the account and every resource deleted in the ledger.

The killed process is a fork of the test process (the CLI's own `main`, with a hook that kills it
at the chosen call): a real SIGKILL, without paying Python's start-up at every crash point.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from job.emulator import EXISTING_BUCKET, EXISTING_ROLE_NAME, EmulatorCredentials
from job.ledger.models import ResourceState
from tests.faults import KillAt, LabelCalls, StrictAws, only_reads
from tests.helpers import admin_client, cli_in_fork, invoke, open_store, role_as_it_is

pytestmark = [pytest.mark.usefixtures("aws"), pytest.mark.slow]


def _leftovers(aws: EmulatorCredentials) -> list[str]:
    """Whatever any run left: the emulator held only the runner when the test started."""
    iam, s3 = admin_client(aws, "iam"), admin_client(aws, "s3")
    users = [
        u["UserName"] for u in iam.list_users()["Users"] if u["UserName"] != "job-emulator-runner"
    ]
    policies = [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]]
    # Paged, as AWS requires of some accounts (the emulator's layer enforces it); one page holds
    # every bucket a test makes.
    buckets = [
        b["Name"]
        for b in s3.list_buckets(MaxBuckets=1000).get("Buckets", [])
        if b["Name"] != EXISTING_BUCKET  # someone else's, when a test made it (not a run's)
    ]
    roles = [r["RoleName"] for r in iam.list_roles(PathPrefix="/job/")["Roles"]]
    groups = [g["GroupName"] for g in iam.list_groups()["Groups"]]
    return users + policies + buckets + roles + groups


# The sweeps are cut into this many tests each (chunk k kills at the (k+1)-th call of its
# stride, then every CHUNKS-th), which pytest-xdist spreads over its workers.
CHUNKS = 4
ROLE_SCENARIO = Path(__file__).parents[2] / "examples" / "roles.yaml"


def _run_args(database_url: str, scenario: Path | None, concurrency: int | None) -> list[str]:
    args = ["run", "--database-url", database_url]
    args += ["--scenario", str(scenario)] if scenario else []
    return args + (["--concurrency", str(concurrency)] if concurrency else [])


def _calls_of_a_run(args: list[str], tmp_path: Path) -> list[str]:
    """The label of every call of one `job run` that nothing kills, in order: what the sweep's
    N-th kill must land on, one call at a time."""
    path = tmp_path / "reference-calls"
    status = cli_in_fork(args, [LabelCalls(str(path))])
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return path.read_text().splitlines()


def _kill_each_then_tear_down(
    aws: EmulatorCredentials,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    kills: Callable[[int], list[Any]],
    indices: Iterable[int],
    args: list[str],
) -> list[int]:
    """For each index in turn: `args` (a `job run`) in a fork, once killed by each hook of
    `kills(index)`, then `job teardown` of whatever it left; stops early once every run of an
    index gets through unharmed (later points would too). Returns the indices that killed."""
    survivors: list[str] = []
    killed: list[int] = []
    for index in indices:
        completed = 0
        for kill in kills(index):
            status = cli_in_fork(args, [kill])
            if os.WIFEXITED(status):
                assert os.WEXITSTATUS(status) == 0, (kill, index)
                completed += 1
                continue
            assert os.WTERMSIG(status) == signal.SIGKILL, (kill, index)
            killed.append(index)
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
    print(f"\n{len(killed)} crash points on {database_url.split(':')[0]}: none left anything")
    return killed


def _sweep_one_call_at_a_time(
    aws: EmulatorCredentials,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    chunk: int,
    stride: int,
    scenario: Path | None = None,
) -> list[str]:
    """Kills `job run --concurrency 1` right before its every `stride`-th call, this chunk's
    share of them, and right after each of those that can change something (after a read, the
    account and the ledger are as they were before it: the job has not seen the answer). Holds
    each kill to the call the same index names in a run that nothing kills: the same index kills
    the same call in every sweep. Returns the calls of that run; the kills ("EVENT INDEX LABEL")
    are printed."""
    args = _run_args(database_url, scenario, concurrency=1)
    calls = _calls_of_a_run(args, tmp_path)
    share = range(1 + chunk * stride, len(calls) + 1, CHUNKS * stride)
    labels = str(tmp_path / "kills")

    def kills(index: int) -> list[KillAt]:
        before = KillAt("before-call", index, labels)
        if only_reads(calls[index - 1]):
            return [before]
        return [before, KillAt("after-call", index, labels)]

    killed = _kill_each_then_tear_down(aws, database_url, capsys, kills, share, args)
    assert killed == [index for index in share for _ in kills(index)], "every call of the share"
    assert any(len(kills(index)) == 2 for index in share), "the share changes something"
    kills = Path(labels).read_text().splitlines() if killed else []
    assert len(kills) == len(killed), "every kill said which call it was"
    for kill in kills:
        _, index, label = kill.split(" ", 2)
        assert label == calls[int(index) - 1], f"{kill}: the run that nothing killed made {calls}"
    print("\n".join(kills))
    return calls


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_kill_at_every_call_of_a_run_then_teardown(
    aws, database_url, capsys, monkeypatch, tmp_path, chunk
) -> None:
    # A kill before a create leaves a row nothing will ever answer for, and teardown waits the
    # whole propagation window before it believes that: a short one here.
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    # Every call on SQLite; every fourth on PostgreSQL, whose ledger code is the same and whose
    # own failure modes have tests of their own: the sweep is the suite's longest test.
    stride = 1 if database_url.startswith("sqlite") else 4
    calls = _sweep_one_call_at_a_time(aws, database_url, capsys, tmp_path, chunk, stride)
    assert len(calls) > 40, "a full run makes more than 40 AWS calls"


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_kill_at_calls_of_a_role_scenario_run_then_teardown(
    aws, sqlite_url, capsys, monkeypatch, tmp_path, chunk
) -> None:
    """The same for an operator's scenario with roles (examples/roles.yaml): kinds the seed does
    not make, torn down from the ledger alone. Every third call, as above (the seed's
    sweep above tries every call of the same code)."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    calls = _sweep_one_call_at_a_time(
        aws, sqlite_url, capsys, tmp_path, chunk, stride=3, scenario=ROLE_SCENARIO
    )
    assert len(calls) > 30, "a run of the role scenario makes more than 30 AWS calls"
    assert any(call.startswith("CreateRole") for call in calls)


RICHEST_SCENARIO = Path(__file__).parents[2] / "examples" / "data-platform.yaml"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_kill_at_calls_of_the_richest_example_then_teardown(
    aws, existing_resources, sqlite_url, capsys, monkeypatch, tmp_path, chunk
) -> None:
    """The same for the richest example (examples/data-platform.yaml): a bucket policy naming
    the run's principals and an existing role, a boundary of the run's own, an AWS-managed
    policy attached to a group of the run's, a user in it, a role with a session policy, an
    existing role assumed. Every third call, as above. The managed policy and the existing role
    are the account's, not the run's: after every teardown the policy is attached nowhere and
    otherwise as it was, and the role exactly as it was."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    iam = admin_client(aws, "iam")
    version = iam.get_policy(PolicyArn=READ_ONLY)["Policy"]["DefaultVersionId"]
    role = role_as_it_is(iam, EXISTING_ROLE_NAME)
    calls = _sweep_one_call_at_a_time(
        aws, sqlite_url, capsys, tmp_path, chunk, stride=3, scenario=RICHEST_SCENARIO
    )
    names = {call.split()[0] for call in calls}
    assert {"PutBucketPolicy", "CreateGroup", "AddUserToGroup", "AttachGroupPolicy"} <= names
    assert any(call.startswith("AssumeRole") and EXISTING_ROLE_NAME in call for call in calls)
    policy = iam.get_policy(PolicyArn=READ_ONLY)["Policy"]
    assert (policy["AttachmentCount"], policy["DefaultVersionId"]) == (0, version)
    assert role_as_it_is(iam, EXISTING_ROLE_NAME) == role


GROUPS_SCENARIO = Path(__file__).parents[2] / "examples" / "groups.yaml"
IAM_READ_ONLY = "arn:aws:iam::aws:policy/IAMReadOnlyAccess"


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_kill_at_calls_of_the_groups_example_then_teardown(
    aws, sqlite_url, capsys, monkeypatch, tmp_path, chunk
) -> None:
    """The same for examples/groups.yaml: a group with its own policy and an AWS-managed one,
    two users in it. Every fifth call (the calls are those of the kinds above but the group's
    three). A kill between AddUserToGroup and its row's record leaves a user in a group; teardown
    takes it out (StrictAws refuses DeleteUser and DeleteGroup before, as AWS does), and the
    managed policy is attached nowhere after."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    calls = _sweep_one_call_at_a_time(
        aws, sqlite_url, capsys, tmp_path, chunk, stride=5, scenario=GROUPS_SCENARIO
    )
    assert {"CreateGroup", "AddUserToGroup", "AttachGroupPolicy"} <= {
        call.split()[0] for call in calls
    }
    iam = admin_client(aws, "iam")
    assert iam.get_policy(PolicyArn=IAM_READ_ONLY)["Policy"]["AttachmentCount"] == 0


def test_kill_at_calls_of_a_concurrent_run_then_teardown(aws, sqlite_url, capsys, monkeypatch):
    """The sweeps above go one call at a time, so that an index names one call; a run makes its
    calls sixteen at a time by default, and a kill there lands among calls in flight. Every
    eleventh call, before and after, at the default concurrency: which call an index lands on
    varies from run to run, so this one stops at the first index no run reaches."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "1s")
    killed = _kill_each_then_tear_down(
        aws,
        sqlite_url,
        capsys,
        lambda index: [KillAt("before-call", index), KillAt("after-call", index)],
        itertools.count(1, 11),
        _run_args(sqlite_url, None, concurrency=None),
    )
    assert len(killed) > 80 / 11, "a full run makes more than 40 AWS calls"


def test_the_same_index_kills_the_same_call_in_every_process(aws, sqlite_url, tmp_path) -> None:
    """What makes a sweep repeatable: two runs one call at a time, in processes whose string
    hashes differ (so no set's order can hide in the sequence), make the same calls in the same
    order, run id aside."""
    script = (
        "import sys; from job.cli import main; from tests.faults import LabelCalls; "
        "main(sys.argv[2:], call_hooks=[LabelCalls(sys.argv[1])])"
    )
    sequences = []
    for seed in ("1", "2"):
        path = tmp_path / f"calls-{seed}"
        done = subprocess.run(
            [sys.executable, "-c", script, str(path), *_run_args(sqlite_url, None, 1)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=Path(__file__).parents[2],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        sequences.append(path.read_text().splitlines())
    assert sequences[0] == sequences[1]
    assert len(sequences[0]) > 40 and "RUN" in sequences[0][-1]


@dataclass
class KillAfterCreating:
    """SIGKILLs this process right after the `index`-th call that makes something has been
    answered: AWS made it, the job never heard, and AWS may not show it yet."""

    index: int
    count: int = 0
    event: str = "after-call"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __call__(self, model: Any, **_: Any) -> None:
        if model.name.startswith(("Create", "Put", "Attach")):
            with self._lock:
                self.count += 1
                if self.count != self.index:
                    return
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_kill_right_after_each_create_through_aws_lags_then_teardown(
    aws, aws_lag, sqlite_url, capsys, monkeypatch, chunk
) -> None:
    """Through AWS's lags (a new bucket, key or attachment not seen for a while), killed right
    after each create and torn down at once: teardown must wait an unseen resource out, never
    take it for gone. Only these kills can land in a lag; the sweep above tries every call. How
    many times a probe is asked before a lag ends varies, so each chunk stops at the first index
    no run reaches."""
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "3s")
    killed = _kill_each_then_tear_down(
        aws,
        sqlite_url,
        capsys,
        lambda index: [KillAfterCreating(index)],
        itertools.count(1 + chunk, CHUNKS),
        _run_args(sqlite_url, None, concurrency=1),
    )
    assert len(killed) > 15 / CHUNKS, "a run makes more than 15 creating calls"
    if chunk == 0:
        # Its first kill comes right after the first CreateBucket: the teardown that follows
        # cannot see the bucket for a while, and must wait it out.
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
