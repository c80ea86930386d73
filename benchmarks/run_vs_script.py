"""`job run` against the example's sequential script, both through the latency proxy, both as
processes, alternating, in the same benchmark run; then both again at zero latency, which leaves
their fixed costs (start-up, imports, the ledger, moto's own time) and so tells how many
latency-bound round trips each really waits for: (wall at L - wall at 0) / L.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness import ROOT, Bench, Timed, job_command, median, progress, run_timed


@dataclass
class Side:
    """One contender's samples."""

    walls: list[float] = field(default_factory=list)
    walls_at_zero: list[float] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)  # from the proxy, first run at latency
    calls_varied: bool = False  # whether a later run made other calls than the first
    peak_in_flight: int = 0

    def record(self, wall: float, calls: Counter[str], peak: int, *, zero: bool) -> None:
        if zero:
            self.walls_at_zero.append(wall)
            return
        if not self.walls:
            self.calls = calls
        elif calls != self.calls:
            self.calls_varied = True
        self.walls.append(wall)
        self.peak_in_flight = max(self.peak_in_flight, peak)

    def summary(self, latency: float) -> dict[str, Any]:
        wall, fixed = median(self.walls), median(self.walls_at_zero)
        return {
            "wall_s": round(wall, 4),
            "wall_samples_s": [round(value, 4) for value in self.walls],
            "wall_at_zero_latency_s": round(fixed, 4),
            "wall_at_zero_latency_samples_s": [round(value, 4) for value in self.walls_at_zero],
            # how many latencies the wall time is made of: dependent round trips, in effect
            "serial_round_trips": round((wall - fixed) / latency, 1) if latency else None,
            "calls": sum(self.calls.values()),
            "calls_by_operation": dict(sorted(self.calls.items())),
            "calls_varied_between_runs": self.calls_varied,
            "peak_in_flight": self.peak_in_flight,
        }


def _job_run(bench: Bench, **settings: str) -> Timed:
    env = {**bench.env(database=bench.folder / "run.db"), **settings}
    timed = run_timed([*job_command(), "run"], env, bench.folder)
    document = timed.json()
    failed = [check for check in document["checks"] if not check["passed"]]
    left = [row for row in document["resources"] if row["state"] != "deleted"]
    if failed or left or document["status"] != "torn_down":
        raise RuntimeError(f"job run did not pass and clean up: {timed.stdout}")
    return timed


def _script_run(bench: Bench, name: str) -> Timed:
    timed = run_timed(
        [sys.executable, "-m", "benchmarks.sequential", name], bench.env(), ROOT, expect=None
    )
    if timed.exit_code != 0:
        raise RuntimeError(f"the sequential script failed:\n{timed.stdout}\n{timed.stderr}")
    return timed


def measure(bench: Bench, repeats: int) -> dict[str, Any]:
    # A ledger exists in practice; creating its schema is not what is measured.
    ledger = bench.folder / "run.db"
    run_timed([*job_command(), "db", "upgrade"], bench.env(database=ledger), bench.folder)
    latency = bench.proxy.latency
    job, script = Side(), Side()
    hook_calls: Counter[str] = Counter()
    try:
        for zero in (False, True):
            bench.proxy.latency = 0.0 if zero else latency
            for attempt in range(repeats):
                # Alternating, so that a slower moment of a shared machine hits both alike.
                progress(f"job run vs script, {(0 if zero else latency * 1000):g} ms, #{attempt}")
                bench.proxy.reset()
                timed = _job_run(bench)
                job.record(timed.wall_s, bench.proxy.calls(), bench.proxy.peak_in_flight, zero=zero)
                bench.proxy.reset()
                timed = _script_run(bench, f"seq-{int(zero)}-{attempt}")
                script.record(
                    timed.wall_s, bench.proxy.calls(), bench.proxy.peak_in_flight, zero=zero
                )
                if not hook_calls:
                    hook_calls = Counter(timed.json()["by_operation"])
        # The job's fixed cost without the settle interval, the one wait the script has no
        # counterpart of (it never confirms a denial): what the job's own machinery costs.
        unsettled: dict[float, list[float]] = {latency: [], 0.0: []}
        for at, walls in unsettled.items():
            bench.proxy.latency = at
            for attempt in range(repeats):
                progress(f"job run at {at * 1000:g} ms without the settle interval, #{attempt}")
                walls.append(_job_run(bench, JOB_DENY_SETTLE="0s").wall_s)
    finally:
        bench.proxy.latency = latency
    return {
        "job": {
            **job.summary(latency),
            "wall_without_settle_s": round(median(unsettled[latency]), 4),
            "wall_at_zero_latency_without_settle_s": round(median(unsettled[0.0]), 4),
        },
        "script": {**script.summary(latency), "calls_counted_by_hook": sum(hook_calls.values())},
        "extra_calls": extra_calls(job.calls, script.calls),
        "job_calls_on_script_operations": sum(job.calls[op] for op in script.calls),
    }


def extra_calls(job: Counter[str], script: Counter[str]) -> dict[str, dict[str, int]]:
    """Operations job calls more often than the script does, most extra first."""
    extra = {
        operation: {"job": job[operation], "script": script[operation]}
        for operation in job
        if job[operation] > script[operation]
    }
    return dict(
        sorted(extra.items(), key=lambda item: (item[1]["script"] - item[1]["job"], item[0]))
    )
