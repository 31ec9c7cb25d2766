"""Settings of the work itself: input limits, jobs, batches and the image providers."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.fields import (
    at_least,
    count,
    flag,
    fraction,
    rate,
    seconds,
    secret_list,
    setting,
    text,
    url,
    within,
)
from service.config.prices import DEFAULT_PRICES, PriceTable, parse_prices
from service.imaging.formats import DEFAULT_WEBP_EFFORT, WEBP_EFFORTS
from service.output_names import parse_template

MiB = 1024 * 1024


@dataclass(frozen=True)
class LimitSettings:
    """What one request may hold and ask for: the caps callers run into."""

    max_request_bytes: int = count(
        32 * MiB,
        "PIXHOOK_MAX_REQUEST_BYTES",
        "request body cap, enforced while streaming (413)",
    )
    max_image_bytes: int = count(
        20 * MiB, "PIXHOOK_MAX_IMAGE_BYTES", "decoded input image cap (422 `IMAGE_TOO_LARGE`)"
    )
    max_image_pixels: int = count(
        50_000_000, "PIXHOOK_MAX_IMAGE_PIXELS", "pixel cap, read from the header before decoding"
    )
    # Only the first frame is used, but counting a huge animation is still work worth refusing.
    max_frames: int = count(
        1000,
        "PIXHOOK_MAX_FRAMES",
        "frames an animation may have (`TOO_MANY_FRAMES`); counting stops there",
    )
    image_check_timeout_s: float = seconds(
        2.0,
        "PIXHOOK_IMAGE_CHECK_TIMEOUT",
        "deadline for reading an image's headers and counting its frames, in a thread "
        "(`IMAGE_TOO_COMPLEX`)",
    )
    max_output_side: int = count(
        8192,
        "PIXHOOK_MAX_OUTPUT_SIDE",
        "largest `width`/`height` accepted, and the largest side of any output "
        "(`OUTPUT_SIDE_TOO_LARGE`)",
    )
    max_metadata_bytes: int = count(4096, "PIXHOOK_MAX_METADATA_BYTES", "`metadata` size as JSON")
    max_json_depth: int = count(32, "PIXHOOK_MAX_JSON_DEPTH", "nesting of any JSON body")
    max_string_chars: int = count(
        8192,
        "PIXHOOK_MAX_STRING_CHARS",
        "one string of any JSON body (a base64 image is held to `PIXHOOK_MAX_IMAGE_BYTES` "
        "instead; 422 with the place)",
    )
    max_list_items: int = count(100_000, "PIXHOOK_MAX_LIST_ITEMS", "one list of any JSON body")
    max_url_length: int = count(
        2048, "PIXHOOK_MAX_URL_LENGTH", "`webhook_url` and `input.image.url` length"
    )
    image_fetch_timeout_s: float = seconds(
        20.0, "PIXHOOK_IMAGE_FETCH_TIMEOUT", "deadline for each try at downloading an image URL"
    )
    max_generate_side: int = count(
        2048, "PIXHOOK_MAX_GENERATE_SIDE", "largest side `image.generate` may ask for"
    )
    max_prompt_chars: int = count(
        4000, "PIXHOOK_MAX_PROMPT_CHARS", "longest prompt `image.generate` takes"
    )
    max_batch_items: int = count(
        1_000_000,
        "PIXHOOK_MAX_BATCH_ITEMS",
        "items in one batch (`BATCH_TOO_LARGE`); each takes about 200 bytes of Redis "
        "while the batch runs (docs/operations.md, Batch sizes)",
    )
    max_batch_bytes: int = count(
        32 * MiB,
        "PIXHOOK_MAX_BATCH_BYTES",
        "a JSON batch body, or the `batch` part of an upload (413 beyond it)",
    )
    max_batch_upload_bytes: int = count(
        2048 * MiB,
        "PIXHOOK_MAX_BATCH_UPLOAD_BYTES",
        "a batch's multipart upload, or the file at its `items_url`, read as it arrives "
        "(413 `PAYLOAD_TOO_LARGE` beyond it)",
    )
    max_endpoints: int = count(
        50, "PIXHOOK_MAX_ENDPOINTS", "endpoints per client (422 `TOO_MANY_ENDPOINTS`)"
    )


@dataclass(frozen=True)
class JobSettings:
    """Running jobs: how long, how many at once, how much memory, how long they are kept."""

    timeout_s: float = seconds(
        300.0, "PIXHOOK_JOB_TIMEOUT", "a job running longer fails with `JOB_TIMEOUT`"
    )
    concurrency: int = count(4, "PIXHOOK_JOB_CONCURRENCY", "jobs one `jobs` worker runs at once")
    # What one jobs worker's image decodes may hold together (service/imaging/decode_budget.py): a
    # 49 MP PNG's thumbnail takes ~210 MiB, a 49 MP WebP's ~790 MiB, a 24 MP JPEG's ~10 MiB.
    decode_budget_bytes: int = count(
        800 * MiB,
        "PIXHOOK_DECODE_BUDGET_BYTES",
        "what one `jobs` worker's image decodes hold together; a decode waits for room, one "
        "that could never fit fails with `DECODE_TOO_LARGE` (docs/operations.md, Sizing)",
    )
    retention_s: float = seconds(
        7 * 86400.0,
        "PIXHOOK_JOB_RETENTION",
        "how long job records (and succeeded deliveries) are kept",
    )
    # Live event streams are for watching and resuming, not for history (the job record keeps
    # its final state): an hour after their last event they go, about 5 KB per job.
    event_retention_s: float = seconds(
        3600.0,
        "PIXHOOK_EVENT_RETENTION",
        "how long a job's or batch's live event stream is kept after its last event (the job "
        "record stays for `PIXHOOK_JOB_RETENTION`)",
    )
    # Renewed every third of it while the holder works: only a holder that died lets it lapse.
    flight_lease_s: float = seconds(
        30.0,
        "PIXHOOK_FLIGHT_LEASE",
        "how long a dead worker can hold up identical work: the first job to ask for a vision "
        "answer leases it, identical jobs wait for its answer, and take over once a dead "
        "holder's lease lapses",
    )
    output_name: str = setting(
        "",
        "PIXHOOK_OUTPUT_NAME",
        "the `output_name` of jobs and batches that give none, e.g. `{reference}/{variant}.{ext}`; "
        "a job it cannot name (no `reference` for `{reference}`...) keeps its own folder",
        parse_template,
        kind="template",
        shown_default="— (each job's own folder)",
    )
    webp_effort: int = within(
        WEBP_EFFORTS,
        DEFAULT_WEBP_EFFORT,
        "PIXHOOK_WEBP_EFFORT",
        "`effort` of WebP outputs that set none, 0 (fastest) to 6 (smallest); docs/decisions.md "
        "says why 2",
    )


@dataclass(frozen=True)
class BatchSettings:
    """How many of a batch's items run at once, and how often it reports progress: a big batch
    takes its share of the workers, never all of them."""

    concurrency: int = count(
        16, "PIXHOOK_BATCH_CONCURRENCY", "items of one batch queued or running at once"
    )
    client_concurrency: int = count(
        64,
        "PIXHOOK_CLIENT_BATCH_CONCURRENCY",
        "items of all one client's batches queued or running at once",
    )
    progress_interval_s: float = seconds(
        5.0,
        "PIXHOOK_BATCH_PROGRESS_INTERVAL",
        "at most one `batch.progress` event per this many seconds (or per 5% of the items)",
    )
    max_item_attempts: int = count(
        10,
        "PIXHOOK_BATCH_MAX_ITEM_ATTEMPTS",
        "the most a batch's `item_attempts` may be: runs of one item whose failures may pass "
        "(its default is 3, or this when lower)",
    )
    item_retry_backoff_s: float = seconds(
        2.0,
        "PIXHOOK_BATCH_ITEM_RETRY_BACKOFF",
        "the wait before an item's second attempt, doubling for each further one (jittered)",
    )
    item_retry_max_backoff_s: float = seconds(
        60.0,
        "PIXHOOK_BATCH_ITEM_RETRY_MAX_BACKOFF",
        "the longest wait between two attempts of an item",
    )


@dataclass(frozen=True)
class ProviderSettings:
    """The providers behind `image.analyze`, `image.generate` and `text.generate` (Anthropic's
    Messages API and an OpenAI-compatible API), their keys, prices, and the rate limits all
    workers share: each limit holds per key and model."""

    openai_base_url: str = url(
        "",
        "PIXHOOK_OPENAI_BASE_URL",
        "an OpenAI-compatible API (e.g. `https://api.openai.com`); without it provider-backed "
        "jobs fail with `PROVIDER_NOT_CONFIGURED`",
    )
    openai_api_key: str = text(
        "", "PIXHOOK_OPENAI_API_KEY", "its API key (never logged or shown)", secret=True
    )
    openai_api_keys: tuple[str, ...] = secret_list(
        "PIXHOOK_OPENAI_API_KEYS",
        "several keys (with `PIXHOOK_OPENAI_API_KEY`, if set): calls spread over them, each with "
        "its own limits; a key refused with 401/403 leaves the rotation",
    )
    openai_image_model: str = text(
        "gpt-image-1", "PIXHOOK_OPENAI_IMAGE_MODEL", "the default `model` of `image.generate`"
    )
    openai_vision_model: str = text(
        "gpt-4o-mini",
        "PIXHOOK_OPENAI_VISION_MODEL",
        'the default `model` of `image.analyze` with `provider: "openai"`',
    )
    openai_text_model: str = text(
        "gpt-4o-mini", "PIXHOOK_OPENAI_TEXT_MODEL", "the default `model` of `text.generate`"
    )
    anthropic_base_url: str = url(
        "https://api.anthropic.com",
        "PIXHOOK_ANTHROPIC_BASE_URL",
        "Anthropic's Messages API; used once `PIXHOOK_ANTHROPIC_API_KEYS` holds a key",
    )
    anthropic_api_keys: tuple[str, ...] = secret_list(
        "PIXHOOK_ANTHROPIC_API_KEYS",
        "Anthropic API keys: calls spread over them, each with its own limits; a key refused "
        "with 401/403 leaves the rotation",
    )
    anthropic_vision_model: str = text(
        "claude-haiku-4-5",
        "PIXHOOK_ANTHROPIC_VISION_MODEL",
        'the default `model` of `image.analyze` with `provider: "anthropic"`',
    )
    anthropic_text_model: str = text(
        "claude-haiku-4-5",
        "PIXHOOK_ANTHROPIC_TEXT_MODEL",
        'the default `model` of `text.generate` with `provider: "anthropic"`',
    )
    readyz_providers: bool = flag(
        False,
        "PIXHOOK_READYZ_PROVIDERS",
        "`/readyz` answers 503 while a configured provider has no key in rotation",
    )
    timeout_s: float = seconds(120.0, "PIXHOOK_PROVIDER_TIMEOUT", "one provider request's timeout")
    max_attempts: int = count(4, "PIXHOOK_PROVIDER_MAX_ATTEMPTS", "provider attempts per job")
    backoff_s: float = seconds(
        1.0, "PIXHOOK_PROVIDER_BACKOFF", "the first back-off between attempts (doubling, jittered)"
    )
    requests_per_minute: float = rate(
        500.0,
        "PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE",
        "the provider's request rate per key and model, shared by all workers through Redis",
    )
    burst: int = count(10, "PIXHOOK_PROVIDER_BURST", "provider requests above the rate at once")
    concurrency: int = count(
        8, "PIXHOOK_PROVIDER_CONCURRENCY", "provider calls in flight across all workers"
    )
    tokens_per_minute: int = at_least(
        0,
        0,
        "PIXHOOK_PROVIDER_TOKENS_PER_MINUTE",
        "the provider's token rate per model: each call is charged an estimate first, then its "
        "actual `usage.total_tokens`",
        shown_default="`0` (no limit)",
    )
    # On a 429 the shared rate halves, down to this share of the configured one; it climbs back
    # linearly, from nothing to the full rate in `rate_recovery_s`.
    min_rate_factor: float = fraction(
        0.1,
        "PIXHOOK_PROVIDER_MIN_RATE_FACTOR",
        "each 429 halves the shared rates, down to this share",
    )
    rate_recovery_s: float = seconds(
        60.0,
        "PIXHOOK_PROVIDER_RATE_RECOVERY",
        "the shared rates climb back linearly, from nothing to the full rate in this time; "
        "`Retry-After` pauses every worker (at most 60 s)",
    )
    stream: bool = flag(
        True,
        "PIXHOOK_PROVIDER_STREAM",
        "stream `image.analyze`'s chat completion, forwarding the model's text to the job's "
        "events; `false` makes one plain call",
    )
    vision_max_side: int = count(
        2048,
        "PIXHOOK_VISION_MAX_SIDE",
        "photos are downscaled to this before upload (and further if they would weigh over 5 MB)",
    )
    prices: PriceTable = setting(
        DEFAULT_PRICES,
        "PIXHOOK_PROVIDER_PRICES",
        "USD per million tokens by model, over the built-in list prices: a JSON object (or "
        '`@file.json`) of `"provider/model": {"input": 3, "output": 15, "cached_input": 0.3}`; '
        "a model without a price is used, but its cost is unknown (`null`)",
        parse_prices,
        kind="JSON object",
        shown_default="list prices of the Claude and GPT models in docs/providers.md",
    )
    vision_cache_ttl_s: float = seconds(
        30 * 86400.0, "PIXHOOK_VISION_CACHE_TTL", "how long vision answers are cached"
    )

    def keys(self, provider: str) -> tuple[str, ...]:
        """The provider's API keys, in the order given."""
        if provider == "anthropic":
            return self.anthropic_api_keys
        single = (self.openai_api_key,) if self.openai_api_key else ()
        return tuple(dict.fromkeys(single + self.openai_api_keys))

    def base_url(self, provider: str) -> str:
        """Where the provider answers; empty when it is not configured."""
        if provider == "anthropic":
            return self.anthropic_base_url if self.anthropic_api_keys else ""
        return self.openai_base_url
