"""Reports for machines, end to end: JUnit XML for CI, Prometheus metrics for alerting, JSON logs
for log shippers; and bad report paths refused before anything is created."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import job.aws.session
import job.metrics
from tests.faults import FailTimes
from tests.helpers import invoke, leftovers, open_store


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def test_run_writes_junit_metrics_and_json_logs(aws, database_url, tmp_path, capsys) -> None:
    junit, metrics = tmp_path / "report.xml", tmp_path / "job.prom"
    result = invoke(
        capsys,
        "run",
        "--junit-xml",
        str(junit),
        "--metrics-file",
        str(metrics),
        "--log-format",
        "json",
        "-v",
        "--output",
        "json",
        "--database-url",
        database_url,
    )
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert leftovers(aws, document["run_id"]) == []

    # One test case per check, named after what was checked, none failed.
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == len(document["checks"]) == 12
    assert suite.get("tests") == "12" and suite.get("failures") == "0"
    names = {case.get("name") for case in cases}
    prefix = f"arn:aws:s3:::job-{document['run_id']}-"
    for check in document["checks"]:
        # Named as the scenario names the cell: the same in every run.
        resource = check["resource"].replace(prefix, "bucket:")
        assert f"{check['principal']} {check['action']} {resource}" in names
    assert document["verdict"] == "passed"
    assert not suite.findall("testcase/failure") and not suite.findall("testcase/error")

    samples = _samples(metrics)
    base = (("command", "run"), ("prefix", "job"))
    assert samples[("job_last_exit_code", base)] == 0
    assert samples[("job_checks", (*base, ("result", "failed")))] == 0
    assert samples[("job_checks", (*base, ("result", "passed")))] == 12
    assert samples[("job_resources_live", base)] == 0
    assert samples[("job_verdict", (*base, ("verdict", "passed")))] == 1
    assert samples[("job_verdict", (*base, ("verdict", "incomplete")))] == 0
    assert samples[("job_ledger_resources_live", base)] == 0
    assert (
        samples[("job_last_success_timestamp_seconds", base)]
        == samples[("job_last_run_timestamp_seconds", base)]
    )
    phases = {
        dict(labels)["phase"]: value
        for (name, labels), value in samples.items()
        if name == "job_phase_duration_seconds"
    }
    assert set(phases) == {"provision", "verify", "teardown"}
    assert all(value > 0 for value in phases.values())

    # -v logs plenty; every line is one JSON object, and stdout stays the one document.
    lines = result.stderr.splitlines()
    assert len(lines) > 10
    records = [json.loads(line) for line in lines]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("created iam_user" in record["message"] for record in records)


def test_provision_failure_still_reports(aws, sqlite_url, tmp_path, capsys, monkeypatch) -> None:
    """A run that stopped before its checks: metrics say exit 4 and what is live, and the last
    success of an earlier command is carried over for the "no success for N hours" alert."""
    metrics = tmp_path / "job.prom"
    ok = invoke(
        capsys, "runs", "list", "--metrics-file", str(metrics), "--database-url", sqlite_url
    )
    assert ok.exit_code == 0
    first_success = _samples(metrics)[
        ("job_last_success_timestamp_seconds", (("command", "runs list"), ("prefix", "job")))
    ]
    # The job's own credentials may not create users: provision stops part way.
    refuse = FailTimes({"CreateUser"}, "AccessDenied", times=1000)
    result = invoke(
        capsys,
        *("provision", "--metrics-file", str(metrics), "--database-url", sqlite_url),
        hooks=[refuse],
    )
    assert result.exit_code == 4, result.stderr
    with open_store(sqlite_url) as store:
        [run] = store.list_runs()
        assert run.status.value == "failed"
        live = sum(row.state.value != "deleted" for row in store.get_run(run.id).resources)
    samples = _samples(metrics)
    base = (("command", "provision"), ("prefix", "job"))
    assert samples[("job_last_exit_code", base)] == 4
    assert samples[("job_last_success_timestamp_seconds", base)] == first_success
    assert live > 0 and samples[("job_resources_live", base)] == live
    assert ("job_checks", (*base, ("result", "passed"))) not in samples

    # The same failure under `job run`: teardown cleans up, the exit code is provision's, and
    # the JUnit report is one errored case saying why, not an empty (green) suite.
    junit = tmp_path / "report.xml"
    result = invoke(
        capsys, "run", "--junit-xml", str(junit), "--database-url", sqlite_url, hooks=[refuse]
    )
    assert result.exit_code == 4, result.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("tests") == "1"
    error = suite.find("testcase/error")
    assert error is not None and "AccessDenied" in (error.get("message") or "")


def test_a_metrics_file_that_cannot_be_written_at_the_end(
    sqlite_url, tmp_path, capsys, monkeypatch
):
    """Checked writable at the start, the file may still fail at the end (a full disk): exit 4,
    one line on stderr, and stdout still holds exactly the command's one JSON object."""

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(job.metrics, "write_metrics", full_disk)
    result = invoke(
        capsys,
        "runs",
        "list",
        "--output",
        "json",
        "--metrics-file",
        str(tmp_path / "job.prom"),
        "--database-url",
        sqlite_url,
    )
    assert result.exit_code == 4
    assert result.json() == {"status": "ok", "runs": []}
    lines = result.stderr.splitlines()
    assert lines == [
        "job: error: cannot write the metrics file: [Errno 28] No space left on device"
    ]


@pytest.mark.parametrize("option", ["--junit-xml", "--metrics-file"])
def test_unwritable_report_path_is_refused_first(option, sqlite_url, tmp_path, capsys) -> None:
    missing = tmp_path / "no-such-folder" / "report"
    result = invoke(capsys, "run", option, str(missing), "--database-url", sqlite_url)
    assert result.exit_code == 2
    assert f"cannot write {option}" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.parent.exists()
    with open_store(sqlite_url) as store:
        assert store.list_runs() == []


def test_measurements_show_in_runs_show_and_the_metrics_file(
    aws, sqlite_url, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("JOB_PROPAGATION_TIMEOUT", "2s")
    metrics = tmp_path / "job.prom"
    result = invoke(
        capsys,
        *("run", "--measure-revocation", "--metrics-file", str(metrics)),
        *("--output", "json", "--database-url", sqlite_url),
    )
    assert result.exit_code == 0, result.stderr
    run_id = result.json()["run_id"]
    measured = result.json()["measurements"]
    assert set(measured["propagation_seconds"]) == {"writer", "reader"}
    assert all(0 <= s < 60 for s in measured["propagation_seconds"].values())
    assert set(measured["revocation_seconds"]) == {"writer", "reader"}
    assert all(0 <= s <= 2 for s in measured["revocation_seconds"].values())

    shown = invoke(capsys, "runs", "show", run_id, "--output", "json", "--database-url", sqlite_url)
    assert shown.json()["measurements"] == measured
    text = invoke(capsys, "runs", "show", run_id, "--database-url", sqlite_url).stdout
    assert "propagation: reader " in text and "revocation: reader " in text

    samples = _samples(metrics)
    base = (("command", "run"), ("prefix", "job"))
    for principal in ("reader", "writer"):
        labels = (*base, ("principal", principal))
        assert samples[("job_propagation_seconds", labels)] == pytest.approx(
            measured["propagation_seconds"][principal]
        )
        assert samples[("job_revocation_seconds", labels)] >= 0

    # Without the flag, verify measures propagation only.
    plain = invoke(capsys, "run", "--output", "json", "--database-url", sqlite_url)
    assert set(plain.json()["measurements"]) == {"propagation_seconds"}
