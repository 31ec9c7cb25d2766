"""What a job paid its provider, read from the job's output: the one place that knows where a
job's output keeps its provider call (`output.provider`: name, model, usage, cost_usd, cached).

A job whose answer came from pixhook's cache paid nothing: its usage is zero and its cost 0,
whatever the original call used.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from service.config import Settings
from service.jobs.model import Job
from service.providers.chat import TokenUsage
from service.providers.prices import cost_usd


class JobUsage(NamedTuple):
    provider: str
    model: str
    usage: TokenUsage
    # None: the model has no price (PIXHOOK_PROVIDER_PRICES).
    cost_usd: float | None


def job_usage(job: Job, settings: Settings) -> JobUsage | None:
    """The provider call the job paid for, or None when it made none."""
    return output_usage(job.output, settings)


def output_usage(output: dict[str, Any] | None, settings: Settings) -> JobUsage | None:
    provider = (output or {}).get("provider")
    if not isinstance(provider, dict) or not isinstance(provider.get("usage"), dict):
        return None
    name, model = str(provider.get("name", "")), str(provider.get("model", ""))
    if provider.get("cached"):
        return JobUsage(name, model, TokenUsage(), 0.0)
    usage = _token_usage(provider["usage"])
    cost = provider.get("cost_usd")
    if "cost_usd" not in provider:
        cost = cost_usd(settings, name, model, usage)
    return JobUsage(name, model, usage, float(cost) if cost is not None else None)


def _token_usage(raw: dict[str, Any]) -> TokenUsage:
    if "input_tokens" in raw:
        return TokenUsage(
            _count(raw.get("input_tokens")),
            _count(raw.get("output_tokens")),
            _count(raw.get("cached_input_tokens")),
        )
    # OpenAI's own shape: its prompt tokens include the cached ones.
    details = raw.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(raw.get("prompt_tokens"))
    return TokenUsage(max(0, prompt - cached), _count(raw.get("completion_tokens")), cached)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
