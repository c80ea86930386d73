# The job's image: `docker build -t job .`, then `docker run --rm job run` with AWS credentials in
# the environment (`run --scenario /scenarios/roles.yaml`: an example it ships). Targets: `runtime`
# (the default, last) and `emulator` (moto server with IAM enforcement, for docker-compose.yml's
# `moto` service).
#
# Every stage starts from the same base, pinned by tag: the virtualenv built in `build` is copied
# into the final stages, and its interpreter links must point at the same Python there.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# Build the job's wheel from the source tree (never an editable or source install in the image),
# then a virtualenv with that wheel and its runtime dependencies only: no test or dev extras.
# Every dependency ships manylinux wheels (psycopg's binary build included), so no compiler is
# needed even here, and none reaches the final image either way.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY job/ job/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /wheels/job-*.whl
# The example scenarios, which the runtime image ships in /scenarios: readable by its user
# whatever the umask of the checkout they came from. After the wheel, so editing one rebuilds
# only this.
COPY examples/ examples/
RUN chmod -R u=rwX,go=rX examples

# The same virtualenv plus moto's server, from the job's own `emulator` extra: the emulator runs
# the moto version the job is tested against.
FROM build AS build-emulator
RUN /opt/venv/bin/pip install --no-cache-dir "$(echo /wheels/job-*.whl)[emulator]"

# What both final images share: an unprivileged user (numeric, so that Kubernetes' runAsNonRoot
# can check it without a runAsUser) and the ledger's folder. Both folders may be entered by any
# user: `docker run --user "$(id -u)"` with your ~/.aws mounted read-only in /home/job must work
# (the SQLite ledger itself is created mode 0600).
FROM ${PYTHON_IMAGE} AS base
# No .pyc written at run time (the root filesystem may be read-only, and a container's writes die
# with it); pip compiled the virtualenv's bytecode at install time, so start-up stays fast.
# Unbuffered: logs reach `docker logs` and Kubernetes as they happen.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 job \
    && useradd --uid 10001 --gid job --no-log-init --no-create-home --home-dir /home/job \
        --shell /usr/sbin/nologin job \
    && install --directory --owner=job --group=job --mode=0755 /home/job /data
WORKDIR /data

FROM base AS emulator
COPY --from=build-emulator /opt/venv /opt/venv
USER 10001:10001
EXPOSE 5000
# moto's server (`python -m moto.server`'s options), taught to trust a role's account principal
# as AWS does, so that scenarios with roles pass here as with `job run --emulator`.
ENTRYPOINT ["python", "-m", "job.emulator", "--serve"]
CMD ["--host", "0.0.0.0", "--port", "5000"]

# The default target.
FROM base AS runtime
COPY --from=build /opt/venv /opt/venv
# The contract's default ledger in the image: a SQLite file on the /data volume, so that runs
# outlive the container. docker-compose.yml and the Kubernetes recipes point it at PostgreSQL.
ENV JOB_DATABASE_URL=sqlite:////data/job.db
VOLUME ["/data"]
# The example scenarios: `job run --scenario /scenarios/roles.yaml`. Mount a folder of your own
# there, read-only, to run yours (docker-compose.yml does, from JOB_SCENARIOS_DIR or examples/).
COPY --from=build /src/examples /scenarios
USER 10001:10001
ENTRYPOINT ["job"]
CMD ["--help"]
