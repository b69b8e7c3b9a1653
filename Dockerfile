# syntax=docker/dockerfile:1
# The image of one deployable, named by the build argument DEPLOYABLE (api, email, whatsapp, sandbox, operator):
#   docker build --build-arg DEPLOYABLE=api -t notify-api .        (build context = repository root)
# The image runs `python -m functions.<DEPLOYABLE>`. What differs between the deployables (entry module, listen
# address and port, EXPOSE, whether db/ is needed) is the table of stages below; everything else is shared.
ARG DEPLOYABLE

# --- requirements: the pins of the deployable, from pyproject.toml ---------------------------------------------
# The project's dependencies, plus the optional-dependencies group named like the deployable if there is one (the
# operator's kopf).
FROM python:3.11.13-slim-bookworm AS requirements
ARG DEPLOYABLE
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
deps = p['dependencies'] + p.get('optional-dependencies', {}).get(os.environ['DEPLOYABLE'], []); \
open('requirements.txt', 'w').write(chr(10).join(deps) + chr(10))"

# --- builder: those pins, as wheels only, into a venv ----------------------------------------------------------
# No build argument here, so the deployables with the same pins share this stage's cache. Binary wheels only: no
# compiler is ever needed. The application's own code is copied into the final stage as plain files, next to the
# db/ directory that lib.db reads.
FROM python:3.11.13-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY --from=requirements /src/requirements.txt ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: --requirement requirements.txt \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

# --- runtime: slim, non-root, read-only friendly; the venv and the shared code -----------------------------------
FROM python:3.11.13-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 notify \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin notify
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY lib/ ./lib/
COPY functions/__init__.py ./functions/__init__.py

# The deployables that reach PostgreSQL (lib.db reads the SQL files in db/).
FROM runtime AS runtime-db
COPY db/ ./db/

# --- the table: one stage per deployable, with what is its own --------------------------------------------------
FROM runtime-db AS api
ENV API_HOST=0.0.0.0 \
    API_PORT=8080
EXPOSE 8080
ENTRYPOINT ["python", "-m", "functions.api"]

FROM runtime-db AS email
ENV WORKER_HTTP_HOST=0.0.0.0 \
    WORKER_HTTP_PORT=8081
EXPOSE 8081
ENTRYPOINT ["python", "-m", "functions.email"]

FROM runtime-db AS whatsapp
ENV WORKER_HTTP_HOST=0.0.0.0 \
    WORKER_HTTP_PORT=8081
EXPOSE 8081
ENTRYPOINT ["python", "-m", "functions.whatsapp"]

FROM runtime AS sandbox
ENV SANDBOX_HOST=0.0.0.0 \
    SANDBOX_PORT=8090
EXPOSE 8090
ENTRYPOINT ["python", "-m", "functions.sandbox"]

FROM runtime-db AS operator
ENV OPERATOR_HTTP_HOST=0.0.0.0
ENTRYPOINT ["python", "-m", "functions.operator"]

# --- final: the chosen deployable's stage and its own code, compiled, run by a numeric non-root user -------------
# Without DEPLOYABLE the build stops here (an empty base name); a name with no stage in the table above has no
# functions/<name>/ either, and stops at the COPY.
# hadolint ignore=DL3006
FROM ${DEPLOYABLE}
ARG DEPLOYABLE
WORKDIR /app
COPY functions/${DEPLOYABLE}/ ./functions/${DEPLOYABLE}/
RUN python -m compileall -q /app
USER 10001:10001
STOPSIGNAL SIGTERM
# The entrypoint (exec form: python is PID 1 and receives SIGTERM itself; it drains, then exits) is the stage's.
