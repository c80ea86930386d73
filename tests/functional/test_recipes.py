"""The deployment recipes run as written, so that they cannot rot.

docker-compose.yml's services, the README's emulator one-liner, the Kubernetes CronJobs, the
crontab and the GitHub workflow: each command line and its environment are read from the recipe's
own file and run through the real `job` console script in a subprocess, as the container, cron or
the runner would, against this session's moto server and a real ledger.

Only what names infrastructure that does not exist here is replaced, each by name and after
checking it is what we think it is: the ledger URL (compose's `db`, the Kubernetes Secret, the
workflow's secret, cron's SQLite path), the AWS endpoint (compose's `moto`), the folder `job` is
installed in, the home folder, and the credentials that the scheduler's machine would hold (your
shell, an instance role, IRSA, the role the workflow assumes), for which the `aws` fixture's
runner stands in. Arguments and every other variable are used verbatim.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import posixpath
import re
import shlex
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update

from job.aws.session import make_aws
from job.config import parse_database_url
from job.emulator import EmulatorCredentials, add_member_role, bootstrap_runner
from job.ledger.batches import BATCH_ID
from job.ledger.engine import Ledger
from job.ledger.models import Run, RunStatus, utcnow
from job.phases.provision import provision, start_run
from tests.awslike import AwsLike, layer
from tests.functional.test_permissions import _for_moto as for_moto
from tests.helpers import EMULATED, Done, admin_client, leftovers, open_store, run_captured
from tests.services.moto_server import SETTINGS as MOTO_SETTINGS
from tests.services.moto_server import moto_server
from tests.unit.test_canary_role import permissions as canary_role_permissions

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# The virtualenv's bin folder: its `job` console script is what the recipes call.
BIN = Path(sys.executable).parent
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# The Kubernetes Secret the CronJobs read the ledger URL from (deploy/kubernetes/example/).
LEDGER_SECRET = ("job-ledger", "database-url")
CRONJOBS = ("deploy/kubernetes/cronjob-canary.yaml", "deploy/kubernetes/cronjob-janitor.yaml")
FLEET_CRONJOB = "deploy/kubernetes/fleet/cronjob-fleet.yaml"


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def execute(command: list[str], environment: dict[str, str], cwd: Path) -> Done:
    """The command in a new process with exactly this environment (nothing inherited)."""
    base = {
        "PATH": f"{BIN}:{SYSTEM_PATH}",
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        # No instance metadata service here: asking it only costs time-outs.
        "AWS_EC2_METADATA_DISABLED": "true",
        # The emulator propagates nothing late: no denial need wait the settle interval.
        "JOB_DENY_SETTLE": "0s",
    }
    return run_captured(command, {**base, **environment}, cwd)


def ambient_identity(credentials: EmulatorCredentials) -> dict[str, str]:
    """What a scheduler's machine provides by itself (an instance role, IRSA, the workflow's
    assumed role, your shell): credentials, and here the emulator's endpoint."""
    return {
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_ENDPOINT_URL": credentials.endpoint_url,
    }


def abandoned_run(database_url: str) -> str:
    """A provisioned run whose process died two hours ago: what every janitor must find."""
    with open_store(database_url) as store:
        run = start_run(store, make_aws(REGION), "job", EMULATED)
        provision(store, make_aws(REGION), run_id=run.id)
    ledger = Ledger(parse_database_url(database_url)).open()
    try:
        with ledger.engine.begin() as connection:
            connection.execute(
                update(Run).where(Run.id == run.id).values(updated_at=utcnow() - timedelta(hours=2))
            )
    finally:
        ledger.dispose()
    return run.id


def assert_all_torn_down(credentials: EmulatorCredentials, database_url: str, count: int) -> None:
    with open_store(database_url) as store:
        runs = store.list_runs()
        assert [run.status for run in runs] == [RunStatus.TORN_DOWN] * count, [
            (run.id, run.status) for run in runs
        ]
        run_ids = [run.id for run in runs]
    for run_id in run_ids:
        assert leftovers(credentials, run_id) == []


def assert_json_logs(stderr: str) -> None:
    """With JOB_LOG_FORMAT=json every log line on stderr is one JSON object."""
    for line in stderr.splitlines():
        assert isinstance(json.loads(line), dict), line


# --- the Dockerfile, as far as the other recipes rely on it --------------------------------------


@dataclass
class Dockerfile:
    arguments: dict[str, str]  # the global ARGs (before the first FROM) and their defaults
    # name -> base, ENTRYPOINT, CMD, USER, WORKDIR, and the lists COPY and RUN (all inherited)
    stages: dict[str, dict[str, Any]]


@dataclass
class Copy:
    stage: str | None  # --from, or None: the build context
    sources: list[str]
    destination: str  # absolute: a relative one is resolved against the stage's WORKDIR


def copy_instruction(rest: str, workdir: str) -> Copy:
    words = rest.split()
    flags = dict(word[2:].partition("=")[::2] for word in words if word.startswith("--"))
    *sources, destination = [word for word in words if not word.startswith("--")]
    return Copy(flags.get("from"), sources, posixpath.join(workdir, destination))


def dockerfile() -> Dockerfile:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    arguments: dict[str, str] = {}
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        words = line.split(maxsplit=1)
        if not words or words[0].startswith("#"):
            continue
        instruction, rest = words[0].upper(), (words[1] if len(words) > 1 else "")
        if instruction == "FROM":
            base, _, name = (part.strip() for part in rest.partition(" AS "))
            current = {"WORKDIR": "/", "COPY": [], "RUN": [], **stages.get(base, {}), "from": base}
            stages[name or f"stage{len(stages)}"] = current
        elif current is None:
            assert instruction == "ARG", line
            name, _, default = rest.partition("=")
            arguments[name] = default
        elif instruction in ("ENTRYPOINT", "CMD"):
            current[instruction] = json.loads(rest)
        elif instruction == "USER":
            current[instruction] = rest.strip()
        elif instruction == "WORKDIR":
            current[instruction] = posixpath.join(current["WORKDIR"], rest.strip())
        elif instruction in ("COPY", "RUN"):  # new lists: a stage's own never reach its base
            made = copy_instruction(rest, current["WORKDIR"]) if instruction == "COPY" else rest
            current[instruction] = [*current[instruction], made]
    return Dockerfile(arguments, stages)


def docker_ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regular expression: Go's filepath.Match, where `*` and `?`
    stop at `/`, plus `**` for any number of folders."""
    translated, rest = "", pattern.strip("/")
    while rest:
        if rest.startswith("**/"):
            translated, rest = translated + "(?:.*/)?", rest[3:]
        elif rest.startswith("**"):
            translated, rest = translated + ".*", rest[2:]
        elif rest[0] in "*?":
            translated, rest = translated + ("[^/]*" if rest[0] == "*" else "[^/]"), rest[1:]
        elif rest[0] == "[":
            end = rest.index("]") + 1
            translated, rest = translated + rest[:end], rest[end:]
        else:
            translated, rest = translated + re.escape(rest[0]), rest[1:]
    return re.compile(translated)


def sent_to_builder(path: str) -> bool:
    """Whether `docker build` sends the tree's `path` to the builder, by .dockerignore: the last
    pattern matching the path or a folder above it decides, `!` taking it back in."""
    folders = path.split("/")
    candidates = ["/".join(folders[: end + 1]) for end in range(len(folders))]
    sent = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        regex = docker_ignore_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            sent = pattern.startswith("!")
    return sent


def test_the_image_is_what_the_recipes_expect() -> None:
    image = dockerfile()
    # Pinned to a release, not a moving tag like python:3 or latest; every stage starts from it
    # (or from another stage), since the virtualenv is copied between them.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image.arguments["PYTHON_IMAGE"])
    assert all(
        stage["from"] in ("${PYTHON_IMAGE}", *image.stages) for stage in image.stages.values()
    )
    assert list(image.stages)[-1] == "runtime", "the default target must be the job's image"
    runtime = image.stages["runtime"]
    assert runtime["ENTRYPOINT"] == ["job"]
    # The user the Kubernetes CronJobs declare (runAsUser) is the image's own.
    assert runtime["USER"] == image.stages["emulator"]["USER"] == "10001:10001"
    for path in (*CRONJOBS, FLEET_CRONJOB):
        pod = load(path)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        user = pod["securityContext"]
        assert f"{user['runAsUser']}:{user['runAsGroup']}" == runtime["USER"], path


def test_the_image_ships_the_examples() -> None:
    """`docker run job run --scenario /scenarios/roles.yaml` finds the file: every file of
    examples/ reaches the builder, a build stage copies them and makes them readable by everyone
    (the image's user owns none of them), and the runtime image copies that to /scenarios."""
    shipped = [path.relative_to(ROOT).as_posix() for path in (ROOT / "examples").rglob("*")]
    assert shipped and all(sent_to_builder(path) for path in shipped), shipped
    # Still an allow-list: the tree's virtualenv and ledgers stay out.
    assert sent_to_builder("job/cli.py") and not sent_to_builder(".venv/bin/job")
    assert not sent_to_builder("job.db")

    image = dockerfile()
    [copy] = [copy for copy in image.stages["runtime"]["COPY"] if copy.destination == SCENARIOS]
    assert copy.stage in image.stages, copy
    build = image.stages[copy.stage]
    [folder] = copy.sources
    assert [c.sources for c in build["COPY"] if c.destination.rstrip("/") == folder] == [
        ["examples/"]
    ]
    readable = [
        run
        for run in build["RUN"]
        if (chmod := re.search(r"chmod -R (\S+) (\S+)", run))
        and re.search(r"\bgo?=r\S*X|a\+rX", chmod[1])
        and posixpath.join(build["WORKDIR"], chmod[2]) == folder
    ]
    assert readable, build["RUN"]


# --- docker-compose.yml ---------------------------------------------------------------------------

# Where the image ships examples/, and where both job services mount a folder of scenarios.
SCENARIOS = "/scenarios"
SCENARIOS_MOUNT = re.compile(r"\$\{JOB_SCENARIOS_DIR:-(?P<default>[^}]+)\}:(?P<target>[^:]+):ro")


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = load("docker-compose.yml")["services"][name]
    return service


def compose_command(service: dict[str, Any], args: list[str]) -> list[str]:
    """What `docker compose run SERVICE ARGS` executes: the service's entrypoint, else the
    image's; ARGS, else the service's command, else the image's CMD."""
    image = dockerfile().stages[service["build"]["target"]]
    entrypoint = service.get("entrypoint", image["ENTRYPOINT"])
    return [*entrypoint, *(args or service.get("command", image["CMD"]))]


def compose_environment(
    service: dict[str, Any], shell: dict[str, str], replace: dict[str, tuple[str, str]]
) -> dict[str, str]:
    """The service's environment: values verbatim, except the named ones, each replaced after
    checking it is the value we think (`replace`: name -> (value in the file, new value)); names
    without a value come from the shell, as compose passes them through."""
    environment = {}
    for name, value in service["environment"].items():
        if name in replace:
            expected, new = replace[name]
            assert value == expected, (name, value)
            environment[name] = new
        elif value is None:
            if name in shell:
                environment[name] = shell[name]
        else:
            environment[name] = str(value)
    assert set(replace) <= set(service["environment"]), "a replaced variable is gone"
    return environment


def scenarios_folder(service: dict[str, Any]) -> Path:
    """The folder of this checkout a job service sees at /scenarios, read-only, when
    JOB_SCENARIOS_DIR is unset (compose resolves a relative one from the compose file's folder)."""
    [mount] = [
        match for volume in service["volumes"] if (match := SCENARIOS_MOUNT.fullmatch(volume))
    ]
    assert mount["target"] == SCENARIOS
    return (ROOT / mount["default"]).resolve()


def on_host(value: str, folder: Path) -> str:
    """A path the container sees under /scenarios, as the mounted folder's path here."""
    return (
        str(folder / value.removeprefix(f"{SCENARIOS}/")) if value.startswith(SCENARIOS) else value
    )


def test_compose_job_service_against_aws(aws, postgres_url: str, tmp_path: Path) -> None:
    """`docker compose run --rm job provision` (verify, teardown) with your shell's credentials,
    and a scenario of the mounted folder named by your shell's JOB_SCENARIO."""
    service = compose_service("job")
    assert service["depends_on"]["db"]["condition"] == "service_healthy"
    assert scenarios_folder(service) == ROOT / "examples"
    # Your shell, as the job service passes it through: keys, region, and (here) the endpoint.
    scenario = f"{SCENARIOS}/three-principals.yaml"
    shell = {**ambient_identity(aws), "AWS_REGION": REGION, "JOB_SCENARIO": scenario}
    environment = compose_environment(
        service, shell, {"JOB_DATABASE_URL": ("postgresql://job:job@db:5432/job", postgres_url)}
    )
    assert environment["AWS_ACCESS_KEY_ID"] == aws.access_key_id, "credentials pass through"
    assert environment["JOB_SCENARIO"] == scenario, "the scenario passes through"
    environment["JOB_SCENARIO"] = on_host(scenario, scenarios_folder(service))

    provisioned = execute(compose_command(service, ["provision"]), environment, tmp_path)
    assert provisioned.exit_code == 0, provisioned
    run_id = provisioned.stdout.strip()
    for phase in ("verify", "teardown"):
        done = execute(compose_command(service, [phase, "--run-id", run_id]), environment, tmp_path)
        assert done.exit_code == 0, done
    assert_all_torn_down(aws, postgres_url, 1)
    with open_store(postgres_url) as store:
        stored = store.get_run(run_id).scenario_sha256
    assert (
        stored == hashlib.sha256((ROOT / "examples/three-principals.yaml").read_bytes()).hexdigest()
    )


def readme_commands(prefix: str) -> list[list[str]]:
    """The README lines that start with `prefix`, as words (their comments dropped)."""
    return [
        shlex.split(line.strip(), comments=True)
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.strip().startswith(prefix)
    ]


EMULATOR_ONE_LINERS = readme_commands("docker compose --profile emulator run")


def test_readme_shows_the_emulator_with_a_scenario() -> None:
    assert [words[5:] for words in EMULATOR_ONE_LINERS] == [
        ["--rm", "job-emulated", "run"],
        ["--rm", "job-emulated", "run", "--scenario", f"{SCENARIOS}/roles.yaml"],
        # The emulator's account has the existing role and bucket it names, as --emulator's.
        ["--rm", "job-emulated", "run", "--scenario", f"{SCENARIOS}/existing-resources.yaml"],
    ]


@contextmanager
def compose_moto(log: Path) -> Iterator[str]:
    """docker-compose.yml's `moto` service as the image runs it (its entrypoint and command, the
    address it listens on made a free loopback port), behind the AWS-like layer; its URL."""
    moto = compose_service("moto")
    assert "emulator" in moto["profiles"]
    *server, host, address, port, number = compose_command(moto, [])
    assert [host, address, port, number] == ["--host", "0.0.0.0", "--port", "5000"], server
    assert server[0] == "python", server  # the virtualenv's, first on PATH in the image
    environment = {"PATH": f"{BIN}:{SYSTEM_PATH}", "HOME": str(log.parent), "LANG": "C.UTF-8"}
    environment.update({name: str(value) for name, value in moto["environment"].items()})
    with (
        moto_server(log, [str(BIN / "python"), *server[1:]], environment) as upstream,
        layer(upstream, AwsLike()) as aws_like,
    ):
        yield aws_like.url


@pytest.mark.parametrize(
    "words", EMULATOR_ONE_LINERS, ids=[" ".join(words[6:]) for words in EMULATOR_ONE_LINERS]
)
def test_compose_emulator_one_liner(words: list[str], tmp_path: Path) -> None:
    """The README's `docker compose --profile emulator run --rm job-emulated run` (and with a
    scenario of the mounted folder, roles included): no AWS account, no credentials from
    anywhere; the job-emulated service makes its own runner in compose's own moto service. Its
    ledger is a SQLite file on a volume of its own, here in the test's folder."""
    assert words[:5] == ["docker", "compose", "--profile", "emulator", "run"]
    # `docker compose run`'s own options stand before the service; the job's, after it.
    options = list(itertools.takewhile(lambda word: word.startswith("-"), words[5:]))
    assert options == ["--rm"], f"handle option(s) {options} here"
    service_name, *args = words[5 + len(options) :]
    service = compose_service(service_name)
    assert "emulator" in service["profiles"]
    assert service["depends_on"]["moto"]["condition"] == "service_healthy"
    # The session's emulator, which the other tests use, is configured like compose's `moto`.
    moto = compose_service("moto")
    assert {name: str(value) for name, value in moto["environment"].items()} == MOTO_SETTINGS

    assert "emulator-ledger:/data" in service["volumes"]
    assert scenarios_folder(service) == ROOT / "examples"
    args = [on_host(arg, scenarios_folder(service)) for arg in args]
    ledger = f"sqlite:///{tmp_path}/job.db"
    with compose_moto(tmp_path / "moto.log") as endpoint:
        environment = compose_environment(
            service,
            {},
            {
                "JOB_DATABASE_URL": ("sqlite:////data/job.db", ledger),
                "AWS_ENDPOINT_URL": ("http://moto:5000", endpoint),
            },
        )
        done = execute(compose_command(service, args), environment, tmp_path)
        assert done.exit_code == 0, done
        assert_all_torn_down(bootstrap_runner(endpoint), ledger, 1)


# --- Kubernetes -----------------------------------------------------------------------------------


def cronjob_container(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    cronjob = load(path)
    assert cronjob["kind"] == "CronJob"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    [container] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return cronjob, container


def container_environment(container: dict[str, Any], secrets: dict[tuple[str, str], str]):
    environment = {}
    for variable in container["env"]:
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            environment[variable["name"]] = secrets[(reference["name"], reference["key"])]
    return environment


def test_kubernetes_cronjobs(aws, postgres_url: str, tmp_path: Path) -> None:
    """The canary CronJob's container, then the janitor's, with the Secret holding the test's
    PostgreSQL URL and the `aws` runner in place of the service account's role."""
    secret = load("deploy/kubernetes/example/secret.yaml")
    assert (secret["metadata"]["name"], *secret["stringData"]) == LEDGER_SECRET
    secrets = {LEDGER_SECRET: postgres_url}
    abandoned = abandoned_run(postgres_url)

    for path in CRONJOBS:
        _, container = cronjob_container(path)
        environment = {**ambient_identity(aws), **container_environment(container, secrets)}
        done = execute([*container["command"], *container["args"]], environment, tmp_path)
        assert done.exit_code == 0, done
        document = json.loads(done.stdout)  # --output json: one object on stdout
        if "--stale" in container["args"]:
            assert [(run["run_id"], run["outcome"]) for run in document["runs"]] == [
                (abandoned, "torn_down")
            ]
        else:
            assert document["status"] == "torn_down"
        if container_environment(container, secrets).get("JOB_LOG_FORMAT") == "json":
            assert_json_logs(done.stderr)
    assert_all_torn_down(aws, postgres_url, 2)


# --- Kubernetes: the fleet ------------------------------------------------------------------------

FLEET_CONFIGMAP = "deploy/kubernetes/fleet/configmap.yaml"
# What the contract says each exit code means, and what the fleet Job must then do with the pod
# (CONTRACT.md, "Exit codes"): bad input fails every pod alike, so the Job; an unforeseen failure
# or a hold is not cured by running the same pod again; AWS or the ledger, safe to run again, is
# retried within the index's budget.
FLEET_ACTIONS = {1: "FailIndex", 2: "FailJob", 3: "FailIndex", 4: "Count"}
# Kubernetes' own expansion of $(VAR) in a container's command and args: $$ is a literal $, and a
# reference to a variable the container does not define is left as written.
# https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/
K8S_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def failure_action(
    policy: dict[str, Any], exit_codes: dict[str, int], conditions: tuple[str, ...] = ()
) -> str:
    """What the Job controller does with a failed pod under `policy`: the first rule that
    matches decides, and none matching is the default, Count. `exit_codes` is each container's
    (init containers' too) by name; 0 never matches an exit code rule."""
    for rule in policy["rules"]:
        if "onPodConditions" in rule:
            if any(
                pattern["type"] in conditions and pattern.get("status", "True") == "True"
                for pattern in rule["onPodConditions"]
            ):
                return str(rule["action"])
            continue
        requirement = rule["onExitCodes"]
        codes = [
            code
            for name, code in exit_codes.items()
            if code != 0 and requirement.get("containerName") in (None, name)
        ]
        values = requirement["values"]
        if requirement["operator"] == "In":
            matched = any(code in values for code in codes)
        else:  # NotIn
            matched = any(code not in values for code in codes)
        if matched:
            return str(rule["action"])
    return "Count"


def pod_environment(
    container: dict[str, Any],
    secrets: dict[tuple[str, str], str],
    configmaps: dict[str, dict[str, str]],
    labels: dict[str, str],
) -> dict[str, str]:
    """The container's variables as the kubelet sets them: literal values, Secret and ConfigMap
    keys (a missing one would keep the pod from starting), and the pod's labels through the
    downward API."""
    environment = {}
    for variable in container["env"]:
        name = variable["name"]
        if "value" in variable:
            environment[name] = variable["value"]
            continue
        source = variable["valueFrom"]
        if "secretKeyRef" in source:
            reference = source["secretKeyRef"]
            environment[name] = secrets[(reference["name"], reference["key"])]
        elif "configMapKeyRef" in source:
            reference = source["configMapKeyRef"]
            environment[name] = configmaps[reference["name"]][reference["key"]]
        else:
            path = source["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
            assert label, f"give {path} a value here"
            environment[name] = labels[label[1]]
    return environment


def expand(words: list[str], environment: dict[str, str]) -> list[str]:
    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return environment.get(match[1], match[0])

    expanded = [K8S_REFERENCE.sub(one, word) for word in words]
    # Left as written, a reference would reach the job literally: a batch named "$(BATCH)".
    assert not [word for word in expanded if "$(" in word], expanded
    return expanded


def fleet_batch_id(cronjob: dict[str, Any], scheduled: datetime) -> str:
    """The name the CronJob controller gives the Job it starts at `scheduled`: the CronJob's
    name and the scheduled time in minutes since the epoch
    (https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/)."""
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def test_kubernetes_fleet_job_fails_as_the_contract_says() -> None:
    """The fleet's Indexed Job: as many workers at once as it has indexes, retried by index, and
    each exit code of the contract handled as it means, for the plan (init) container and the
    worker alike; a pod evicted or preempted is replaced whatever it exited with."""
    cronjob = load(FLEET_CRONJOB)
    assert cronjob["kind"] == "CronJob"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["parallelism"] == job["completions"] >= 2
    assert job["backoffLimitPerIndex"] >= 1
    assert 0 <= job["maxFailedIndexes"] < job["completions"]
    # Set, it would count every index's retries against one budget again.
    assert "backoffLimit" not in job
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never", "podFailurePolicy and per-index limits require it"
    [plan] = pod["initContainers"]
    [work] = pod["containers"]
    policy = job["podFailurePolicy"]
    for code, action in FLEET_ACTIONS.items():
        assert failure_action(policy, {plan["name"]: code}) == action, ("plan", code)
        assert failure_action(policy, {plan["name"]: 0, work["name"]: code}) == action, code
        disrupted = failure_action(policy, {work["name"]: code}, ("DisruptionTarget",))
        assert disrupted == "Ignore", code
    # A kill from outside (SIGKILL: 137, an OOM) is retried within the budget.
    assert failure_action(policy, {work["name"]: 137}) == "Count"

    # The batch id is the Job's name: a valid one for the job, and a valid Job name.
    name = cronjob["metadata"]["name"]
    assert len(name) <= 52, "the controller appends 11 characters to a 63-character Job name"
    batch = fleet_batch_id(cronjob, datetime(2099, 12, 31, 18, 40, tzinfo=UTC))
    assert len(batch) <= 63 and BATCH_ID.fullmatch(batch), batch
    account = load("deploy/kubernetes/fleet/serviceaccount.yaml")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False


def test_kubernetes_fleet_cronjob(
    aws: EmulatorCredentials, postgres_url: str, tmp_path: Path
) -> None:
    """Two of the fleet Job's pods, as the kubelet runs them: each plans the batch its Job is
    named after (the second finds it planned), then both work it at once, against this
    session's moto, with the ConfigMap's accounts, regions, external id and scenario. Each
    member account has the role deploy/aws/canary-role.yaml makes, with that template's
    permissions, trusting the `aws` runner (which stands in for the service account's role)
    with the ConfigMap's external id."""
    cronjob = load(FLEET_CRONJOB)
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [plan] = pod["initContainers"]
    [work] = pod["containers"]
    configmap = load(FLEET_CONFIGMAP)
    data = configmap["data"]
    assert yaml.safe_load(data["scenario.yaml"]) == load("job/scenarios/seed.yaml")
    # The ConfigMap's files, where the pod mounts them.
    mounts = {}
    for volume in pod["volumes"]:
        if "configMap" not in volume:
            continue
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        folder = tmp_path / volume["name"]
        folder.mkdir()
        for item in volume["configMap"]["items"]:
            (folder / item["path"]).write_text(data[item["key"]])
        [mount] = [m for m in plan["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        mounts[mount["mountPath"]] = folder

    def on_host(word: str) -> str:
        for mount_path, folder in mounts.items():
            if word.startswith(f"{mount_path}/"):
                return str(folder / word.removeprefix(f"{mount_path}/"))
        return word

    accounts = [
        line.partition("#")[0].strip()
        for line in data["accounts.txt"].splitlines()
        if line.partition("#")[0].strip()
    ]
    regions = data["regions"].split(",")
    planned_items = len(accounts) * len(regions)
    runner = admin_client(aws, "sts").get_caller_identity()["Arn"]
    role_name = plan["args"][plan["args"].index("--role-name") + 1]
    for account in accounts:
        add_member_role(
            aws.endpoint_url,
            account,
            role_name=role_name,
            trusted_arn=runner,
            # moto authorizes IAM calls as if on "*" and S3's with its own action names:
            # the template's policy, widened where moto needs it as the least-privilege
            # tests widen the runner policy (tests/functional/test_permissions.py).
            policy=for_moto(canary_role_permissions(), frozenset()),
            external_id=data["external-id"],
        )

    batch = fleet_batch_id(cronjob, datetime(2026, 12, 7, 18, 40, tzinfo=UTC))
    labels = {"batch.kubernetes.io/job-name": batch, "job-name": batch}
    secrets = {LEDGER_SECRET: postgres_url}
    configmaps = {configmap["metadata"]["name"]: data}

    def run(container: dict[str, Any]) -> Done:
        environment = pod_environment(container, secrets, configmaps, labels)
        command = [
            on_host(word) for word in expand(container["command"] + container["args"], environment)
        ]
        return execute(command, {**ambient_identity(aws), **environment}, tmp_path)

    for created in (True, False):  # pod 0's plan records the batch, pod 1's finds it
        planned = run(plan)
        assert planned.exit_code == 0, planned
        document = json.loads(planned.stdout)
        assert (document["batch_id"], document["created"]) == (batch, created)
        assert document["items"] == planned_items
        assert_json_logs(planned.stderr)
    with ThreadPoolExecutor(2) as pool:
        workers = list(pool.map(lambda _: run(work), range(2)))
    for done in workers:
        assert done.exit_code == 0, done
        assert_json_logs(done.stderr)
    assert sum(json.loads(done.stdout)["items_done"] for done in workers) == planned_items

    shown = execute(
        ["job", "fleet", "show", "--batch", batch, "--output", "json"],
        {**ambient_identity(aws), "JOB_DATABASE_URL": postgres_url},
        tmp_path,
    )
    items = json.loads(shown.stdout)["items"]
    assert shown.exit_code == 0, [(i["account"], i["region"], i["error"]) for i in items]
    assert sorted((item["account"], item["region"]) for item in items) == sorted(
        itertools.product(accounts, regions)
    )
    assert {item["verdict"] for item in items} == {"passed"}, items
    with open_store(postgres_url) as store:
        statuses = {store.get_run(item["run_id"]).status for item in items}
    assert statuses == {RunStatus.TORN_DOWN}


# --- cron -----------------------------------------------------------------------------------------

CRON_FIELD = re.compile(r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*")
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def crontab() -> tuple[dict[str, str], list[str]]:
    """The crontab's variables and its entries' commands, each entry's schedule checked."""
    variables, commands = {}, []
    for line in (ROOT / "deploy/cron/job.crontab").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if assignment := re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", line):
            variables[assignment[1]] = assignment[2]
            continue
        *fields, command = line.split(maxsplit=5)
        for field, (low, high) in zip(fields, CRON_RANGES, strict=True):
            assert CRON_FIELD.fullmatch(field), line
            assert all(low <= int(n) <= high for n in re.findall(r"(?<!/)\d+", field)), line
        # cron turns an unescaped % into a newline: our commands must not contain one.
        assert "%" not in command, line
        commands.append(command)
    return variables, commands


# Stands in for syslog's `logger`, which the crontab calls when an entry fails: records the call.
RECORDING_LOGGER = """#!/bin/sh
echo "logger $*" >>"$HOME/syslog"
"""


def test_crontab(aws, tmp_path: Path) -> None:
    """Each crontab entry, as cron runs it: `$SHELL -c COMMAND` in the user's home, with the
    crontab's variables. The home stands for /var/lib/job; an abandoned run waits there."""
    variables, commands = crontab()
    home, tools = tmp_path / "home", tmp_path / "tools"
    home.mkdir()
    tools.mkdir()
    (tools / "logger").write_text(RECORDING_LOGGER)
    (tools / "logger").chmod(0o755)
    install_folder, _, rest = variables["PATH"].partition(":")
    assert install_folder == "/opt/job/bin", variables["PATH"]
    assert variables["JOB_DATABASE_URL"] == "sqlite:////var/lib/job/job.db"
    ledger = f"sqlite:///{home}/job.db"
    environment = {
        **ambient_identity(aws),
        **variables,
        "PATH": f"{BIN}:{tools}:{rest}",
        "JOB_DATABASE_URL": ledger,
        "HOME": str(home),
        "LOGNAME": "job",
    }
    abandoned_run(ledger)

    for command in commands:
        done = execute([variables["SHELL"], "-c", command], environment, home)
        # The entries end in `|| logger ...`, so their own exit code says little: no logger call
        # is what says each job command succeeded.
        log = (home / "job.log").read_text()
        assert not (home / "syslog").exists(), f"{(home / 'syslog').read_text()}job.log:\n{log}"
        assert done.exit_code == 0, done
        words = shlex.split(command)
        if "--metrics-file" in words:
            metrics = words[words.index("--metrics-file") + 1].replace("$HOME", str(home))
            assert Path(metrics).is_file(), metrics
    assert_all_torn_down(aws, ledger, 2)
    assert "Traceback" not in (home / "job.log").read_text()


# --- GitHub Actions -------------------------------------------------------------------------------


def test_github_workflow(aws, postgres_url: str, tmp_path: Path) -> None:
    """The canary workflow's steps after it assumes the role, each as GitHub runs a `run:` step
    (bash -eo pipefail) with the job's environment; an abandoned run from an earlier, killed
    workflow waits in the ledger."""
    workflow = load(".github/workflows/canary.yml")
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    triggers = workflow[True]
    assert triggers["schedule"] and "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"id-token": "write", "contents": "read"}
    [job] = workflow["jobs"].values()
    expressions = {
        "${{ secrets.JOB_DATABASE_URL }}": postgres_url,
        "${{ vars.AWS_REGION }}": REGION,
    }
    environment = {name: expressions.get(value, value) for name, value in job["env"].items()}
    assert not [value for value in environment.values() if "${{" in value], environment
    steps = job["steps"]
    [assume] = [
        index
        for index, step in enumerate(steps)
        if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    ]
    assert steps[assume]["with"]["role-to-assume"] == "${{ vars.JOB_AWS_ROLE_ARN }}"
    # configure-aws-credentials exports the role's temporary keys; the runner stands in for them.
    environment.update(ambient_identity(aws))
    abandoned = abandoned_run(postgres_url)

    ran = 0
    for step in steps[assume + 1 :]:
        if "run" not in step:
            continue
        assert "${{" not in step["run"], step
        script = tmp_path / f"step{ran}.sh"
        script.write_text(step["run"])
        done = execute(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], environment, tmp_path
        )
        assert done.exit_code == 0, done
        assert_json_logs(done.stderr)
        ran += 1
    assert ran == 2
    [upload] = [
        step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@")
    ]
    assert upload["if"] == "always()"
    report = tmp_path / upload["with"]["path"]
    assert json.loads((report / "run.json").read_text())["status"] == "torn_down"
    assert (report / "junit.xml").is_file()
    assert_all_torn_down(aws, postgres_url, 2)
    with open_store(postgres_url) as store:
        assert store.get_run(abandoned).status is RunStatus.TORN_DOWN


def test_emulator_wrapper_failures_are_one_line(tmp_path: Path) -> None:
    """What job-emulated's entrypoint says when it cannot start: usage (2), no emulator (4)."""
    wrapper = [sys.executable, "-m", "job.emulator"]
    usage = execute([*wrapper], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, tmp_path)
    assert (usage.exit_code, usage.stderr.count("\n")) == (2, 1), usage
    no_endpoint = execute([*wrapper, "job", "run"], {}, tmp_path)
    assert no_endpoint.exit_code == 2, no_endpoint
    # Port 9 (discard) has no listener here: the connection is refused at once.
    unreachable = execute(
        [*wrapper, "job", "run"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, tmp_path
    )
    assert unreachable.exit_code == 4, unreachable
    assert unreachable.stderr.startswith("job.emulator: cannot bootstrap a runner at"), unreachable
    assert unreachable.stderr.count("\n") == 1, unreachable
