"""How runs are shown: one JSON object for machines, short summaries and tables for people."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from job.ledger.models import Check, Resource, Run, RunStatus, RunVerdict

if TYPE_CHECKING:
    from job.naming import Naming
    from job.scenario import Scenario


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def resource_dict(row: Resource) -> dict[str, Any]:
    return {
        "kind": row.kind.value,
        "logical_name": row.logical_name,
        "name": row.name,
        "physical_id": row.physical_id,
        "state": row.state.value,
        "error": row.error,
    }


def check_dict(check: Check) -> dict[str, Any]:
    return {
        "principal": check.principal,
        "action": check.action,
        "resource": check.resource,
        "context": json.loads(check.context) if check.context else None,
        "expected": check.expected.value,
        "actual": check.actual.value,
        "passed": check.passed,
        "detail": check.detail,
    }


class RunHeadline(Protocol):
    """What `runs list` shows of a run: a Run, or one of Store.list_runs' plain rows."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> RunStatus: ...
    @property
    def verdict(self) -> RunVerdict | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


def run_summary(run: RunHeadline) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "status": run.status.value,
        # Null until a verify has started; kept through teardown.
        "verdict": run.verdict.value if run.verdict is not None else None,
        "created_at": _time(run.created_at),
        "updated_at": _time(run.updated_at),
    }


def run_dict(run: Run, checks: Sequence[Check]) -> dict[str, Any]:
    return {
        **run_summary(run),
        "account_id": run.account_id,
        "region": run.region,
        "prefix": run.prefix,
        # Which scenario the run proves (None: started before scenario files, the seed's).
        "scenario_sha256": run.scenario_sha256,
        "verdict_summary": run.verdict_summary,
        "holder": run.holder,
        "held_until": _time(run.held_until),
        "phases": [
            {
                "phase": attempt.phase.value,
                "outcome": attempt.outcome.value,
                "started_at": _time(attempt.started_at),
                "finished_at": _time(attempt.finished_at),
                "host": attempt.host,
                "pid": attempt.pid,
                "error": attempt.error,
            }
            for attempt in run.attempts
        ],
        "resources": [resource_dict(row) for row in run.resources],
        "checks": [check_dict(check) for check in checks],
        # What the latest verify measured: {"propagation_seconds": {principal: s}, ...}.
        "measurements": run.measurements or {},
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [
        ["" if v is None else str(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def runs_text(runs: Sequence[RunHeadline]) -> str:
    if not runs:
        return "no runs in the ledger"
    return table(
        ("RUN", "STATUS", "VERDICT", "CREATED", "UPDATED"),
        [
            (
                run.id,
                run.status.value,
                run.verdict.value if run.verdict is not None else "",
                _short(run.created_at),
                _short(run.updated_at),
            )
            for run in runs
        ],
    )


def fleet_items_text(
    batch_id: str, status: str, items: Sequence[Any], totals: Mapping[str, int]
) -> str:
    """A batch's items as a table, then one line of totals."""
    rows = [
        (
            item.account_id,
            item.region,
            item.status.value,
            item.verdict.value if item.verdict is not None else "",
            item.run_id,
            f"{item.seconds:.1f}" if item.seconds is not None else "",
            item.error,
        )
        for item in items
    ]
    counted = ", ".join(f"{count} {name}" for name, count in totals.items() if name != "items")
    return (
        table(("ACCOUNT", "REGION", "STATUS", "VERDICT", "RUN", "SECONDS", "ERROR"), rows)
        + f"\nbatch {batch_id}: {status}; {totals['items']} items: {counted}"
    )


def batches_text(batches: Sequence[Mapping[str, Any]]) -> str:
    if not batches:
        return "no batches in the ledger"
    return table(
        ("BATCH", "CREATED", "ITEMS", "DONE", "PASSED", "FAILED", "INCOMPLETE"),
        [
            (
                batch["batch_id"],
                batch["created_at"][:19].replace("T", " "),
                batch["items"],
                batch["done"],
                batch["passed"],
                batch["failed"],
                batch["incomplete"],
            )
            for batch in batches
        ],
    )


def _short(value: Any) -> str:
    # isoformat, not strftime: a third of the cost, which shows over ten thousand runs.
    return value.isoformat(sep=" ", timespec="seconds")[:19] if value is not None else ""


def context_suffix(context: str | None) -> str:
    """A cell's request context after its resource: " [prefix=raw/]"; nothing for none."""
    if not context:
        return ""
    values = json.loads(context)
    return " [" + ", ".join(f"{name}={values[name]}" for name in sorted(values)) + "]"


def checks_text(checks: Sequence[Check]) -> str:
    return table(
        ("PRINCIPAL", "ACTION", "RESOURCE", "EXPECTED", "ACTUAL", "RESULT"),
        [
            (
                c.principal,
                c.action,
                c.resource + context_suffix(c.context),
                c.expected.value,
                c.actual.value + (f" ({c.detail})" if c.detail and not c.passed else ""),
                "pass" if c.passed else "FAIL",
            )
            for c in checks
        ],
    )


def resources_text(resources: Sequence[Resource]) -> str:
    return table(
        ("KIND", "NAME", "STATE", "NOTE"),
        [(r.kind.value, r.name, r.state.value, r.error or "") for r in resources],
    )


def stale_text(outcomes: Sequence[Any]) -> str:
    if not outcomes:
        return "no stale runs"
    return table(
        ("RUN", "OUTCOME", "NOTE"), [(o.run_id, o.outcome, o.error or "") for o in outcomes]
    )


def orphans_text(orphans: Sequence[Any], executed: bool) -> str:
    if not orphans:
        return "nothing of the job's is outside the ledger"
    listing = table(
        ("KIND", "NAME", "RUN", "CREATED", "ACTION", "NOTE"),
        [(o.kind, o.name, o.run_id, _short(o.created_at), o.action, o.error) for o in orphans],
    )
    hint = "" if executed else "\n\ndry run: `job sweep --execute` deletes these"
    return listing + hint


# The measurements `runs show` puts in its text, and what it calls each.
_MEASURED = (("propagation_seconds", "propagation"), ("revocation_seconds", "revocation"))


def measurements_text(measurements: dict[str, Any] | None) -> list[str]:
    """A line per measurement, e.g. "propagation: reader 1.2s, writer 0.8s"."""
    lines = []
    for key, label in _MEASURED:
        values = (measurements or {}).get(key) or {}
        if values:
            shown = ", ".join(f"{who} {seconds:.1f}s" for who, seconds in sorted(values.items()))
            lines.append(f"{label}: {shown}")
    return lines


def phases_text(run: Run) -> str:
    return table(
        ("PHASE", "OUTCOME", "STARTED", "FINISHED", "ERROR"),
        [
            (
                attempt.phase.value,
                attempt.outcome.value,
                _short(attempt.started_at),
                _short(attempt.finished_at),
                attempt.error or "",
            )
            for attempt in run.attempts
        ],
    )


def verdict_text(run: Run) -> str | None:
    """The verdict's line: the summary verify recorded with it ("all 9 checks passed", "2 of 9
    checks FAILED", "7 of 9 checks not answered: ..."). Only a `passed` verdict says that all
    passed; a run verified before verdicts were kept says nothing of the kind."""
    if run.verdict is None:
        return None
    summary = run.verdict_summary or ""
    return f"verdict: {run.verdict.value}" + (f" ({summary})" if summary else "")


def run_text(
    run: Run, checks: Sequence[Check], *, show_resources: bool = True, show_phases: bool = False
) -> str:
    parts = [f"run {run.id}: {run.status.value} (account {run.account_id}, {run.region})"]
    if show_phases and run.attempts:
        parts += ["", phases_text(run)]
    if show_resources and run.resources:
        parts += ["", resources_text(run.resources)]
    if checks:
        parts += ["", checks_text(checks)]
    verdict = verdict_text(run)
    if verdict is not None:
        parts += ["", verdict]
    measured = measurements_text(run.measurements)
    if measured:
        parts += ["", *measured]
    return "\n".join(parts)


def scenario_dict(scenario: Scenario, naming: Naming) -> dict[str, Any]:
    """A resolved scenario: every resource with its real (or placeholder) names, every cell."""
    return {
        "resources": [
            {
                "kind": spec.kind.value,
                "logical_name": spec.logical_name,
                "name": spec.name,
                "needs": list(spec.needs),
                "attributes": spec.attributes.to_json(),
            }
            for spec in scenario.resources
        ],
        "expectations": [
            {
                "principal": expectation.principal,
                "principal_kind": scenario.principal_kind(expectation.principal).value,
                "action": expectation.action,
                "resource": expectation.resource_arn(naming),
                "context": expectation.context_values or None,
                "expected": expectation.expected.value,
            }
            for expectation in scenario.expectations
        ],
        # Referenced, not owned: assumed as they are, never created, changed or deleted.
        "existing_roles": dict(scenario.existing_roles),
    }


def scenario_text(scenario: Scenario, naming: Naming, headline: str) -> str:
    resources = table(
        ("KIND", "LOGICAL NAME", "NAME", "NEEDS"),
        [
            (spec.kind.value, spec.logical_name, spec.name, ", ".join(spec.needs))
            for spec in scenario.resources
        ],
    )
    cells = table(
        ("PRINCIPAL", "ACTION", "RESOURCE", "EXPECTED"),
        [
            (e.principal, e.action, e.resource_arn(naming), e.expected.value)
            for e in scenario.expectations
        ],
    )
    parts = [headline, "", resources, "", cells]
    if scenario.existing_roles:
        existing = table(
            ("EXISTING ROLE", "ARN (assumed as it is: never created, changed or deleted)"),
            sorted(scenario.existing_roles.items()),
        )
        parts += ["", existing]
    return "\n".join(parts)
