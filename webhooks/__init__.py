"""pixhook's webhook delivery engine: Standard Webhooks signing, sending, retries, the
dead-letter queue and the SSRF guard. It knows nothing of images or jobs; `service` uses it,
never the reverse, and only through the names below (pinned by tests/test_exported_members.py).

    engine = Engine(redis, EngineConfig(sealer=..., slack_wording=...), owner_secrets)
    await engine.publish(Event("job.completed", event_id, data), owner=..., ...)
    await engine.run()  # in a delivery worker, until engine.stop(grace_s)
"""

from webhooks.circuit import CircuitPolicy, Circuits
from webhooks.dispatcher import DeliveryPolicy
from webhooks.dlq import DeadLetters, DlqFilter, DlqPolicy
from webhooks.endpoints import (
    ENDPOINT_DISABLED,
    KINDS,
    Endpoint,
    EndpointHealth,
    EndpointKind,
    EndpointStore,
    new_endpoint_id,
    reenabled,
)
from webhooks.engine import Engine, EngineConfig
from webhooks.errors import (
    GuardRefused,
    InvalidDuration,
    InvalidNetwork,
    InvalidSealKey,
    InvalidSecret,
    InvalidTemplate,
    InvalidWebhook,
    SealBroken,
    WebhookError,
)
from webhooks.events import event_body, utc_timestamp
from webhooks.fanout import Event
from webhooks.guard import DNS_FAILURE, FORBIDDEN_ADDRESS, GuardedTransport, UrlPolicy
from webhooks.keys import Keys
from webhooks.metrics import (
    HISTORY_TTL_S,
    DeliveryGauges,
    DeliveryMetrics,
    delivery_metric_families,
    recent_history,
)
from webhooks.receiver import DEFAULT_TOLERANCE_S, verify
from webhooks.schedule import RetrySchedule, parse_duration
from webhooks.sealing import Sealer
from webhooks.sender import AttemptResult, parse_retry_after
from webhooks.signing import generate_secret, secret_key, sign, webhook_headers
from webhooks.slack import SlackWording, is_slack_url
from webhooks.slack_templates import Mrkdwn, check_templates, escape_mrkdwn
from webhooks.store import (
    STATUSES,
    Attempt,
    Delivery,
    DeliveryStatus,
    DeliveryStore,
    Outcome,
    host_of,
)

__all__ = [
    "Attempt",
    "AttemptResult",
    "CircuitPolicy",
    "Circuits",
    "DEFAULT_TOLERANCE_S",
    "DNS_FAILURE",
    "DeadLetters",
    "Delivery",
    "DeliveryGauges",
    "DeliveryMetrics",
    "DeliveryPolicy",
    "DeliveryStatus",
    "DeliveryStore",
    "DlqFilter",
    "DlqPolicy",
    "ENDPOINT_DISABLED",
    "Endpoint",
    "EndpointHealth",
    "EndpointKind",
    "EndpointStore",
    "Engine",
    "EngineConfig",
    "Event",
    "FORBIDDEN_ADDRESS",
    "GuardRefused",
    "GuardedTransport",
    "HISTORY_TTL_S",
    "InvalidDuration",
    "InvalidNetwork",
    "InvalidSealKey",
    "InvalidSecret",
    "InvalidTemplate",
    "InvalidWebhook",
    "KINDS",
    "Keys",
    "Mrkdwn",
    "Outcome",
    "RetrySchedule",
    "STATUSES",
    "SealBroken",
    "Sealer",
    "SlackWording",
    "UrlPolicy",
    "WebhookError",
    "check_templates",
    "delivery_metric_families",
    "escape_mrkdwn",
    "event_body",
    "generate_secret",
    "host_of",
    "is_slack_url",
    "new_endpoint_id",
    "parse_duration",
    "parse_retry_after",
    "recent_history",
    "reenabled",
    "secret_key",
    "sign",
    "utc_timestamp",
    "verify",
    "webhook_headers",
]
