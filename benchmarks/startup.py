"""How quickly job answers without AWS: `job --help`, and `job runs list` on a large ledger.

The ledger is made like one that has served for years: each run with its resources (the
scenario's eight and two access keys), its three phase attempts and its twelve checks, so that a
query that loads more than the runs shows up. The interpreter's own start-up (`python -c pass`)
is measured the same way, so that the reader can tell job's share.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from benchmarks.harness import clean_environment, job_command, median, progress, run_timed
from job.config import parse_database_url
from job.ledger.engine import Ledger
from job.ledger.models import Base, Check, PhaseAttempt, Resource, Run

BATCH = 2000  # runs per INSERT batch
ACCOUNT = "123456789012"
# Most runs of a long-lived ledger are finished; a few failed or were kept.
STATUSES = ["torn_down"] * 94 + ["failed"] * 3 + ["verify_failed"] * 2 + ["provisioned"]
RESOURCES = (
    ("s3_bucket", "bucket", "{base}-data"),
    ("s3_object", "fixture", "probe/fixture.txt"),
    ("iam_user", "writer", "{base}-writer"),
    ("iam_user", "reader", "{base}-reader"),
    ("iam_policy", "writer-policy", "{base}-writer"),
    ("iam_policy", "reader-policy", "{base}-reader"),
    ("iam_user_policy_attachment", "writer-attachment", "{base}-writer"),
    ("iam_user_policy_attachment", "reader-attachment", "{base}-reader"),
    ("iam_access_key", "writer-key-{attempt}", "access key of {base}-writer"),
    ("iam_access_key", "reader-key-{attempt}", "access key of {base}-reader"),
)
CHECKS = (
    ("writer", "s3:PutObject", "allow"),
    ("writer", "s3:GetObject", "allow"),
    ("writer", "s3:DeleteObject", "deny"),
    ("writer", "s3:ListBucket", "deny"),
    ("writer", "s3:GetObject", "deny"),
    ("writer", "iam:ListUsers", "deny"),
    ("reader", "s3:PutObject", "deny"),
    ("reader", "s3:GetObject", "allow"),
    ("reader", "s3:DeleteObject", "deny"),
    ("reader", "s3:ListBucket", "deny"),
    ("reader", "s3:GetObject", "deny"),
    ("reader", "iam:ListUsers", "deny"),
)


def _rows(first: int, count: int, rng: random.Random) -> Iterator[tuple[str, list[Any]]]:
    """(table, rows) for runs number first .. first + count - 1."""
    runs: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    start = datetime(2023, 1, 1, tzinfo=UTC)
    for number in range(first, first + count):
        run_id = f"r{number:09d}"
        base = f"job-{run_id}"
        created = start + timedelta(minutes=10 * number)
        finished = created + timedelta(seconds=40)
        status = rng.choice(STATUSES)
        runs.append(
            {
                "id": run_id,
                "prefix": "job",
                "region": "us-east-1",
                "account_id": ACCOUNT,
                "partition": "aws",
                "options": {"permissions_boundary": None, "require_tls": True},
                "status": status,
                "created_at": created,
                "updated_at": finished,
            }
        )
        attempt_ids = [number * 3 + offset + 1 for offset in range(3)]
        for attempt_id, phase in zip(attempt_ids, ("provision", "verify", "teardown"), strict=True):
            attempts.append(
                {
                    "id": attempt_id,
                    "run_id": run_id,
                    "phase": phase,
                    "started_at": created,
                    "finished_at": finished,
                    "outcome": "succeeded",
                    "host": "ci-runner-7",
                    "pid": 4000 + number % 30000,
                }
            )
        for kind, logical, name in RESOURCES:
            resources.append(
                {
                    "run_id": run_id,
                    "kind": kind,
                    "logical_name": logical.format(attempt=attempt_ids[1]),
                    "name": name.format(base=base),
                    "physical_id": name.format(base=base),
                    "attributes": {"user_name": f"{base}-{logical.split('-')[0]}"},
                    "state": "deleted" if status == "torn_down" else "created",
                    "created_at": created,
                    "updated_at": finished,
                }
            )
        for principal, action, expected in CHECKS:
            checks.append(
                {
                    "run_id": run_id,
                    "attempt_id": attempt_ids[1],
                    "principal": principal,
                    "action": action,
                    "resource": f"arn:aws:s3:::{base}-data/probe/fixture.txt",
                    "expected": expected,
                    "actual": expected,
                    "passed": True,
                    "checked_at": finished,
                }
            )
    yield Run.__tablename__, runs
    yield PhaseAttempt.__tablename__, attempts
    yield Resource.__tablename__, resources
    yield Check.__tablename__, checks


def build_ledger(path: Path, runs: int) -> None:
    """A SQLite ledger at the newest schema holding `runs` finished runs."""
    ledger = Ledger(parse_database_url(f"sqlite:///{path}")).open()
    rng = random.Random(7)
    try:
        with ledger.engine.begin() as connection:
            for first in range(0, runs, BATCH):
                for name, rows in _rows(first, min(BATCH, runs - first), rng):
                    connection.execute(insert(Base.metadata.tables[name]), rows)
    finally:
        ledger.dispose()


def _median_wall(command: list[str], env: dict[str, str], folder: Path, repeats: int) -> float:
    run_timed(command, env, folder)  # a warm-up: the page cache, not the code, is what varies
    return median([run_timed(command, env, folder).wall_s for _ in range(repeats)])


def measure(folder: Path, runs: int, repeats: int) -> dict[str, Any]:
    database = folder / "many-runs.db"
    progress(f"building a ledger of {runs} runs")
    build_ledger(database, runs)
    env = {**clean_environment(), "JOB_DATABASE_URL": f"sqlite:///{database}"}
    job = job_command()
    progress("timing runs list, --help and the interpreter's start-up")
    listed = run_timed([*job, "runs", "list", "--output", "json"], env, folder).json()["runs"]
    if len(listed) != runs:
        raise RuntimeError(f"runs list shows {len(listed)} runs, not {runs}")
    return {
        "ledger_runs": runs,
        "runs_list_s": round(_median_wall([*job, "runs", "list"], env, folder, repeats), 4),
        "runs_list_json_s": round(
            _median_wall([*job, "runs", "list", "--output", "json"], env, folder, repeats), 4
        ),
        "help_s": round(_median_wall([*job, "--help"], env, folder, repeats), 4),
        "python_startup_s": round(
            _median_wall([sys.executable, "-c", "pass"], env, folder, repeats), 4
        ),
        "repeats": repeats,
    }
