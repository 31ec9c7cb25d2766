"""The price table: its defaults as docs/providers.md lists them, the operator's overrides, and
a call's cost to the token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import ConfigError, Settings
from service.config.prices import DEFAULT_PRICES, Price
from service.providers.chat import TokenUsage
from service.providers.prices import cost_usd

DOCS = Path(__file__).parent.parent / "docs" / "providers.md"


def test_docs_list_every_default_price():
    rows = re.findall(
        r"^\| (\w+)/([\w.-]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", DOCS.read_text(), re.M
    )

    documented = {(p, m): Price(float(i), float(o), float(c)) for p, m, i, o, c in rows}

    assert documented == DEFAULT_PRICES.as_dict()


def test_cost_is_exact_to_the_token():
    settings = Settings()
    usage = TokenUsage(input_tokens=1_234, output_tokens=567, cached_input_tokens=89)

    cost = cost_usd(settings, "anthropic", "claude-haiku-4-5", usage)

    assert cost == pytest.approx((1_234 * 1.00 + 567 * 5.00 + 89 * 0.10) / 1_000_000, abs=1e-12)


def test_an_unpriced_model_costs_null_not_zero():
    assert cost_usd(Settings(), "openai", "my-own-model", TokenUsage(10, 10)) is None


def test_the_operator_overrides_and_adds_models(tmp_path):
    table = tmp_path / "prices.json"
    table.write_text(
        '{"openai/gpt-4o": {"input": 1, "output": 2}, "openai/mine": '
        '{"input": 0.5, "output": 1, "cached_input": 0.25}}'
    )

    prices = Settings.from_env({"PIXHOOK_PROVIDER_PRICES": f"@{table}"}).providers.prices

    assert prices.get(("openai", "gpt-4o")) == Price(1.0, 2.0, 1.0)
    assert prices.get(("openai", "mine")) == Price(0.5, 1.0, 0.25)
    assert prices.get(("anthropic", "claude-haiku-4-5")) == DEFAULT_PRICES.get(
        ("anthropic", "claude-haiku-4-5")
    )


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("[1, 2]", "JSON object"),
        ('{"gpt-4o": {"input": 1, "output": 2}}', "provider/model"),
        ('{"openai/x": {"input": 1}}', "at least input and output"),
        ('{"openai/x": {"input": -1, "output": 2}}', "number ≥ 0"),
        ('{"openai/x": {"input": 1, "output": 2, "cache": 1}}', "unknown field 'cache'"),
        ("{not json", "not JSON"),
    ],
)
def test_a_bad_price_table_is_refused_at_start_naming_the_variable(raw, says):
    with pytest.raises(ConfigError, match="PIXHOOK_PROVIDER_PRICES") as refused:
        Settings.from_env({"PIXHOOK_PROVIDER_PRICES": raw})

    assert says in str(refused.value)
