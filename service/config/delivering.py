"""Settings of webhook delivery: sending, circuits, endpoints and the dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.fields import at_least, count, rate, seconds, setting
from webhooks import RetrySchedule, UrlPolicy


def _keys(raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


@dataclass(frozen=True)
class DeliverySettings:
    """Sending webhooks: concurrency, retries, timeouts, and the per-host circuit."""

    allow_private_networks: UrlPolicy = setting(
        UrlPolicy(),
        "PIXHOOK_ALLOW_PRIVATE_NETWORKS",
        "CIDRs that webhook URLs may reach although private, e.g. `10.0.0.0/8,::1/128`; "
        "`pixhook dev` sets loopback",
        UrlPolicy.parse,
        kind="CIDR list",
        shown_default="—",
    )
    concurrency: int = count(
        256, "PIXHOOK_DELIVERY_CONCURRENCY", "attempts one `deliveries` worker makes at once"
    )
    per_host_concurrency: int = count(
        32, "PIXHOOK_WEBHOOK_PER_HOST_CONCURRENCY", "connections one worker opens to one host"
    )
    retry_schedule: RetrySchedule = setting(
        RetrySchedule(),
        "PIXHOOK_WEBHOOK_RETRY_SCHEDULE",
        "delays after each failed attempt (±20% jitter); its length + 1 is the number of attempts",
        RetrySchedule.parse,
        kind="list of durations",
        shown_default="`5s,5m,30m,2h,5h,10h,10h`",
    )
    connect_timeout_s: float = seconds(
        5.0, "PIXHOOK_WEBHOOK_CONNECT_TIMEOUT", "connect timeout per attempt"
    )
    attempt_timeout_s: float = seconds(
        15.0,
        "PIXHOOK_WEBHOOK_ATTEMPT_TIMEOUT",
        "deadline for a whole attempt, however slowly the receiver trickles bytes",
    )
    response_cap_bytes: int = count(
        4096,
        "PIXHOOK_WEBHOOK_RESPONSE_CAP_BYTES",
        "how much of a receiver's response is read and recorded",
    )
    throttled_backoff_s: float = seconds(
        60.0, "PIXHOOK_WEBHOOK_THROTTLED_BACKOFF", "the least wait after a timeout or a 429"
    )
    max_retry_after_s: float = seconds(
        6 * 3600.0, "PIXHOOK_WEBHOOK_MAX_RETRY_AFTER", "the most a `Retry-After` is honoured"
    )
    circuit_threshold: int = count(
        5,
        "PIXHOOK_CIRCUIT_THRESHOLD",
        "host failures (timeouts, connection and TLS errors; 5xx and 429 once two URLs of the "
        "host give them) in a row that open a host's circuit",
    )
    circuit_cooldown_s: float = seconds(
        30.0,
        "PIXHOOK_CIRCUIT_COOLDOWN",
        "how long an open circuit waits before a probe; doubles after each failed probe",
    )
    circuit_max_cooldown_s: float = seconds(
        600.0, "PIXHOOK_CIRCUIT_MAX_COOLDOWN", "the longest an open circuit waits before a probe"
    )
    shutdown_grace_s: float = seconds(
        20.0,
        "PIXHOOK_SHUTDOWN_GRACE",
        "how long a stopping delivery worker lets attempts under way finish (and the API its "
        "open event streams)",
    )


@dataclass(frozen=True)
class EndpointSettings:
    """Registered endpoints and the secrets that sign and seal them."""

    secret_rotation_overlap_s: float = seconds(
        86400.0,
        "PIXHOOK_SECRET_ROTATION_OVERLAP",
        "how long a rotated-out webhook secret keeps signing",
    )
    # Fernet keys sealing endpoint secrets and headers in Redis, the first one sealing; when
    # unset, one is derived from the secret key (which then must not change).
    encryption_keys: tuple[str, ...] = setting(
        (),
        "PIXHOOK_ENCRYPTION_KEYS",
        "Fernet keys, comma separated, sealing endpoint secrets and headers in Redis; the first "
        "seals, all open (rotate by putting a new key first). Set them in production: when "
        "derived, changing the secret key makes sealed values unreadable (deliveries then die "
        "`SEALED_SECRET_BROKEN`)",
        _keys,
        kind="list of keys",
        secret=True,
        shown_default="derived from `PIXHOOK_SECRET_KEY`",
    )
    # Svix's 5 days.
    disable_after_s: float = seconds(
        5 * 86400.0,
        "PIXHOOK_ENDPOINT_DISABLE_AFTER",
        "an endpoint whose every attempt has failed this long is disabled",
    )


@dataclass(frozen=True)
class DlqSettings:
    """The dead-letter queue: retention, replay, and auto-redrive."""

    retention_s: float = seconds(
        30 * 86400.0, "PIXHOOK_DLQ_RETENTION", "how long dead deliveries are kept"
    )
    replay_rate: float = rate(
        50.0, "PIXHOOK_DLQ_REPLAY_RATE", "deliveries per second a replay re-queues"
    )
    redrive_batch: int = at_least(
        0,
        100,
        "PIXHOOK_DLQ_REDRIVE_BATCH",
        "dead deliveries re-queued per minute when their host and port accept a delivery again "
        "— never a 410 or a refusal, at most 3 times each (docs/delivery-engine.md); `0` turns "
        "auto-redrive off",
    )
    redrive_rate: float = rate(
        10.0, "PIXHOOK_DLQ_REDRIVE_RATE", "deliveries per second an auto-redrive re-queues"
    )
