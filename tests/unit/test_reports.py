"""The report formats on their own: JUnit failures say expected versus actual, metrics keep the
last success across failures, the status line shows only for a person at a terminal."""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as ET

import pytest
from prometheus_client.parser import text_string_to_metric_families

from job.config import LogFormat, OutputFormat
from job.junit import junit_document
from job.ledger.models import Check, Run, RunStatus, RunVerdict, Verdict
from job.logs import WAITING, StatusLine, wants_status_line
from job.metrics import Observation, write_metrics


def _run() -> Run:
    return Run(
        id="abc", account_id="123456789012", region="us-east-1", status=RunStatus.VERIFY_FAILED
    )


def _check(expected: Verdict, actual: Verdict, detail: str | None = None) -> Check:
    return Check(
        principal="reader",
        action="s3:PutObject",
        resource="arn:aws:s3:::b/k",
        expected=expected,
        actual=actual,
        passed=expected == actual,
        detail=detail,
    )


def test_junit_failures_and_errors_say_expected_versus_actual() -> None:
    checks = [
        _check(Verdict.DENY, Verdict.DENY),
        _check(Verdict.DENY, Verdict.ALLOW),
        _check(Verdict.ALLOW, Verdict.ERROR, "SlowDown"),
    ]
    root = junit_document(_run(), checks)
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    passed, mismatch, broken = suite.findall("testcase")
    assert passed.find("failure") is None and passed.find("error") is None
    # Named by the cell (principal, action, resource), not by the run: see below.
    assert mismatch.get("name") == "reader s3:PutObject arn:aws:s3:::b/k"
    failure = mismatch.find("failure")
    assert failure is not None and failure.get("message") == "expected deny, got allow"
    error = broken.find("error")
    assert error is not None and error.get("message") == "expected allow, got error (SlowDown)"
    # It round-trips as XML.
    assert ET.fromstring(ET.tostring(root)).tag == "testsuites"


def test_junit_names_a_check_the_same_in_every_run() -> None:
    """CI follows a test case from build to build by its name: a run's own bucket (whose name
    carries the run id) is named as the scenario names it."""

    def names(run_id: str) -> list[str | None]:
        run = Run(id=run_id, prefix="canary", account_id="123456789012", region="us-east-1")
        run.status = RunStatus.VERIFIED
        check = Check(
            principal="writer",
            action="s3:GetObject",
            resource=f"arn:aws:s3:::canary-{run_id}-data/seed.txt",
            expected=Verdict.ALLOW,
            actual=Verdict.ALLOW,
            passed=True,
        )
        suite = junit_document(run, [check]).find("testsuite")
        assert suite is not None
        return [case.get("name") for case in suite.findall("testcase")] + [suite.get("name")]

    assert names("a123456789") == names("b987654321")
    assert names("a123456789")[0] == "writer s3:GetObject bucket:data/seed.txt"


def test_junit_of_an_incomplete_verify_is_not_green() -> None:
    """Some cells answered and passed, others never ran: the report carries an errored case with
    why, so CI does not show the passing ones alone as a green build."""
    run = _run()
    run.verdict = RunVerdict.INCOMPLETE
    suite = junit_document(
        run, [_check(Verdict.DENY, Verdict.DENY)], error="7 of 9 checks not answered: ..."
    ).find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("tests") == "2"


def test_metrics_carry_the_verdict(tmp_path) -> None:
    run = _run()
    run.verdict = RunVerdict.INCOMPLETE
    observation = Observation("verify", "job")
    observation.observe_run(run, [])
    path = tmp_path / "job.prom"
    write_metrics(str(path), observation, 4)
    samples = {
        sample.labels["verdict"]: sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
        if sample.name == "job_verdict"
    }
    assert samples == {"passed": 0, "failed": 0, "incomplete": 1}


def test_junit_without_checks_is_an_error_not_an_empty_pass() -> None:
    suite = junit_document(_run(), [], error="cannot create user: AccessDenied").find("testsuite")
    assert suite is not None and suite.get("errors") == "1"
    [case] = suite.findall("testcase")
    error = case.find("error")
    assert error is not None and "AccessDenied" in (error.get("message") or "")


def _values(path) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
        if not sample.labels.get("result")
    }


def test_last_success_survives_failures(tmp_path) -> None:
    path = tmp_path / "job.prom"
    write_metrics(str(path), Observation("run", 'we"ird\\prefix'), 0)
    success = _values(path)["job_last_success_timestamp_seconds"]
    assert success == pytest.approx(_values(path)["job_last_run_timestamp_seconds"])
    write_metrics(str(path), Observation("run", "job"), 1)
    after = _values(path)
    assert after["job_last_exit_code"] == 1
    assert after["job_last_success_timestamp_seconds"] == success  # every digit kept
    assert after["job_last_run_timestamp_seconds"] >= success
    assert not list(tmp_path.glob(".job.prom.*")), "no scratch file left behind"


def test_no_success_yet_means_no_success_sample(tmp_path) -> None:
    path = tmp_path / "job.prom"
    write_metrics(str(path), Observation("verify", "job"), 4)
    assert "job_last_success_timestamp_seconds" not in _values(path)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "output", "log_format", "level", "ci", "shown"),
    [
        (FakeTerminal(), "text", "text", logging.WARNING, "", True),
        (io.StringIO(), "text", "text", logging.WARNING, "", False),  # a pipe or a file
        (FakeTerminal(), "json", "text", logging.WARNING, "", False),
        (FakeTerminal(), "text", "json", logging.WARNING, "", False),
        (FakeTerminal(), "text", "text", logging.INFO, "", False),  # -v prints waits as lines
        (FakeTerminal(), "text", "text", logging.WARNING, "true", False),
    ],
)
def test_status_line_only_for_a_person(
    stream, output, log_format, level, ci, shown, monkeypatch
) -> None:
    monkeypatch.setenv("CI", ci)
    assert wants_status_line(stream, OutputFormat(output), LogFormat(log_format), level) is shown


def test_status_line_shows_waits_only_and_clears() -> None:
    terminal = FakeTerminal()
    status = StatusLine(terminal)
    logger = logging.getLogger("test.status")
    logger.addHandler(status)
    logger.setLevel(logging.INFO)
    try:
        logger.info("created a user")
        assert terminal.getvalue() == ""
        logger.info("waiting for the writer's key", extra=WAITING)
        assert terminal.getvalue().endswith("waiting for the writer's key")
        status.clear()
        assert terminal.getvalue().endswith("\r\x1b[K")
    finally:
        logger.removeHandler(status)
