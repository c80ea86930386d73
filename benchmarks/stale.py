"""`job teardown --stale` over many stale runs, with job's default concurrency and one call at a
time (JOB_CONCURRENCY=1), on two identical sets of runs, through the latency proxy.

Setting up is not measured and skips the latency: each set is provisioned with `job provision`
against moto (through the proxy that only keeps moto's requests in turn), called in this process
(the contract's command line, without a new interpreter per run), a few at a time. Every run is
then idle for longer than `--older-than 0s`.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.harness import Bench, job_command, progress, run_timed

# Provisions at once during setup: this process's CPU and moto's overlap, no more is gained.
SETUP_WORKERS = 4


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _provision_one(database: Path) -> None:
    from job.cli import main

    try:
        main(["provision", "--database-url", f"sqlite:///{database}"])
    except SystemExit as done:
        if done.code not in (0, None):
            raise RuntimeError(f"job provision exited {done.code} while setting up") from None


def provision_runs(bench: Bench, database: Path, count: int) -> None:
    """`count` provisioned runs in the ledger at `database`, their resources in moto."""
    run_timed([*job_command(), "db", "upgrade"], bench.env(database=database), bench.folder)
    with (
        _environment(bench.env(setup=True)),
        open(os.devnull, "w") as quiet,
        contextlib.redirect_stdout(quiet),  # each provision prints its run, as JSON
        ThreadPoolExecutor(SETUP_WORKERS) as pool,
    ):
        for future in [pool.submit(_provision_one, database) for _ in range(count)]:
            future.result()


def measure(bench: Bench, runs: int) -> dict[str, Any]:
    ledgers = {mode: bench.folder / f"stale-{mode}.db" for mode in ("concurrent", "sequential")}
    for mode, database in ledgers.items():
        progress(f"setting up {runs} stale runs for the {mode} teardown (no latency)")
        provision_runs(bench, database, runs)
    results: dict[str, Any] = {"runs": runs}
    # The concurrent one first: moto then holds more (both sets), if anything slowing it down.
    for mode, database in ledgers.items():
        progress(f"teardown --stale of {runs} runs, {mode}")
        bench.proxy.reset()
        timed = run_timed(
            [*job_command(), "teardown", "--stale", "--older-than", "0s"],
            bench.env(database=database, sequential=mode == "sequential"),
            bench.folder,
        )
        outcomes = Counter(run["outcome"] for run in timed.json()["runs"])
        if outcomes != Counter(torn_down=runs):
            raise RuntimeError(f"teardown --stale ({mode}) did not tear every run down: {outcomes}")
        calls = bench.proxy.calls()
        results[mode] = {
            "wall_s": round(timed.wall_s, 4),
            "calls": sum(calls.values()),
            "calls_by_operation": dict(sorted(calls.items())),
            "peak_in_flight": bench.proxy.peak_in_flight,
        }
    results["speedup"] = round(results["sequential"]["wall_s"] / results["concurrent"]["wall_s"], 2)
    return results
