# syntax=docker/dockerfile:1
#
# reaper in a container.
#   docker build -t reaper .
#   docker run -e REAPER_DATABASE_URL='mysql+pymysql://reaper:PASSWORD@db-host:3306/app' -p 7327:7327 reaper
#                                                     # the daemon: /metrics, /healthz, /readyz on :7327
#   docker run -e REAPER_DATABASE_URL=... reaper --once --dry-run     # any one-shot mode: flags go after the image
#
# Build stage: wheels for reaper and every dependency, PostgreSQL's driver (psycopg[binary]) included,
# so the final image needs neither a compiler nor network access to install.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY reaper ./reaper
RUN pip wheel --wheel-dir /wheels '.[postgresql]'


# Final stage: the same base with only the installed wheels (bind-mounted from the build stage for
# the install, so no copy of them stays in a layer).
FROM python:3.11-slim

LABEL org.opencontainers.image.title="reaper" \
      org.opencontainers.image.description="Finds and cleans zombie and expired rows in a background-job table; Prometheus metrics on :7327." \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels 'reaper[postgresql]'

# A fixed non-root uid/gid (Kubernetes' runAsNonRoot can verify a numeric USER). /data is the working
# directory: .env and a TOML settings file are read from it, and a SQLite database or the demo
# database (--demo) lives there; mount a volume on it to keep them.
RUN groupadd --system --gid 10001 reaper \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin reaper \
 && mkdir -p /data \
 && chown 10001:10001 /data
WORKDIR /data
USER 10001:10001

# The metrics server listens on all interfaces inside the container (the default, 127.0.0.1, would be
# unreachable from outside it).
ENV REAPER_METRICS_HOST=0.0.0.0
EXPOSE 7327

# Liveness of the daemon's schedule loop; python's urllib, since the slim image has no curl. It follows
# REAPER_METRICS_PORT, and speaks plain HTTP: with REAPER_METRICS_CERTFILE set, override it (or use
# --no-healthcheck). A one-shot run (--once) serves no HTTP: its container reports unhealthy only if it
# runs past the start period, which changes nothing for a container that just runs and exits.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('REAPER_METRICS_PORT') or '7327'; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

# No CMD: `docker run IMAGE` runs the daemon; `docker run IMAGE --once` (or any other flags) a one-shot
# mode. SIGTERM (docker stop) ends the daemon cleanly within a few seconds.
ENTRYPOINT ["reaper"]
