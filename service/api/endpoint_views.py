"""What callers see of an endpoint and of its health (the models are in
service/api/endpoint_view_models.py)."""

from __future__ import annotations

import math
from typing import Any

from service.api.endpoint_view_models import EndpointStats, EndpointView
from service.jobs.views import iso
from webhooks import Endpoint, EndpointHealth, EndpointStore, SealBroken

# Enough of a header value to tell two tokens apart, never enough to use one.
_SHOWN_CHARS = 4
_HIDDEN = "****"


def endpoint_view(endpoint: Endpoint, store: EndpointStore, public_url: str) -> dict[str, Any]:
    base = f"{public_url}/v1/endpoints/{endpoint.id}"
    rotating = [s.expires_at for s in endpoint.secrets if s.expires_at is not None]
    return EndpointView.render(
        {
            "id": endpoint.id,
            "object": "endpoint",
            "url": endpoint.url,
            "kind": endpoint.kind,
            "description": endpoint.description,
            "event_types": list(endpoint.event_types),
            "filter": {
                "job_types": list(endpoint.job_types),
                "metadata": dict(endpoint.metadata_filter),
            },
            "enabled": endpoint.enabled,
            "disabled_reason": endpoint.disabled_reason,
            "disabled_at": iso(endpoint.disabled_at),
            "headers": {name: _hint(store, sealed) for name, sealed in endpoint.headers.items()},
            "templates": endpoint.templates,
            "previous_secret_expires_at": iso(max(rotating)) if rotating else None,
            "created_at": iso(endpoint.created_at),
            "updated_at": iso(endpoint.updated_at),
            "urls": {
                "self": base,
                "test": f"{base}/test",
                "stats": f"{base}/stats",
                "rotate_secret": f"{base}/secret/rotate",
            },
        }
    )


def _hint(store: EndpointStore, sealed: str) -> str:
    try:
        value = store.sealer.open(sealed)
    except SealBroken:
        return "(unreadable: the sealing key changed)"
    # Short values would be mostly shown by their last characters: show nothing of them.
    return _HIDDEN + value[-_SHOWN_CHARS:] if len(value) >= 16 else _HIDDEN


def stats_view(endpoint: Endpoint, health: EndpointHealth) -> dict[str, Any]:
    recent, rate = health.recent, health.recent_success_rate
    durations = sorted(duration for _, duration, _ in recent)
    return EndpointStats.render(
        {
            "endpoint_id": endpoint.id,
            "attempts": health.attempts,
            "succeeded": health.succeeded,
            "recent": {
                "attempts": len(recent),
                "since": iso(recent[0][2]) if recent else None,
                "success_rate": None if rate is None else round(rate, 4),
                "latency_ms": (
                    {
                        "p50": _percentile(durations, 50),
                        "p90": _percentile(durations, 90),
                        "p99": _percentile(durations, 99),
                        "max": durations[-1],
                    }
                    if durations
                    else None
                ),
            },
            "failing_since": iso(health.failing_since),
            "last_success_at": iso(health.last_success_at),
            "last_failure": _failure_view(health.last_failure),
        }
    )


def _percentile(ordered: list[float], percent: int) -> float:
    """Nearest rank: a duration some attempt really took."""
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def _failure_view(failure: dict[str, Any] | None) -> dict[str, Any] | None:
    if not failure:
        return None
    return {**failure, "at": iso(failure["at"])}
