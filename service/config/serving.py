"""Settings of where pixhook runs: Redis, storage, the API, logging, the console, clients."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.fields import choice, count, rate, seconds, setting, text, url, within
from service.redis_url import parse_redis_url
from service.storage import DEFAULT_PUBLIC_CACHE_CONTROL


@dataclass(frozen=True)
class RedisSettings:
    """The only stateful dependency: queues, job records, clients, deliveries, the DLQ."""

    url: str = setting(
        "redis://127.0.0.1:6379/0",
        "PIXHOOK_REDIS_URL",
        "queues, job records, clients, deliveries; `rediss://` for TLS, `unix:///path` for a "
        "socket",
        parse_redis_url,
        kind="URL",
    )


@dataclass(frozen=True)
class StorageSettings:
    """Where inputs and outputs are kept, and how long the links to them stay valid."""

    location: str = text(
        "local:./var/files",
        "PIXHOOK_STORAGE",
        "where inputs and outputs are stored: `local:DIR`, or `s3://bucket[/prefix]` (outputs "
        "are then handed out as presigned S3 URLs; credentials come from the standard AWS "
        "variables / boto3 chain)",
    )
    s3_endpoint_url: str = url(
        "",
        "PIXHOOK_S3_ENDPOINT_URL",
        "an S3-compatible endpoint, e.g. `http://minio:9000` or an R2 URL; path-style addressing "
        "is used when set",
        shown_default="— (AWS S3)",
    )
    s3_region: str = text(
        "us-east-1", "PIXHOOK_S3_REGION", "the region S3 requests and presigned URLs are signed for"
    )
    s3_public_base_url: str = url(
        "",
        "PIXHOOK_S3_PUBLIC_BASE_URL",
        "a CDN or bucket-website base URL that serves the bucket's objects: job outputs are then "
        "written under `public/` with `PIXHOOK_S3_PUBLIC_CACHE_CONTROL` and handed out as "
        "`<base>/<object key>`, permanent links; inputs and batch results stay private "
        "(docs/operations.md, Public outputs)",
        shown_default="— (presigned URLs)",
    )
    s3_public_cache_control: str = text(
        DEFAULT_PUBLIC_CACHE_CONTROL,
        "PIXHOOK_S3_PUBLIC_CACHE_CONTROL",
        "the `Cache-Control` public outputs are stored with",
    )
    file_url_ttl_s: float = seconds(
        86400.0,
        "PIXHOOK_FILE_URL_TTL",
        "how long a file link stays valid (with S3, at most 604800: SigV4's limit)",
    )


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API: where it listens, the links it hands out, what it keeps per request."""

    host: str = text("127.0.0.1", "PIXHOOK_HOST", "the address `pixhook api` listens on")
    # 0 asks the system for a free port, as uvicorn takes it.
    port: int = within(range(65536), 8000, "PIXHOOK_PORT", "the port `pixhook api` listens on")
    public_url: str = url(
        "http://127.0.0.1:8000",
        "PIXHOOK_PUBLIC_URL",
        "the API's external base URL, used in job and file links",
    )
    secret_key: str = text(
        "",
        "PIXHOOK_SECRET_KEY",
        "signs file links; at least 16 random characters, the same on API and workers",
        secret=True,
        shown_default="— (required for `api` and `worker`)",
    )
    idempotency_key_ttl_s: float = seconds(
        86400.0,
        "PIXHOOK_IDEMPOTENCY_KEY_TTL",
        "how long an `Idempotency-Key` and its response are kept",
    )
    # How often an idle event stream (SSE) sends a comment, so proxies keep it open.
    sse_heartbeat_s: float = seconds(
        15.0,
        "PIXHOOK_SSE_HEARTBEAT",
        "how often an idle event stream sends a `: keep-alive` comment, so proxies keep it open",
    )


@dataclass(frozen=True)
class LoggingSettings:
    """How every command writes its log lines."""

    # Empty: chosen by the command, JSON for the services a log collector reads.
    format: str = choice(
        ("json", "text"),
        "",
        "PIXHOOK_LOG_FORMAT",
        "log lines as JSON objects or text (`--log-format` overrides it)",
        shown_default="`json` for `api` and `worker`, `text` otherwise",
    )


@dataclass(frozen=True)
class ConsoleSettings:
    """The operator console at `/console`."""

    # Unset, only API keys sign in, each to its own client's records.
    password: str = text(
        "",
        "PIXHOOK_CONSOLE_PASSWORD",
        "signs the operator in to `/console` (every client); unset, only API keys sign in, each "
        "to its own client",
        secret=True,
    )


@dataclass(frozen=True)
class ClientSettings:
    """Per-client defaults; a client's own limits (`pixhook clients create --rate ...`) win. They
    stop a runaway loop, not a busy integration: 100/s sustained (Stripe's), bursts of 200."""

    requests_per_second: float = rate(
        100.0,
        "PIXHOOK_CLIENT_REQUESTS_PER_SECOND",
        "a client's request rate across all API replicas, unless it has its own "
        "(429 `RATE_LIMITED`)",
    )
    burst: int = count(200, "PIXHOOK_CLIENT_BURST", "requests a client may make above its rate")
    max_in_flight: int = count(
        1000,
        "PIXHOOK_CLIENT_MAX_IN_FLIGHT",
        "a client's jobs queued or running at once, batch items included, unless it has its own "
        "(429 `TOO_MANY_JOBS`)",
    )
