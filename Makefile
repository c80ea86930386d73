# Developer and CI entry points. Everything runs from the virtualenv, which `install` creates.
VENV ?= .venv
PYTHON ?= python3
# Extra pytest arguments, e.g. `make test PYTEST_ARGS='-k sqlite -x'`.
PYTEST_ARGS ?=
# Test processes side by side (`make test TEST_WORKERS=1` for one).
TEST_WORKERS ?= 4
# Benchmark options, e.g. `make bench BENCH_ARGS='--latency-ms 100 --stale-runs 20'`.
BENCH_ARGS ?=

.PHONY: install test lint lint-recipes run smoke-aws bench migration clean

install: $(VENV)/.installed

# Stamps, so that every target can depend on an installed venv without reinstalling each time;
# editing pyproject.toml (new dependency, new entry point) triggers a reinstall. The development
# install holds the emulator's too.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@ $(VENV)/.installed-emulator

# What `make run` needs and no more: the job and moto, not the test and lint toolchain.
$(VENV)/.installed-emulator: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[emulator]'
	touch $@

# no:cacheprovider: no .pytest_cache in the tree, and no state carried between runs. The tests
# run in TEST_WORKERS processes (pytest-xdist), each with its own moto server and PostgreSQL
# cluster; a test waits on AWS calls and the ledger much of the time, so more workers than cores
# pay. worksteal: a worker that runs out takes tests queued for another.
test: $(VENV)/.installed
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# scripts/ is not a package, so not among pyproject's mypy `packages`: mypy checks it as files.
lint: $(VENV)/.installed lint-recipes
	$(VENV)/bin/ruff check job tests benchmarks scripts
	$(VENV)/bin/ruff format --check job tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy scripts

# The container and scheduling recipes, offline: hadolint (no rule ignored), then each file
# against its schema. Kubernetes 1.30 is the oldest version we claim the manifests work on
# (CronJob's timeZone is GA from 1.27); --strict rejects fields the schema does not know, which a
# cluster would drop silently. tests/functional/test_recipes.py runs their command lines. Last,
# cfn-lint checks the fleet's member-account role (tests/unit/test_canary_role.py its policy).
lint-recipes: $(VENV)/.installed
	$(VENV)/bin/hadolint Dockerfile
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/kubernetes-validate --strict --quiet --kubernetes-version 1.30.0 \
		deploy/kubernetes/*.yaml deploy/kubernetes/example/*.yaml deploy/kubernetes/fleet/*.yaml
	$(VENV)/bin/cfn-lint deploy/aws/canary-role.yaml

# The whole job against the in-process, IAM-enforcing emulator: no AWS account needed.
run: $(VENV)/.installed-emulator
	$(VENV)/bin/job run --emulator

# The whole job once against a real AWS account, then `job sweep` to prove nothing is left: for an
# operator with a sandbox account's credentials and AWS_REGION in the environment (README, "Trying
# it on a real account"). A random prefix and a fresh ledger each time; refuses the emulator.
smoke-aws: $(VENV)/.installed
	$(VENV)/bin/python scripts/smoke_aws.py

# Wall time and AWS calls against moto behind a 50 ms latency proxy: job run versus the example's
# sequential script and the critical path, teardown --stale, runs list, start-up. Prints a table
# and writes benchmarks/results/latest.json (--json PATH elsewhere). Reports targets, asserts none.
bench: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks $(BENCH_ARGS)

# A new Alembic revision for what changed in job/ledger/models.py: make migration MESSAGE="why"
migration: $(VENV)/.installed
	@test -n "$(MESSAGE)" || (echo 'usage: make migration MESSAGE="what changes"' >&2; exit 2)
	$(VENV)/bin/python -c 'import sys, pathlib, job.ledger.engine as r; r.autogenerate_revision(sys.argv[1], pathlib.Path(".migration-scratch.db"))' "$(MESSAGE)"

# Removes the virtualenv too: the next target reinstalls from scratch.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './.git/*' -prune -exec rm -rf {} +
