"""Time to verdict when AWS lags: `job run` through a proxy that, besides its latency, refuses each
new access key, role and role session for a while, as IAM and STS do (tests/awslike.py's AwsLike:
`InvalidAccessKeyId` / `InvalidClientTokenId` for a new key or session, AccessDenied on AssumeRole
of a new role). Nothing can beat the lag; what is measured is what the job adds to it:

    beyond the lag = wall with the lags - wall without them - the lag the run must wait out

The seed waits out one key lag (its two users' keys are made together, and each principal's
checks wait only for its own key); the role scenario one role lag and then one session lag (a
session can only be made once the role is assumable). The deny settle interval is set to zero
here (JOB_DENY_SETTLE=0s): it is a wait of its own, whole seconds long, which would hide
the lags under it; "Verdicts" in the README says what it is for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.harness import Bench, job_command, median, progress, run_timed
from benchmarks.harness import bench as bench_with
from tests.awslike import AwsLike

LAG_SECONDS = 6.0
SCENARIOS = {
    # name: (scenario file or None for the seed, {knob: seconds}, the lag a run must wait out)
    "seed": (None, {"new_key_lag": LAG_SECONDS}, LAG_SECONDS),
    "roles": (
        "examples/roles.yaml",
        {"new_role_lag": LAG_SECONDS, "new_session_lag": LAG_SECONDS},
        2 * LAG_SECONDS,
    ),
}


def _run(bench: Bench, root: Path, scenario: str | None) -> float:
    env = {**bench.env(database=bench.folder / "lag.db"), "JOB_DENY_SETTLE": "0s"}
    command = [*job_command(), "run"]
    if scenario is not None:
        command += ["--scenario", str(root / scenario)]
    timed = run_timed(command, env, bench.folder)
    document = timed.json()
    if document["verdict"] != "passed" or document["status"] != "torn_down":
        raise RuntimeError(f"job run did not pass and clean up: {timed.stdout[-2000:]}")
    return timed.wall_s


def measure(folder: Path, root: Path, latency: float, repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {"lag_s": LAG_SECONDS}
    aws_like = AwsLike()  # its lags off until set
    with bench_with(folder, latency, None, aws_like, "moto-lag.log") as bench:
        run_timed(
            [*job_command(), "db", "upgrade"],
            bench.env(database=bench.folder / "lag.db"),
            bench.folder,
        )
        for name, (scenario, lags, waited) in SCENARIOS.items():
            walls: dict[str, list[float]] = {"lagged": [], "plain": []}
            for attempt in range(repeats):
                # Alternating, so that a slower moment of a shared machine hits both alike.
                for mode in ("plain", "lagged"):
                    progress(f"lag: {name}, {mode}, #{attempt}")
                    for knob in lags:
                        setattr(aws_like, knob, lags[knob] if mode == "lagged" else 0.0)
                    walls[mode].append(_run(bench, root, scenario))
            for knob in lags:
                setattr(aws_like, knob, 0.0)
            lagged, plain = median(walls["lagged"]), median(walls["plain"])
            results[name] = {
                "waited_lag_s": waited,
                "wall_s": round(lagged, 3),
                "wall_without_lag_s": round(plain, 3),
                "beyond_lag_s": round(lagged - plain - waited, 3),
                "samples_s": {
                    mode: [round(v, 3) for v in values] for mode, values in walls.items()
                },
            }
    return results
