"""Prometheus text-format metrics for node_exporter's textfile collector, so that a failing canary
(or a teardown that left something live) can page someone.

The file is rewritten whole after each command. `job_last_success_timestamp_seconds` is carried
over from the previous file when this command failed: "no success for 2 hours" is the alert that
matters, and it must survive the failures in between.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from job.files import write_atomically
from job.ledger.models import Check, ResourceState, Run, RunVerdict, utcnow

_LAST_SUCCESS = "job_last_success_timestamp_seconds"


@dataclass
class Observation:
    """What a command saw, filled in as it goes and written out when it ends."""

    command: str
    prefix: str
    started_at: datetime = field(default_factory=utcnow)
    checks: Counter[str] = field(default_factory=Counter)
    resources_live: int | None = None
    ledger_resources_live: int | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)
    stale_runs: Counter[str] = field(default_factory=Counter)
    # What the run's latest verify measured, by principal (job.phases.verify).
    propagation_seconds: dict[str, float] = field(default_factory=dict)
    revocation_seconds: dict[str, float] = field(default_factory=dict)
    # The run's verdict (job.ledger.states.RunVerdict), None before any verify.
    verdict: str | None = None
    # `fleet show`: the batch's items by verdict ("none" for those without one yet).
    fleet_items: Counter[str] | None = None

    def observe_run(self, run: Run, checks: Sequence[Check]) -> None:
        self.checks = Counter("passed" if check.passed else "failed" for check in checks)
        self.verdict = run.verdict.value if run.verdict is not None else None
        measurements = run.measurements or {}
        self.propagation_seconds = dict(measurements.get("propagation_seconds") or {})
        self.revocation_seconds = dict(measurements.get("revocation_seconds") or {})
        self.resources_live = sum(row.state is not ResourceState.DELETED for row in run.resources)
        for attempt in run.attempts:
            # Only this command's own phases; an earlier command's are in its own file.
            if attempt.finished_at is None or attempt.started_at < self.started_at:
                continue
            seconds = (attempt.finished_at - attempt.started_at).total_seconds()
            self.phase_seconds[attempt.phase] = self.phase_seconds.get(attempt.phase, 0) + seconds

    def observe_stale(self, outcomes: Iterable[str]) -> None:
        self.stale_runs.update(outcomes)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{name}="{_label(value)}"' for name, value in labels.items()) + "}"


def _number(value: float) -> str:
    # repr keeps every digit of a Unix time; "%g" would round it to the nearest ten minutes.
    return str(value) if isinstance(value, int) else repr(float(value))


def _previous_success(path: Path) -> float | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(rf"^{_LAST_SUCCESS}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def render(observation: Observation, exit_code: int, previous_success: float | None) -> str:
    now = time.time()
    base = {"command": observation.command, "prefix": observation.prefix}
    lines: list[str] = []

    def metric(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        if not samples:
            return
        lines.extend((f"# HELP {name} {help_text}", f"# TYPE {name} gauge"))
        lines.extend(f"{name}{_labels(**labels)} {_number(value)}" for labels, value in samples)

    metric(
        "job_last_run_timestamp_seconds", "When the command last ended (Unix time).", [(base, now)]
    )
    success = now if exit_code == 0 else previous_success
    metric(
        _LAST_SUCCESS,
        "When the command last ended with exit code 0 (Unix time).",
        [(base, success)] if success is not None else [],
    )
    metric(
        "job_last_exit_code",
        "The exit code of the command's last run (0 done, 1 a permission differed, 4 AWS or "
        "ledger failure).",
        [(base, exit_code)],
    )
    metric(
        "job_checks",
        "Permission checks of the last verify, by result.",
        [
            ({**base, "result": result}, observation.checks[result])
            for result in ("passed", "failed")
        ]
        if observation.checks
        else [],
    )
    # One sample per verdict, 1 for the run's and 0 for the others, so that an alert on
    # job_verdict{verdict="passed"} == 0 also fires for "incomplete", and a query never sees the
    # series vanish.
    metric(
        "job_verdict",
        "The verdict of the run's latest verify: 1 for its verdict, 0 for the others.",
        [
            ({**base, "verdict": verdict.value}, int(observation.verdict == verdict.value))
            for verdict in RunVerdict
        ]
        if observation.verdict is not None
        else [],
    )
    metric(
        "job_resources_live",
        "Resources of the runs this command concerned that are not deleted.",
        [(base, observation.resources_live)] if observation.resources_live is not None else [],
    )
    metric(
        "job_ledger_resources_live",
        "Resources of every run in the ledger that are not deleted (after a teardown: a leak).",
        [(base, observation.ledger_resources_live)]
        if observation.ledger_resources_live is not None
        else [],
    )
    metric(
        "job_phase_duration_seconds",
        "How long each phase of this command took.",
        [
            ({**base, "phase": phase}, seconds)
            for phase, seconds in observation.phase_seconds.items()
        ],
    )
    metric(
        "job_propagation_seconds",
        "Seconds from a principal's credentials' creation to its first allowed call succeeding, "
        "in the run's latest verify.",
        [
            ({**base, "principal": principal}, seconds)
            for principal, seconds in sorted(observation.propagation_seconds.items())
        ],
    )
    metric(
        "job_revocation_seconds",
        "Seconds from revoking a principal's credentials (a user's key deleted, a role's sessions "
        "denied) to AWS refusing them (verify --measure-revocation).",
        [
            ({**base, "principal": principal}, seconds)
            for principal, seconds in sorted(observation.revocation_seconds.items())
        ],
    )
    metric(
        "job_stale_runs",
        "Stale runs the janitor handled, by outcome.",
        [
            ({**base, "outcome": outcome}, count)
            for outcome, count in observation.stale_runs.items()
        ],
    )
    # Every verdict has a sample, 0 included, for the reason job_verdict does.
    fleet = observation.fleet_items
    metric(
        "job_fleet_items",
        "Items of the batch `fleet show` showed, by verdict (none: not judged yet).",
        [
            ({**base, "verdict": verdict}, fleet[verdict])
            for verdict in (*(v.value for v in RunVerdict), "none")
        ]
        if fleet is not None
        else [],
    )
    return "\n".join(lines) + "\n"


def write_metrics(path: str, observation: Observation, exit_code: int) -> None:
    write_atomically(path, render(observation, exit_code, _previous_success(Path(path))))
