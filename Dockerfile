# syntax=docker/dockerfile:1
# One image for every role: `pixhook api` (default CMD), `pixhook worker --queue jobs|deliveries`,
# and the `pixhook clients` / `pixhook dlq` admin commands. k8s/ runs it with these arguments.
#
# Base image pinned by tag: its digest could not be resolved where this was written (no registry
# reachable). Pin it where one is, without editing this file:
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{.Manifest.Digest}}'
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
# `make image` builds this file unchanged with buildah on a Debian stand-in for that base.
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
RUN /opt/venv/bin/pip install -c constraints.txt . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools
# botocore ships the models of all ~440 AWS services (27 MB); pixhook's storage needs S3, and
# botocore's own credential providers STS (IRSA, assume-role), SSO, SSO-OIDC and sign-in.
RUN find /opt/venv/lib/python3*/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d \
        ! -name s3 ! -name sts ! -name sso ! -name sso-oidc ! -name signin -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIXHOOK_HOST=0.0.0.0 \
    PIXHOOK_PORT=8000 \
    PIXHOOK_STORAGE=local:/var/lib/pixhook/files
# No pip, setuptools or wheel in the system Python either (the official base has them): nothing
# installs code into a running container.
RUN for site in /usr/local/lib/python3*/site-packages; do \
        [ -d "$site" ] || continue; \
        (cd "$site" && rm -rf pip* setuptools* wheel* _distutils_hack distutils-precedence.pth); \
    done \
    && rm -f /usr/local/bin/pip* /usr/local/bin/wheel \
    && groupadd --system --gid 10001 pixhook \
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
