"""Settings: one frozen object of sections, read once from `PIXHOOK_*` environment variables."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar, get_type_hints

from service.config.delivering import DeliverySettings, DlqSettings, EndpointSettings
from service.config.fields import ConfigError, Declared, section_fields
from service.config.serving import (
    ApiSettings,
    ClientSettings,
    ConsoleSettings,
    LoggingSettings,
    RedisSettings,
    StorageSettings,
)
from service.config.work import BatchSettings, JobSettings, LimitSettings, ProviderSettings
from service.json_shape import JsonShape
from service.storage import parse_s3_spec
from webhooks import CircuitPolicy, DeliveryPolicy, DlqPolicy, InvalidSealKey, Sealer

Section = TypeVar("Section")


@dataclass(frozen=True)
class Settings:
    """Sections in the order docs/configuration.md lists them."""

    redis: RedisSettings = field(default_factory=RedisSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    batches: BatchSettings = field(default_factory=BatchSettings)
    clients: ClientSettings = field(default_factory=ClientSettings)
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    deliveries: DeliverySettings = field(default_factory=DeliverySettings)
    endpoints: EndpointSettings = field(default_factory=EndpointSettings)
    dlq: DlqSettings = field(default_factory=DlqSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Each setting from its `PIXHOOK_*` variable; unset or empty ones keep the default."""
        settings = cls(**{name: read_section(section, environ) for name, section in sections()})
        settings.check()
        return settings

    def check(self) -> None:
        location = self.storage.location
        if location.startswith("s3://"):
            try:
                parse_s3_spec(location)
            except ValueError as exc:
                raise ConfigError("PIXHOOK_STORAGE", str(exc)) from exc
        elif not location.startswith("local:"):
            raise ConfigError(
                "PIXHOOK_STORAGE", f"{location!r} is neither local:DIR nor s3://bucket[/prefix]"
            )
        if self.endpoints.encryption_keys:
            try:
                Sealer(self.endpoints.encryption_keys)
            except InvalidSealKey as exc:
                raise ConfigError("PIXHOOK_ENCRYPTION_KEYS", str(exc)) from exc
        public_base = self.storage.s3_public_base_url
        if public_base and not public_base.startswith(("http://", "https://")):
            raise ConfigError("PIXHOOK_S3_PUBLIC_BASE_URL", "use an http:// or https:// URL")
        if public_base and not location.startswith("s3://"):
            raise ConfigError(
                "PIXHOOK_S3_PUBLIC_BASE_URL", "public outputs need S3 storage (PIXHOOK_STORAGE)"
            )
        endpoint_url = self.storage.s3_endpoint_url
        if endpoint_url and not endpoint_url.startswith(("http://", "https://")):
            raise ConfigError("PIXHOOK_S3_ENDPOINT_URL", "use an http:// or https:// URL")

    def require_secret_key(self) -> None:
        """The API and workers sign file links; other commands do not need the key."""
        if len(self.api.secret_key) < 16:
            raise ConfigError(
                "PIXHOOK_SECRET_KEY",
                "set at least 16 random characters; file URLs are signed with it",
            )

    @property
    def sealer(self) -> Sealer:
        if self.endpoints.encryption_keys:
            return Sealer(self.endpoints.encryption_keys)
        return Sealer.derived_from(self.api.secret_key)

    @property
    def delivery_policy(self) -> DeliveryPolicy:
        d = self.deliveries
        return DeliveryPolicy(
            schedule=d.retry_schedule,
            connect_timeout_s=d.connect_timeout_s,
            attempt_deadline_s=d.attempt_timeout_s,
            response_cap_bytes=d.response_cap_bytes,
            throttled_backoff_s=d.throttled_backoff_s,
            max_retry_after_s=d.max_retry_after_s,
            max_in_flight=d.concurrency,
            per_host_connections=d.per_host_concurrency,
        )

    @property
    def circuit_policy(self) -> CircuitPolicy:
        d = self.deliveries
        return CircuitPolicy(
            threshold=d.circuit_threshold,
            cooldown_s=d.circuit_cooldown_s,
            max_cooldown_s=d.circuit_max_cooldown_s,
            probe_lease_s=d.attempt_timeout_s + 10,
        )

    @property
    def dlq_policy(self) -> DlqPolicy:
        return DlqPolicy(
            retention_s=self.dlq.retention_s,
            replay_rate_per_s=self.dlq.replay_rate,
            redrive_batch=self.dlq.redrive_batch,
            redrive_rate_per_s=self.dlq.redrive_rate,
        )

    @property
    def json_shape(self) -> JsonShape:
        limits = self.limits
        return JsonShape(limits.max_json_depth, limits.max_string_chars, limits.max_list_items)

    def listed_limits(self) -> dict[str, float]:
        """The limits callers can run into, as `/info` lists them, under the names API clients
        read there."""
        limits, providers, deliveries = self.limits, self.providers, self.deliveries
        return {
            "max_request_bytes": limits.max_request_bytes,
            "max_image_bytes": limits.max_image_bytes,
            "max_image_pixels": limits.max_image_pixels,
            "max_frames": limits.max_frames,
            "max_output_side": limits.max_output_side,
            "max_metadata_bytes": limits.max_metadata_bytes,
            "max_json_depth": limits.max_json_depth,
            "max_string_chars": limits.max_string_chars,
            "max_list_items": limits.max_list_items,
            "max_url_length": limits.max_url_length,
            "image_fetch_timeout_s": limits.image_fetch_timeout_s,
            "max_generate_side": limits.max_generate_side,
            "max_prompt_chars": limits.max_prompt_chars,
            "provider_timeout_s": providers.timeout_s,
            "provider_requests_per_minute": providers.requests_per_minute,
            "provider_tokens_per_minute": providers.tokens_per_minute,
            "job_timeout_s": self.jobs.timeout_s,
            "max_batch_items": limits.max_batch_items,
            "max_batch_bytes": limits.max_batch_bytes,
            "max_batch_upload_bytes": limits.max_batch_upload_bytes,
            "batch_concurrency": self.batches.concurrency,
            "batch_max_item_attempts": self.batches.max_item_attempts,
            "client_requests_per_second": self.clients.requests_per_second,
            "client_burst": self.clients.burst,
            "client_max_in_flight": self.clients.max_in_flight,
            "idempotency_key_ttl_s": self.api.idempotency_key_ttl_s,
            "file_url_ttl_s": self.storage.file_url_ttl_s,
            "webhook_attempt_timeout_s": deliveries.attempt_timeout_s,
            "webhook_response_cap_bytes": deliveries.response_cap_bytes,
            "dlq_retention_s": self.dlq.retention_s,
            "max_endpoints": limits.max_endpoints,
        }


def sections() -> Iterator[tuple[str, type[Any]]]:
    """Each section's attribute name and class, in order."""
    hints = get_type_hints(Settings)
    for f in fields(Settings):
        yield f.name, hints[f.name]


def declarations() -> Iterator[tuple[str, Declared]]:
    """Every setting as `section.field` with what its declaration says."""
    for name, section in sections():
        for f, declared in section_fields(section):
            yield f"{name}.{f.name}", declared


def read_section(section: type[Section], environ: Mapping[str, str]) -> Section:
    """One section from the environment, for a command that needs no other (the log format)."""
    values: dict[str, Any] = {}
    for f, declared in section_fields(section):
        raw = environ.get(declared.variable)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = declared.parse(raw)
        except ValueError as exc:
            raise ConfigError(declared.variable, str(exc)) from exc
    return section(**values)
