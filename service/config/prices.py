"""What each model costs, per million tokens, and the operator's overrides of it.

Defaults are the providers' list prices for the models pixhook names in its docs; an operator
whose contract differs, or who runs another model, sets `PIXHOOK_PROVIDER_PRICES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float


# (provider, model) → price. Cached input: Anthropic's cache reads (0.1× input), OpenAI's cached
# prompt tokens.
_LIST_PRICES = {
    ("anthropic", "claude-haiku-4-5"): Price(1.00, 5.00, 0.10),
    ("anthropic", "claude-sonnet-4-5"): Price(3.00, 15.00, 0.30),
    ("anthropic", "claude-opus-4-1"): Price(15.00, 75.00, 1.50),
    ("anthropic", "claude-3-5-haiku-latest"): Price(0.80, 4.00, 0.08),
    ("openai", "gpt-4o-mini"): Price(0.15, 0.60, 0.075),
    ("openai", "gpt-4o"): Price(2.50, 10.00, 1.25),
    ("openai", "gpt-4.1-mini"): Price(0.40, 1.60, 0.10),
    ("openai", "gpt-4.1"): Price(2.00, 8.00, 0.50),
    ("openai", "gpt-image-1"): Price(5.00, 40.00, 1.25),
}


@dataclass(frozen=True)
class PriceTable:
    """Prices by (provider, model); frozen and hashable, as a setting's default must be."""

    entries: tuple[tuple[tuple[str, str], Price], ...]

    def get(self, key: tuple[str, str]) -> Price | None:
        return dict(self.entries).get(key)

    def as_dict(self) -> dict[tuple[str, str], Price]:
        return dict(self.entries)


DEFAULT_PRICES = PriceTable(tuple(_LIST_PRICES.items()))


def parse_prices(raw: str) -> PriceTable:
    """`PIXHOOK_PROVIDER_PRICES`: a JSON object, or `@/path/to/file.json` holding one, of
    `"provider/model": {"input": 1.0, "output": 5.0, "cached_input": 0.1}`; each entry adds a
    model or replaces a default (cached_input defaults to input)."""
    text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(table, dict):
        raise ValueError('must be a JSON object of "provider/model": prices')
    prices = DEFAULT_PRICES.as_dict()
    for name, entry in table.items():
        provider, slash, model = str(name).partition("/")
        if not (slash and provider and model):
            raise ValueError(f'{name!r}: name each model as "provider/model"')
        prices[(provider, model)] = _price(name, entry)
    return PriceTable(tuple(prices.items()))


def _price(name: str, entry: object) -> Price:
    if not isinstance(entry, dict) or not {"input", "output"} <= entry.keys():
        raise ValueError(f"{name!r}: give at least input and output (USD per million tokens)")
    unknown = entry.keys() - {"input", "output", "cached_input"}
    if unknown:
        raise ValueError(f"{name!r}: unknown field {sorted(unknown)[0]!r}")
    values = {key: entry[key] for key in ("input", "output", "cached_input") if key in entry}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{name!r}: {key} must be a number ≥ 0")
    return Price(
        float(values["input"]),
        float(values["output"]),
        float(values.get("cached_input", values["input"])),
    )
