"""What a call cost, from its usage and the price table in settings."""

from __future__ import annotations

from service.config import Settings
from service.providers.chat import TokenUsage


def cost_usd(settings: Settings, provider: str, model: str, usage: TokenUsage) -> float | None:
    """US dollars, or None for a model the table does not price."""
    price = settings.providers.prices.get((provider, model))
    if price is None:
        return None
    micro_dollars = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cached_input_tokens * price.cached_input
    )
    # Rounded to a millionth of a cent: sums over a batch stay exact enough to compare to a budget.
    return round(micro_dollars / 1_000_000, 8)
