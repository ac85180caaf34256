# pyagent: the pgAgent-compatible job scheduler, as a sidecar container.
#
#   docker build -t pyagent .
#   docker run -d --init --stop-timeout 35 -e PYAGENT_GRACE_PERIOD=30 \
#       -e PGHOST=db -e PGAGENT_DB=postgres -e PGAGENT_USER=pgagent \
#       -e PGAGENT_PASSWORD_FILE=/run/secrets/pgagent_password ... pyagent
#
# See docs/deployment.md for the environment variables and deploy/ for compose,
# Kubernetes and systemd examples.

# ---------------------------------------------------------------------------------------
# Build stage: install pyagent and its dependencies into a virtual environment that the
# runtime stage copies as a whole (no compilers, no build files, no pip cache there).
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/pyagent
ENV PATH=/opt/pyagent/bin:$PATH

WORKDIR /src
# Only what the package build needs (.dockerignore keeps tests, docs and caches out).
COPY pyproject.toml README.md ./
COPY pyagent ./pyagent
COPY sql ./sql
# Dependency versions come from pyproject.toml's constraints. psycopg[binary] ships its
# own libpq in the wheel, so no apt packages (and no apt-get layer) are needed.
RUN pip install --no-cache-dir . \
    && pyagent --version

# ---------------------------------------------------------------------------------------
# Runtime stage.
FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pyagent" \
      org.opencontainers.image.description="Pure-Python drop-in replacement for the pgAgent job scheduler daemon" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="PostgreSQL" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# A fixed, non-root UID/GID: batch (shell) steps run with the agent's privileges, as in
# pgAgent, so they must not run as root. Fixed numbers let volumes and secrets be
# prepared for them (chown 10001:10001, Kubernetes fsGroup: 10001).
RUN groupadd --system --gid 10001 pyagent \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/pyagent --create-home \
       --shell /bin/sh pyagent

COPY --from=build /opt/pyagent /opt/pyagent

# PYAGENT_FOREGROUND=1: a container's main process must not detach. `pyagent run` never
#   does; this also keeps the pgagent form (`pyagent [options] <connect-string>`, e.g.
#   with --entrypoint pyagent) in the foreground (click reads 1 as true; same as -f).
# PYAGENT_HTTP: the health endpoint (/livez, /readyz) used by HEALTHCHECK and by
#   Kubernetes probes; all interfaces, so probes from outside the container reach it.
# PYAGENT_GRACE_PERIOD=7: `docker stop` sends SIGTERM and kills after 10 s by default, so
#   running jobs get 7 s, leaving 3 s to cancel the rest, mark them aborted and
#   unregister. Give long jobs more with a matching platform grace, e.g.
#   `docker stop -t 35` / compose `stop_grace_period: 35s` with PYAGENT_GRACE_PERIOD=30,
#   or Kubernetes terminationGracePeriodSeconds: 40 with PYAGENT_GRACE_PERIOD=30.
ENV PATH=/opt/pyagent/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYAGENT_FOREGROUND=1 \
    PYAGENT_HTTP=0.0.0.0:9187 \
    PYAGENT_GRACE_PERIOD=7

USER 10001:10001
# Batch steps start here (pgAgent runs them in its working directory).
WORKDIR /home/pyagent

EXPOSE 9187

# pyagent drains on SIGTERM (stops claiming, lets running jobs finish for
# PYAGENT_GRACE_PERIOD, cancels the rest); a second signal stops at once.
STOPSIGNAL SIGTERM

# `pyagent healthcheck` asks the local HTTP endpoint (PYAGENT_HTTP) and exits 0/1; the
# slim image has no curl. start-period covers the first connection to the database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["pyagent", "healthcheck"]

# Exec form: pyagent is PID 1 and receives SIGTERM itself (a shell form would put /bin/sh
# there, which does not forward it). Run with `docker run --init` (compose: init: true)
# so an init reaps the zombies of batch steps' grandchildren. The connection comes from
# the environment (PYAGENT_CONNINFO, or PGAGENT_*/POSTGRES_* plus libpq's PG*); a connect
# string can also be given as the command: docker run pyagent "host=db user=pgagent".
ENTRYPOINT ["pyagent", "run"]
CMD []
