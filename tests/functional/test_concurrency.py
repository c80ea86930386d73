"""One process per run at a time; a dead holder blocks nobody; janitors share the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from job.aws.session import make_aws
from job.config import parse_database_url
from job.errors import RunHeld
from job.ledger.engine import Ledger
from job.ledger.models import Run, RunStatus, utcnow
from job.phases.provision import provision, start_run
from tests.helpers import EMULATED, leftovers, open_store

REGION = "us-east-1"
HOLD_AND_WAIT = """
import sys, time
from job.config import parse_database_url
from job.ledger.engine import Ledger
ledger = Ledger(parse_database_url(sys.argv[1])).open()
with ledger.hold(sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def job_process(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "job", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _provisioned_runs(database_url: str, count: int) -> list[str]:
    run_ids = []
    with open_store(database_url) as store:
        for _ in range(count):
            run = start_run(store, make_aws(REGION), "job", EMULATED)
            provision(store, make_aws(REGION), run_id=run.id)
            run_ids.append(run.id)
    return run_ids


def test_a_held_run_is_refused_with_who_and_until_when(database_url: str) -> None:
    with open_store(database_url) as store:
        store.create_run(
            "heldrun", prefix="job", region=REGION, account_id="1" * 12, partition="aws"
        )
    first = Ledger(parse_database_url(database_url)).open()
    second = Ledger(parse_database_url(database_url)).open()
    try:
        with first.hold("heldrun"):
            with pytest.raises(RunHeld) as refused, second.hold("heldrun"):
                pass
            assert f":{os.getpid()} (lease until " in str(refused.value)
            assert refused.value.exit_code == 3
            with open_store(database_url) as store:
                assert store.get_run("heldrun").holder.endswith(f":{os.getpid()}")
        with second.hold("heldrun"):  # released: free again
            pass
        with open_store(database_url) as store:
            run = store.get_run("heldrun")
            assert (run.holder, run.held_until) == (None, None)
    finally:
        first.dispose()
        second.dispose()


@pytest.mark.usefixtures("aws")
def test_a_killed_holder_releases_the_run_at_once(database_url: str, capsys) -> None:
    [run_id] = _provisioned_runs(database_url, 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, database_url, run_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refused = job_process("teardown", "--run-id", run_id, "--database-url", database_url)
        _, err = refused.communicate(timeout=60)
        assert refused.returncode == 3, err
        assert f"run {run_id} is held by " in err and f":{holder.pid} (lease until" in err
        assert err.count("\n") == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    started = time.monotonic()
    taken = job_process("teardown", "--run-id", run_id, "--database-url", database_url)
    _, err = taken.communicate(timeout=60)
    assert taken.returncode == 0, err
    assert time.monotonic() - started < 30, "no lease time-out was waited for"


@pytest.mark.usefixtures("aws")
def test_two_teardowns_at_once(aws, database_url: str) -> None:
    [run_id] = _provisioned_runs(database_url, 1)
    both = [
        job_process("teardown", "--run-id", run_id, "--database-url", database_url)
        for _ in range(2)
    ]
    errors = [process.communicate(timeout=120)[1] for process in both]
    codes = sorted(process.returncode for process in both)
    assert codes in ([0, 0], [0, 3]), errors
    assert leftovers(aws, run_id) == []
    with open_store(database_url) as store:
        assert store.get_run(run_id).status is RunStatus.TORN_DOWN


@pytest.mark.usefixtures("aws")
def test_janitors_share_stale_runs_each_torn_down_once(aws, postgres_url: str) -> None:
    run_ids = _provisioned_runs(postgres_url, 6)
    fresh = _provisioned_runs(postgres_url, 1)[0]  # active a moment ago: not stale
    ledger = Ledger(parse_database_url(postgres_url)).open()
    with ledger.engine.begin() as connection:
        connection.execute(
            update(Run).where(Run.id.in_(run_ids)).values(updated_at=utcnow() - timedelta(hours=2))
        )
    ledger.dispose()

    janitors = [
        job_process("teardown", "--stale", "--older-than", "1h", "--database-url", postgres_url)
        for _ in range(3)
    ]
    for janitor in janitors:
        _, err = janitor.communicate(timeout=300)
        assert janitor.returncode == 0, err
        assert "error" not in err.lower()

    with open_store(postgres_url) as store:
        for run_id in run_ids:
            run = store.get_run(run_id)
            assert run.status is RunStatus.TORN_DOWN
            assert [a.phase for a in run.attempts].count("teardown") == 1, run_id
            assert leftovers(aws, run_id) == []
        assert store.get_run(fresh).status is RunStatus.PROVISIONED
    assert len(leftovers(aws, fresh)) == 6


def test_an_unreachable_ledger_is_a_ledger_error_not_a_traceback() -> None:
    from sqlalchemy import create_engine

    from job.errors import LedgerError
    from job.ledger.hold import hold

    engine = create_engine(
        "postgresql+psycopg://job@127.0.0.1:9/job", connect_args={"connect_timeout": 2}
    )
    with (
        pytest.raises(
            LedgerError, match="cannot take the hold on run r1: the ledger did not answer"
        ),
        hold(engine, "r1"),
    ):
        pass
    engine.dispose()
