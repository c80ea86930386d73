"""Wall time and AWS calls of `job run` against a moto server with IAM enforced.

    .venv/bin/python -m benchmarks.run_once [repeats]

Prints one JSON line per run and the calls by operation. moto answers in about a millisecond, so
the wall time here is the job's own overhead plus moto's; real AWS adds 20-200 ms per call.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from job.aws.session import make_aws
from job.config import parse_database_url
from job.emulator import bootstrap_runner
from job.ledger.engine import Ledger
from job.ledger.store import Store
from job.phases.run import run_all
from job.scenario import RunOptions
from tests.services.moto_server import moto_server


def main(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as folder, moto_server(Path(folder, "moto.log")) as url:
        os.environ.update(bootstrap_runner(url).environment())
        names: list[str] = []

        def count(model: Any, **_: Any) -> None:
            names.append(model.name)

        for attempt in range(repeats):
            names.clear()
            ledger = Ledger(parse_database_url(f"sqlite:///{folder}/ledger-{attempt}.db")).open()
            with ledger.session() as session:
                started = time.perf_counter()
                outcome = run_all(
                    Store(session),
                    make_aws(
                        "us-east-1", call_hooks=[count], propagation_timeout=timedelta(seconds=60)
                    ),
                    prefix="job",
                    # moto speaks plain HTTP: no TLS-only bucket policy (see job.config)
                    options=RunOptions(require_tls=False),
                    hold=ledger.hold,
                )
                wall = time.perf_counter() - started
            ledger.dispose()
            print(
                json.dumps(
                    {
                        "wall_s": round(wall, 3),
                        "exit_code": outcome.exit_code,
                        "aws_calls": len(names),
                    }
                )
            )
        print(json.dumps(dict(Counter(names).most_common())))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
