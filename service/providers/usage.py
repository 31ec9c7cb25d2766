"""What a job paid its provider, read from the job's output: the one place that knows where a
job's output keeps its provider call (`output.provider`: name, model, usage, cost_usd, cached).

A job whose answer came from pixhook's cache paid nothing: its usage is zero and its cost 0,
whatever the original call used.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from service.providers.chat import TokenUsage


class JobUsage(NamedTuple):
    provider: str
    model: str
    usage: TokenUsage
    # None: the model has no price (PIXHOOK_PROVIDER_PRICES).
    cost_usd: float | None


def output_usage(output: dict[str, Any] | None) -> JobUsage | None:
    """The provider call a job's output says it paid for, or None when it made none."""
    provider = (output or {}).get("provider")
    if not isinstance(provider, dict) or not isinstance(provider.get("usage"), dict):
        return None
    name, model = str(provider.get("name", "")), str(provider.get("model", ""))
    if provider.get("cached"):
        return JobUsage(name, model, TokenUsage(), 0.0)
    raw, cost = provider["usage"], provider.get("cost_usd")
    usage = TokenUsage(
        _count(raw.get("input_tokens")),
        _count(raw.get("output_tokens")),
        _count(raw.get("cached_input_tokens")),
    )
    return JobUsage(name, model, usage, float(cost) if cost is not None else None)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
