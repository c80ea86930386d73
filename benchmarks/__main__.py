"""`make bench`: how close `job` comes to the physical limit, against moto behind a latency proxy.

    python -m benchmarks [--latency-ms 50] [--stale-runs 100] [--json PATH] ...

Prints a table (metric, value, target, met) and the calls job makes that the example's script
does not; writes every number to a JSON file, to compare commits. Timings on a shared machine are
noisy: only ratios within one benchmark run mean much. Targets are reported, never asserted: the
exit code is 0 whenever every measurement could be taken.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import fleet, lag, run_vs_script, stale, startup
from benchmarks.critical_path import critical_path, scenario_steps
from benchmarks.harness import ROOT, bench, progress

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"
PARTS = ("run", "stale", "startup", "fleet", "lag")


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | int | None
    unit: str = ""
    target: str = ""  # e.g. "<= 0.5"; empty: reported for information
    met: bool | None = None

    def row(self) -> list[str]:
        value = "-" if self.value is None else f"{self.value:g}{self.unit}"
        met = "" if self.met is None else ("yes" if self.met else "NO")
        return [self.name, value, self.target, met]


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2)


def run_metrics(results: dict[str, Any], latency: float) -> list[Metric]:
    job, script = results["job"], results["script"]
    path = results["critical_path"]
    wall_ratio = _ratio(job["wall_s"], script["wall_s"])
    calls_ratio = _ratio(job["calls"], script["calls"])
    over_bound = _ratio(job["wall_s"], path["bound_s"])
    ms = f"{latency * 1000:g} ms"
    # The latency-bound part of the wall time, the part concurrency can shrink, in round trips.
    waited = job["serial_round_trips"]
    # The settle interval is a wait the script has no counterpart of (it never confirms a
    # denial): without it, what the job's own machinery costs against the script's.
    unsettled_ratio = _ratio(job["wall_without_settle_s"], script["wall_s"])
    return [
        Metric(f"job run wall, {ms}", round(job["wall_s"], 3), " s"),
        Metric(f"sequential script wall, {ms}", round(script["wall_s"], 3), " s"),
        Metric("job run / script wall", wall_ratio, "x", "<= 0.5", wall_ratio <= 0.5),
        Metric("job run AWS calls", job["calls"]),
        Metric("script AWS calls", script["calls"]),
        Metric(
            "job / script calls (all; extras below)", calls_ratio, "x", "<= 1.3", calls_ratio <= 1.3
        ),
        Metric(
            "job / script calls, script's operations only",
            _ratio(results["job_calls_on_script_operations"], script["calls"]),
            "x",
        ),
        Metric("critical path (dependent round trips)", path["depth"]),
        Metric(f"critical-path bound ({path['depth']} x {ms})", path["bound_s"], " s"),
        Metric("job run / critical-path bound", over_bound, "x", "<= 1.5", over_bound <= 1.5),
        Metric("job run wall at 0 ms (fixed cost)", job["wall_at_zero_latency_s"], " s"),
        Metric("script wall at 0 ms (fixed cost)", script["wall_at_zero_latency_s"], " s"),
        Metric("job run round trips waited ((wall - fixed) / latency)", job["serial_round_trips"]),
        Metric(
            "job run round trips waited / critical path",
            None if waited is None else _ratio(waited, path["depth"]),
            "x",
        ),
        Metric("script round trips waited", script["serial_round_trips"]),
        Metric(
            "job run / script round trips waited",
            None if waited is None else _ratio(waited, script["serial_round_trips"]),
            "x",
            "<= 0.5",
            None if waited is None else waited <= 0.5 * script["serial_round_trips"],
        ),
        Metric(
            f"job run wall, {ms}, without the settle interval",
            job["wall_without_settle_s"],
            " s",
        ),
        Metric(
            "job run (without settle) / script wall",
            unsettled_ratio,
            "x",
            "<= 1.3",
            unsettled_ratio <= 1.3,
        ),
        Metric(
            "job run wall at 0 ms without the settle interval",
            job["wall_at_zero_latency_without_settle_s"],
            " s",
        ),
        Metric(
            "job run (without settle) / script fixed cost",
            _ratio(job["wall_at_zero_latency_without_settle_s"], script["wall_at_zero_latency_s"]),
            "x",
        ),
        Metric("job run peak concurrent requests", job["peak_in_flight"]),
    ]


def stale_metrics(results: dict[str, Any]) -> list[Metric]:
    runs, speedup = results["runs"], results["speedup"]
    return [
        Metric(
            f"teardown --stale, {runs} runs, JOB_CONCURRENCY=1",
            results["sequential"]["wall_s"],
            " s",
        ),
        Metric(f"teardown --stale, {runs} runs, default", results["concurrent"]["wall_s"], " s"),
        Metric("teardown --stale speed-up", speedup, "x", ">= 5", speedup >= 5),
        Metric("teardown --stale AWS calls, JOB_CONCURRENCY=1", results["sequential"]["calls"]),
        Metric("teardown --stale AWS calls, default", results["concurrent"]["calls"]),
        Metric(
            "teardown --stale peak concurrent requests", results["concurrent"]["peak_in_flight"]
        ),
    ]


def startup_metrics(results: dict[str, Any]) -> list[Metric]:
    runs = results["ledger_runs"]
    listed, as_json, help_s = results["runs_list_s"], results["runs_list_json_s"], results["help_s"]
    return [
        Metric(f"runs list, {runs} runs", listed, " s", "< 0.5", listed < 0.5),
        Metric(f"runs list --output json, {runs} runs", as_json, " s", "< 0.5", as_json < 0.5),
        Metric("job --help", help_s, " s", "< 0.3", help_s < 0.3),
        Metric("python -c pass (interpreter start-up)", results["python_startup_s"], " s"),
    ]


def lag_metrics(results: dict[str, Any]) -> list[Metric]:
    metrics = []
    for name in lag.SCENARIOS:
        row = results[name]
        beyond = row["beyond_lag_s"]
        waited = row["waited_lag_s"]
        metrics += [
            Metric(f"{name}: job run with {waited:g} s of lags", row["wall_s"], " s"),
            Metric(f"{name}: job run without them", row["wall_without_lag_s"], " s"),
            Metric(f"{name}: time beyond the lag", beyond, " s", "<= 0.5", beyond <= 0.5),
        ]
    return metrics


def fleet_metrics(results: dict[str, Any]) -> list[Metric]:
    work, show = results["work"], results["show"]
    accounts = work["accounts"]
    metrics = []
    for workers, row in work["workers"].items():
        metrics.append(
            Metric(
                f"fleet work, {accounts} accounts, {workers} workers",
                row["items_per_s"],
                " items/s",
            )
        )
        if workers != "1":
            speedup = row["speedup"]
            target = ">= 3.5" if workers == "4" else ""
            met = speedup >= 3.5 if workers == "4" else None
            metrics.append(
                Metric(f"fleet work speed-up, {workers} workers vs 1", speedup, "x", target, met)
            )
    items = show["items"]
    metrics += [
        Metric(f"fleet show, {items} items", show["show_s"], " s", "< 1", show["show_s"] < 1),
        Metric(
            f"fleet show --output json, {items} items",
            show["show_json_s"],
            " s",
            "< 1",
            show["show_json_s"] < 1,
        ),
    ]
    return metrics


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    return "\n".join(
        [line(header), line(["-" * width for width in widths]), *map(line, rows)]
    ).rstrip()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--latency-ms", type=float, default=50.0, help="per request (default 50)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="job runs and script runs each, per latency"
    )
    parser.add_argument("--stale-runs", type=int, default=100, help="runs for teardown --stale")
    parser.add_argument("--list-runs", type=int, default=10_000, help="runs in the listed ledger")
    parser.add_argument(
        "--fleet-accounts", type=int, default=32, help="accounts of the fleet batches (default 32)"
    )
    parser.add_argument(
        "--fleet-items", type=int, default=10_000, help="items of the batch fleet show shows"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="JOB_CONCURRENCY for the runs not meant to be sequential (default: job's own)",
    )
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="run only this part (repeatable)"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"default {DEFAULT_JSON}")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    options = _arguments(argv)
    parts = options.only or list(PARTS)
    latency = options.latency_ms / 1000
    document: dict[str, Any] = {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "options": {
            "latency_ms": options.latency_ms,
            "repeats": options.repeats,
            "stale_runs": options.stale_runs,
            "list_runs": options.list_runs,
            "fleet_accounts": options.fleet_accounts,
            "fleet_items": options.fleet_items,
            "concurrency": options.concurrency,
            "parts": parts,
        },
    }
    metrics: list[Metric] = []
    with tempfile.TemporaryDirectory(prefix="job-bench-") as scratch:
        folder = Path(scratch)
        if {"run", "stale", "fleet"} & set(parts):
            with bench(folder, latency, options.concurrency) as aws:
                if "run" in parts:
                    results = run_vs_script.measure(aws, options.repeats)
                    path = critical_path(scenario_steps())
                    results["critical_path"] = {
                        "depth": path.depth,
                        "bound_s": round(path.depth * latency, 4),
                        "chain": list(path.chain),
                        "scenario_calls": path.calls,
                    }
                    document["run"] = results
                    metrics += run_metrics(results, latency)
                if "stale" in parts:
                    document["teardown_stale"] = stale.measure(aws, options.stale_runs)
                    metrics += stale_metrics(document["teardown_stale"])
                if "fleet" in parts:
                    document["fleet"] = {
                        "work": fleet.measure_work(aws, options.fleet_accounts),
                        "show": fleet.measure_show(folder, options.fleet_items),
                    }
                    metrics += fleet_metrics(document["fleet"])
        if "lag" in parts:
            document["lag"] = lag.measure(folder, ROOT, latency, options.repeats)
            metrics += lag_metrics(document["lag"])
        if "startup" in parts:
            document["startup"] = startup.measure(folder, options.list_runs, repeats=5)
            metrics += startup_metrics(document["startup"])
    document["metrics"] = [vars(metric) for metric in metrics]

    print(table([metric.row() for metric in metrics], ["metric", "value", "target", "met"]))
    if "run" in document:
        run = document["run"]
        extra = [
            [
                operation,
                str(counts["job"]),
                str(counts["script"]),
                str(counts["job"] - counts["script"]),
            ]
            for operation, counts in run["extra_calls"].items()
        ]
        print(
            f"\ncalls job run makes beyond the script's ({run['job']['calls']} vs "
            f"{run['script']['calls']}):"
        )
        print(table(extra, ["operation", "job", "script", "extra"]))
        print(
            f"\ncritical path ({run['critical_path']['depth']} round trips): "
            + " -> ".join(run["critical_path"]["chain"])
        )
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n")
    progress(f"results written to {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
