# syntax=docker/dockerfile:1
# One image for every role: `pixhook api` (default CMD), `pixhook worker --queue jobs|deliveries`,
# and the `pixhook clients` / `pixhook dlq` admin commands. k8s/ runs it with these arguments.
#
# Base image pinned by tag. Pin the digest too when building in CI, e.g.
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{.Manifest.Digest}}'
# then FROM python:3.11-slim-bookworm@sha256:<digest> (it could not be resolved offline here).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the distribution needs: no tests, bench, docs or dev extras.
COPY pyproject.toml README.md constraints.txt ./
COPY service ./service
COPY webhooks ./webhooks
# Runtime dependencies only, at the versions the test suite ran with.
RUN /opt/venv/bin/pip install -c constraints.txt .
# pip is not needed at run time; leaving it out shrinks the image and what an attacker could use.
RUN /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIXHOOK_HOST=0.0.0.0 \
    PIXHOOK_PORT=8000 \
    PIXHOOK_STORAGE=local:/var/lib/pixhook/files
RUN groupadd --system --gid 10001 pixhook \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pixhook \
    && mkdir -p /var/lib/pixhook/files \
    && chown -R 10001:10001 /var/lib/pixhook
COPY --from=builder /opt/venv /opt/venv
WORKDIR /var/lib/pixhook
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# No HEALTHCHECK: the same image runs workers, which listen on no port, so an HTTP check
# would mark them unhealthy. Kubernetes ignores HEALTHCHECK and uses the probes in k8s/.
ENTRYPOINT ["pixhook"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
