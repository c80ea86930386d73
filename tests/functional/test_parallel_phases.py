"""Phases run their independent calls side by side, never more than --concurrency at once, and
never a call before what it depends on."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from job.aws.session import make_aws
from job.phases.provision import provision, start_run
from job.phases.teardown import teardown
from job.phases.verify import verify
from tests.helpers import EMULATED, leftovers, open_store

REGION = "us-east-1"


@dataclass
class InFlight:
    """Holds every request 50 ms before sending it (a taste of AWS's round trip) and counts how
    many are held at once; records the order in which operations were sent."""

    event = "before-send"
    delay: float = 0.05
    now: int = 0
    most: int = 0
    sent: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Any, **kwargs: Any) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.delay)
        with self.lock:
            self.now -= 1
            self.sent.append(kwargs["event_name"].split(".")[-1])


@pytest.mark.parametrize("concurrency", [1, 3, 10])
def test_calls_overlap_up_to_the_bound(aws, sqlite_url, concurrency: int) -> None:
    meter = InFlight()
    with open_store(sqlite_url) as store:
        run_id = start_run(store, make_aws(REGION), "job", EMULATED).id
        phase_aws = make_aws(REGION, call_hooks=[meter])
        provision(store, phase_aws, run_id=run_id, concurrency=concurrency)
        verify(
            store,
            phase_aws,
            run_id=run_id,
            concurrency=concurrency,
        )
        run = teardown(store, phase_aws, run_id=run_id, concurrency=concurrency)
        assert all(row.state.value == "deleted" for row in run.resources)
        assert all(check.passed for check in store.latest_checks(run))
    assert leftovers(aws, run_id) == []
    if concurrency == 1:
        assert meter.most == 1
    else:
        assert 2 <= meter.most <= concurrency
    # What depends on something was sent after it.
    sent = meter.sent
    assert sent.index("AttachUserPolicy") > max(
        sent.index("CreateUser"), sent.index("CreatePolicy")
    )
    assert sent.index("CreateAccessKey") > sent.index("AttachUserPolicy")
    last_detach = len(sent) - 1 - sent[::-1].index("DetachUserPolicy")
    assert sent.index("DeletePolicy") > last_detach


def test_cheap_commands_do_not_import_boto3(tmp_path) -> None:
    """`job --help` and `job runs list` answer from the ledger alone; boto3 and botocore cost a
    few hundred milliseconds to import, which a status check should not pay."""
    import subprocess

    probe = (
        "import sys\n"
        "from job.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as done:\n"
        "    assert done.code == 0, done.code\n"
        "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    for args in (["--help"], ["runs", "list", "--database-url", f"sqlite:///{tmp_path}/j.db"]):
        result = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (args, result.stderr)
