"""Settings: one frozen object read from `PIXHOOK_*` environment variables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from service.imaging.formats import DEFAULT_WEBP_EFFORT, WEBP_EFFORTS
from service.json_shape import JsonShape
from service.moments import parse_seconds
from service.redis_url import parse_redis_url
from service.storage import parse_s3_spec
from webhooks.circuit import CircuitPolicy
from webhooks.dispatcher import DeliveryPolicy
from webhooks.dlq import DlqPolicy
from webhooks.guard import UrlPolicy
from webhooks.schedule import RetrySchedule
from webhooks.sealing import InvalidSealKey, Sealer

T = TypeVar("T")
MiB = 1024 * 1024


class ConfigError(ValueError):
    """An environment variable holds a value pixhook cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    storage: str = "local:./var/files"
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = field(default="", repr=False)
    file_url_ttl_s: float = 86400.0
    max_request_bytes: int = 32 * MiB
    max_image_bytes: int = 20 * MiB
    max_image_pixels: int = 50_000_000
    # Only the first frame is used, but counting a huge animation is still work worth refusing.
    max_frames: int = 1000
    # Reading an image's headers and counting its frames, in a thread: past this it is refused.
    image_check_timeout_s: float = 2.0
    max_output_side: int = 8192
    # For WebP outputs that name no `effort` of their own.
    webp_effort: int = DEFAULT_WEBP_EFFORT
    max_metadata_bytes: int = 4096
    # The shape of any JSON body: nesting, one string (a base64 image excepted), one list.
    max_json_depth: int = 32
    max_string_chars: int = 8192
    max_list_items: int = 100_000
    max_url_length: int = 2048
    image_fetch_timeout_s: float = 20.0
    openai_base_url: str = ""
    openai_api_key: str = field(default="", repr=False)
    openai_image_model: str = "gpt-image-1"
    provider_timeout_s: float = 120.0
    provider_max_attempts: int = 4
    provider_backoff_s: float = 1.0
    provider_requests_per_minute: float = 500.0
    provider_burst: int = 10
    provider_concurrency: int = 8
    provider_tokens_per_minute: int = 0  # 0: no token limit
    # On a 429 the shared rate halves, down to this share of the configured one; it climbs back
    # linearly, from nothing to the full rate in `provider_rate_recovery_s`.
    provider_min_rate_factor: float = 0.1
    provider_rate_recovery_s: float = 60.0
    # Stream chat completions (image.analyze), forwarding the model's text as it arrives.
    provider_stream: bool = True
    openai_vision_model: str = "gpt-4o-mini"
    vision_max_side: int = 2048
    vision_cache_ttl_s: float = 30 * 86400.0
    max_generate_side: int = 2048
    max_prompt_chars: int = 4000
    job_timeout_s: float = 300.0
    job_concurrency: int = 4
    # What one jobs worker's image decodes may hold together (service/decode_budget.py): a
    # 49 MP PNG's thumbnail takes ~210 MiB, a 49 MP WebP's ~790 MiB, a 24 MP JPEG's ~10 MiB.
    decode_budget_bytes: int = 800 * MiB
    job_retention_s: float = 7 * 86400.0
    # Live event streams are for watching and resuming, not for history (the job record keeps
    # its final state): an hour after their last event they go, about 5 KB per job.
    event_retention_s: float = 3600.0
    # How often an idle event stream (SSE) sends a comment, so proxies keep it open.
    sse_heartbeat_s: float = 15.0
    max_batch_items: int = 10_000
    max_batch_bytes: int = 32 * 1024 * 1024
    # Items of one batch in flight at once, and of all one client's batches together: a big
    # batch takes its share of the workers, never all of them.
    batch_concurrency: int = 16
    client_batch_concurrency: int = 64
    # Per-client defaults; a client's own limits (`pixhook clients create --rate ...`) win. They
    # stop a runaway loop, not a busy integration: 100/s sustained (Stripe's), bursts of 200.
    client_requests_per_second: float = 100.0
    client_burst: int = 200
    client_max_in_flight: int = 1000  # jobs queued or running, batch items included
    idempotency_key_ttl_s: float = 86400.0
    batch_progress_interval_s: float = 5.0
    allow_private_networks: UrlPolicy = field(default_factory=UrlPolicy)
    delivery_concurrency: int = 256
    webhook_per_host_concurrency: int = 32
    webhook_retry_schedule: RetrySchedule = field(default_factory=RetrySchedule)
    webhook_connect_timeout_s: float = 5.0
    webhook_attempt_timeout_s: float = 15.0
    webhook_response_cap_bytes: int = 4096
    webhook_throttled_backoff_s: float = 60.0
    webhook_max_retry_after_s: float = 6 * 3600.0
    circuit_threshold: int = 5
    circuit_cooldown_s: float = 30.0
    circuit_max_cooldown_s: float = 600.0
    dlq_retention_s: float = 30 * 86400.0
    dlq_replay_rate: float = 50.0
    dlq_redrive_batch: int = 100
    dlq_redrive_rate: float = 10.0
    secret_rotation_overlap_s: float = 86400.0
    # Fernet keys sealing endpoint secrets and headers in Redis, the first one sealing; when
    # unset, one is derived from the secret key (which then must not change).
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    max_endpoints: int = 50
    # Signs the operator in to /console, seeing every client; unset, only API keys sign in,
    # each to its own client's records.
    console_password: str = field(default="", repr=False)
    # An endpoint whose every attempt has failed for this long is disabled (Svix's 5 days).
    endpoint_disable_after_s: float = 5 * 86400.0
    shutdown_grace_s: float = 20.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Field `x` (or `x_s`, in seconds) comes from `PIXHOOK_X`; unset ones keep the default."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            variable = env_name(f.name)
            raw = environ.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = _PARSERS[f.name](raw)
            except ValueError as exc:
                raise ConfigError(variable, str(exc)) from exc
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.storage.startswith("s3://"):
            try:
                parse_s3_spec(self.storage)
            except ValueError as exc:
                raise ConfigError("PIXHOOK_STORAGE", str(exc)) from exc
        elif not self.storage.startswith("local:"):
            raise ConfigError(
                "PIXHOOK_STORAGE", f"{self.storage!r} is neither local:DIR nor s3://bucket[/prefix]"
            )
        if self.encryption_keys:
            try:
                Sealer(self.encryption_keys)
            except InvalidSealKey as exc:
                raise ConfigError("PIXHOOK_ENCRYPTION_KEYS", str(exc)) from exc
        if self.s3_endpoint_url and not self.s3_endpoint_url.startswith(("http://", "https://")):
            raise ConfigError("PIXHOOK_S3_ENDPOINT_URL", "use an http:// or https:// URL")

    @property
    def sealer(self) -> Sealer:
        if self.encryption_keys:
            return Sealer(self.encryption_keys)
        return Sealer.derived_from(self.secret_key)

    def require_secret_key(self) -> None:
        """The API and workers sign file links; other commands do not need the key."""
        if len(self.secret_key) < 16:
            raise ConfigError(
                "PIXHOOK_SECRET_KEY",
                "set at least 16 random characters; file URLs are signed with it",
            )

    @property
    def delivery_policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(
            schedule=self.webhook_retry_schedule,
            connect_timeout_s=self.webhook_connect_timeout_s,
            attempt_deadline_s=self.webhook_attempt_timeout_s,
            response_cap_bytes=self.webhook_response_cap_bytes,
            throttled_backoff_s=self.webhook_throttled_backoff_s,
            max_retry_after_s=self.webhook_max_retry_after_s,
            max_in_flight=self.delivery_concurrency,
            per_host_connections=self.webhook_per_host_concurrency,
        )

    @property
    def circuit_policy(self) -> CircuitPolicy:
        return CircuitPolicy(
            threshold=self.circuit_threshold,
            cooldown_s=self.circuit_cooldown_s,
            max_cooldown_s=self.circuit_max_cooldown_s,
            probe_lease_s=self.webhook_attempt_timeout_s + 10,
        )

    @property
    def dlq_policy(self) -> DlqPolicy:
        return DlqPolicy(
            retention_s=self.dlq_retention_s,
            replay_rate_per_s=self.dlq_replay_rate,
            redrive_batch=self.dlq_redrive_batch,
            redrive_rate_per_s=self.dlq_redrive_rate,
        )

    @property
    def json_shape(self) -> JsonShape:
        return JsonShape(self.max_json_depth, self.max_string_chars, self.max_list_items)

    def limits(self) -> dict[str, float]:
        """The limits callers can run into, as `/info` lists them."""
        return {
            "max_request_bytes": self.max_request_bytes,
            "max_image_bytes": self.max_image_bytes,
            "max_image_pixels": self.max_image_pixels,
            "max_frames": self.max_frames,
            "max_output_side": self.max_output_side,
            "max_metadata_bytes": self.max_metadata_bytes,
            "max_json_depth": self.max_json_depth,
            "max_string_chars": self.max_string_chars,
            "max_list_items": self.max_list_items,
            "max_url_length": self.max_url_length,
            "image_fetch_timeout_s": self.image_fetch_timeout_s,
            "max_generate_side": self.max_generate_side,
            "max_prompt_chars": self.max_prompt_chars,
            "provider_timeout_s": self.provider_timeout_s,
            "provider_requests_per_minute": self.provider_requests_per_minute,
            "provider_tokens_per_minute": self.provider_tokens_per_minute,
            "job_timeout_s": self.job_timeout_s,
            "max_batch_items": self.max_batch_items,
            "max_batch_bytes": self.max_batch_bytes,
            "batch_concurrency": self.batch_concurrency,
            "client_requests_per_second": self.client_requests_per_second,
            "client_burst": self.client_burst,
            "client_max_in_flight": self.client_max_in_flight,
            "idempotency_key_ttl_s": self.idempotency_key_ttl_s,
            "file_url_ttl_s": self.file_url_ttl_s,
            "webhook_attempt_timeout_s": self.webhook_attempt_timeout_s,
            "webhook_response_cap_bytes": self.webhook_response_cap_bytes,
            "dlq_retention_s": self.dlq_retention_s,
            "max_endpoints": self.max_endpoints,
        }


def env_name(field_name: str) -> str:
    return "PIXHOOK_" + field_name.removesuffix("_s").upper()


def _positive(convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        value = convert(raw)
        if not value > 0:  # type: ignore[operator]
            raise ValueError(f"{raw!r} must be greater than 0")
        return value

    return parse


def _at_least(low: int, convert: Callable[[str], int]) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = convert(raw)
        if value < low:
            raise ValueError(f"{raw!r} must be at least {low}")
        return value

    return parse


def _within(allowed: range) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value not in allowed:
            raise ValueError(f"{raw!r} must be from {allowed[0]} to {allowed[-1]}")
        return value

    return parse


def _text(raw: str) -> str:
    return raw


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"{raw!r} is neither true nor false")
    return value in ("1", "true", "yes", "on")


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError(f"{raw!r} must be greater than 0 and at most 1")
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "redis_url": parse_redis_url,
    "storage": _text,
    "s3_endpoint_url": lambda raw: raw.rstrip("/"),
    "s3_region": _text,
    "public_url": lambda raw: raw.rstrip("/"),
    "secret_key": _text,
    "console_password": _text,
    "encryption_keys": lambda raw: tuple(key.strip() for key in raw.split(",") if key.strip()),
    "openai_base_url": lambda raw: raw.rstrip("/"),
    "openai_api_key": _text,
    "openai_image_model": _text,
    "openai_vision_model": _text,
    "provider_requests_per_minute": _positive(float),
    "provider_tokens_per_minute": _at_least(0, int),
    "provider_min_rate_factor": _fraction,
    "client_requests_per_second": _positive(float),
    "provider_stream": _flag,
    "webhook_retry_schedule": RetrySchedule.parse,
    "allow_private_networks": UrlPolicy.parse,
    "dlq_redrive_batch": _at_least(0, int),
    "webp_effort": _within(WEBP_EFFORTS),
    "dlq_replay_rate": _positive(float),
    "dlq_redrive_rate": _positive(float),
    **{
        name: _positive(int)
        for name in (
            "max_request_bytes",
            "max_image_bytes",
            "max_image_pixels",
            "max_frames",
            "max_output_side",
            "max_metadata_bytes",
            "max_json_depth",
            "max_string_chars",
            "max_list_items",
            "max_url_length",
            "max_generate_side",
            "provider_max_attempts",
            "provider_burst",
            "provider_concurrency",
            "vision_max_side",
            "max_prompt_chars",
            "job_concurrency",
            "decode_budget_bytes",
            "max_batch_items",
            "max_batch_bytes",
            "batch_concurrency",
            "client_batch_concurrency",
            "client_burst",
            "client_max_in_flight",
            "delivery_concurrency",
            "webhook_per_host_concurrency",
            "webhook_response_cap_bytes",
            "circuit_threshold",
            "max_endpoints",
        )
    },
    **{
        name: _positive(parse_seconds)
        for name in (
            "file_url_ttl_s",
            "job_timeout_s",
            "job_retention_s",
            "event_retention_s",
            "sse_heartbeat_s",
            "batch_progress_interval_s",
            "webhook_connect_timeout_s",
            "image_fetch_timeout_s",
            "image_check_timeout_s",
            "provider_timeout_s",
            "provider_backoff_s",
            "provider_rate_recovery_s",
            "vision_cache_ttl_s",
            "webhook_attempt_timeout_s",
            "webhook_throttled_backoff_s",
            "webhook_max_retry_after_s",
            "circuit_cooldown_s",
            "circuit_max_cooldown_s",
            "dlq_retention_s",
            "secret_rotation_overlap_s",
            "endpoint_disable_after_s",
            "idempotency_key_ttl_s",
            "shutdown_grace_s",
        )
    },
}
