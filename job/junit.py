"""The checks as JUnit XML, so that CI systems show the permission matrix as tests.

One test case per check: a mismatch is a failure that says expected versus actual; a check that
could not be made (actual `error`) is an error. A run that never got to its checks (provision
failed, say) gets one errored case for the phase that stopped it, so the CI job is not green.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from job.files import write_atomically
from job.ledger.models import Check, Run, RunVerdict, Verdict
from job.report import context_suffix


def _verdict_word(verdict: Verdict) -> str:
    return {"allow": "allowed", "deny": "denied"}.get(verdict.value, verdict.value)


def logical_resource(run: Run, resource: str) -> str:
    """A check's resource as the scenario names it, the same from run to run, so that CI can
    follow one check from build to build: a run's bucket ARN is `bucket:NAME[/KEY]`; any other
    resource loses the run's own part of its name."""
    run_part = f"{run.prefix}-{run.id}-"
    arn, _, path = resource.partition(":::")
    if arn.endswith(":s3") and path.startswith(run_part):
        return "bucket:" + path.removeprefix(run_part)
    return resource.replace(run_part, "")


def junit_document(run: Run, checks: Sequence[Check], error: str | None = None) -> ET.Element:
    suite = ET.Element("testsuite", name="job verify")
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", run.id),
        ("verdict", run.verdict.value if run.verdict is not None else ""),
        ("account_id", run.account_id),
        ("region", run.region),
        ("status", run.status.value),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    failures = errors = 0
    for check in checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"job.{check.principal}",
            name=f"{check.principal} {check.action} {logical_resource(run, check.resource)}"
            + context_suffix(check.context),
        )
        ET.SubElement(case, "properties").append(
            ET.Element("property", name="expected", value=_verdict_word(check.expected))
        )
        if check.passed:
            continue
        message = f"expected {check.expected.value}, got {check.actual.value}"
        if check.detail:
            message += f" ({check.detail})"
        if check.actual is Verdict.ERROR:
            errors += 1
            ET.SubElement(case, "error", message=message, type="CheckError").text = message
        else:
            failures += 1
            ET.SubElement(
                case, "failure", message=message, type="PermissionMismatch"
            ).text = message
    if error is not None:
        # The run stopped short (nothing checked, or some cells never answered): one errored case
        # carries why, so the report is not green for checks that never ran.
        errors += 1
        case = ET.SubElement(suite, "testcase", classname="job", name="run")
        ET.SubElement(case, "error", message=error, type="JobError").text = error
    tests = len(checks) + (1 if error is not None else 0)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    root = ET.Element(
        "testsuites", name="job", tests=str(tests), failures=str(failures), errors=str(errors)
    )
    root.append(suite)
    return root


def write_junit(path: str, run: Run, checks: Sequence[Check], error: str | None = None) -> None:
    _write(path, junit_document(run, checks, error))


def _write(path: str, document: ET.Element) -> None:
    ET.indent(document)
    text = ET.tostring(document, encoding="unicode", xml_declaration=True)
    write_atomically(path, text + "\n")


def write_fleet_junit(path: str, batch_id: str, items: Sequence[Any]) -> None:
    """A batch as JUnit XML: one test suite per account, one test case per region in it; an item
    that failed is a failure, one incomplete or not done yet an error, with its reason."""
    root = ET.Element("testsuites", name=f"job fleet {batch_id}")
    suites: dict[str, ET.Element] = {}
    for item in items:
        if item.account_id not in suites:
            suites[item.account_id] = ET.SubElement(
                root, "testsuite", name=f"account {item.account_id}"
            )
        case = ET.SubElement(
            suites[item.account_id],
            "testcase",
            classname=f"job.fleet.{item.account_id}",
            name=item.region,
        )
        if item.seconds is not None:
            case.set("time", f"{item.seconds:.3f}")
        if item.verdict is RunVerdict.FAILED:
            reason = item.error or (
                f"run {item.run_id}: a permission differed from what was expected"
            )
            ET.SubElement(case, "failure", message=reason, type="PermissionMismatch").text = reason
        elif item.verdict is not RunVerdict.PASSED:
            reason = item.error or (
                "incomplete" if item.verdict is not None else f"not done ({item.status.value})"
            )
            ET.SubElement(case, "error", message=reason, type="Incomplete").text = reason
    for suite in [*suites.values(), root]:
        _count(suite)
    _write(path, root)


def _count(element: ET.Element) -> None:
    """tests, failures and errors of the test cases under `element`, set on it."""
    cases = list(element.iter("testcase"))
    element.set("tests", str(len(cases)))
    for kind in ("failure", "error"):
        element.set(f"{kind}s", str(sum(case.find(kind) is not None for case in cases)))
