"""`job fleet work` with 1, 2, 4 and 8 workers on one batch of many accounts, through the latency
proxy, on one PostgreSQL ledger (SQLite takes one worker only); and `job fleet show` of a large
batch.

Each member account's role is made first, as a StackSet makes it (job.emulator.add_member_role,
not measured). Each worker count works a batch of its own, of the same accounts: a batch's runs
leave nothing behind, so the next starts from the same empty accounts. Items per second is the
batch's items over the wall time from the first worker's start to the last one's exit.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from benchmarks.harness import Bench, job_command, median, progress, run_timed
from job.config import parse_database_url
from job.emulator import RUNNER_USER, add_member_role
from job.ledger.engine import Ledger
from job.ledger.models import Batch, BatchItem
from job.scenario_file import seed_source
from tests.services.postgres import postgres_server, temporary_database

WORKERS = (1, 2, 4, 8)
# Not the runner's account (123456789012): every run lives in a member account, as on a fleet.
FIRST_ACCOUNT = 310000000001


def accounts(count: int) -> list[str]:
    return [f"{FIRST_ACCOUNT + n:012d}" for n in range(count)]


def _work(bench: Bench, database_url: str, batch_id: str, workers: int) -> float:
    """Wall seconds from starting `workers` processes on the batch to the last one's exit."""
    env = {**bench.env(), "JOB_DATABASE_URL": database_url}
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*job_command(), "fleet", "work", "--batch", batch_id],
            env=env,
            cwd=bench.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    errors = [process.communicate()[1] for process in processes]
    wall = time.perf_counter() - started
    for process, error in zip(processes, errors, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"fleet work exited {process.returncode}:\n{error[-2000:]}")
    return wall


def measure_work(bench: Bench, account_count: int) -> dict[str, Any]:
    members = accounts(account_count)
    progress(f"making the job-canary role in {account_count} member accounts (no latency)")
    for account in members:
        add_member_role(
            bench.setup_proxy.url,
            account,
            trusted_arn=f"arn:aws:iam::123456789012:user/{RUNNER_USER}",
        )
    results: dict[str, Any] = {"accounts": account_count, "workers": {}}
    with ExitStack() as stack:
        admin = stack.enter_context(postgres_server())
        database_url = stack.enter_context(temporary_database(admin))
        env = {**bench.env(), "JOB_DATABASE_URL": database_url}
        for workers in WORKERS:
            planned = run_timed(
                [*job_command(), "fleet", "plan", "--accounts", ",".join(members)],
                env,
                bench.folder,
            )
            batch_id = planned.json()["batch_id"]
            progress(f"fleet work: {workers} workers on {account_count} accounts")
            bench.proxy.reset()
            wall = _work(bench, database_url, batch_id, workers)
            shown = run_timed(
                [*job_command(), "fleet", "show", "--batch", batch_id], env, bench.folder
            )
            totals = shown.json()["totals"]
            if totals["passed"] != account_count:
                raise RuntimeError(f"the batch of {workers} workers did not pass: {totals}")
            results["workers"][str(workers)] = {
                "wall_s": round(wall, 3),
                "items_per_s": round(account_count / wall, 3),
                "calls": sum(bench.proxy.calls().values()),
                "peak_in_flight": bench.proxy.peak_in_flight,
            }
    one = results["workers"]["1"]["wall_s"]
    for row in results["workers"].values():
        row["speedup"] = round(one / row["wall_s"], 2)
    return results


def measure_show(folder: Path, items: int, repeats: int = 5) -> dict[str, Any]:
    """`job fleet show` (text and JSON) of a batch of `items` done items, in a SQLite ledger."""
    database = folder / "fleet-show.db"
    ledger = Ledger(parse_database_url(f"sqlite:///{database}")).open()
    source = seed_source()
    progress(f"making a batch of {items} items")
    with ledger.engine.begin() as connection:
        connection.execute(
            insert(Batch),
            [
                {
                    "id": "bench-batch",
                    "prefix": "job",
                    "role_name": "job-canary",
                    "external_id": None,
                    "options": {},
                    "scenario": source.text,
                    "scenario_sha256": source.sha256,
                    "scenario_files": None,
                }
            ],
        )
        connection.execute(insert(BatchItem), list(_items(items)))
    ledger.dispose()
    env = {"JOB_DATABASE_URL": f"sqlite:///{database}", "PATH": "/usr/bin:/bin"}
    walls: dict[str, list[float]] = {"text": [], "json": []}
    for _ in range(repeats):
        for output in walls:
            command = [*job_command(), "fleet", "show", "--batch", "bench-batch"]
            timed = run_timed([*command, "--output", output], env, folder)
            walls[output].append(timed.wall_s)
    return {
        "items": items,
        "show_s": round(median(walls["text"]), 4),
        "show_json_s": round(median(walls["json"]), 4),
    }


def _items(count: int) -> Sequence[dict[str, Any]]:
    # Every item passed: `fleet show` exits 0 (run_timed expects it).
    return [
        {
            "batch_id": "bench-batch",
            "account_id": f"{400000000000 + n // 4:012d}",
            "region": ("us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2")[n % 4],
            "status": "done",
            "verdict": "passed",
            "run_id": f"r{n:09d}",
            "seconds": 2.5,
        }
        for n in range(count)
    ]
