"""Cost accounting to the token: a small `image.analyze` batch against each provider's stand-in,
the usage the stand-in reported in its replies summed, against what pixhook recorded.

    .venv/bin/python -m bench.provider_costs              # 20 items per provider (~30 s)
    .venv/bin/python -m bench.provider_costs --items 100

Run it as a module from the repository root. One stack (`service.cli.devstack.local_stack`) is
given both stand-ins (tests/support/anthropic_standin.py and openai_standin.py, 2 keys each) and a
price table of its own (`PIXHOOK_PROVIDER_PRICES`, prices that are not the defaults, so the
table is seen to be used). Each stand-in's answers are scripted: the first a 500 (retried, and
not billed), then in turn plain answers, answers with part of the input read from the prompt
cache, and (Anthropic) part written to it; every reply carries the usage the stand-in counted
for that request, exactly (`.requests[i]["usage"]`).

What the provider would bill is the stand-in's reported usage over the requests it answered,
mapped as pixhook documents it (docs/providers.md): Anthropic's input is `input_tokens +
cache_creation_input_tokens` and its cached input `cache_read_input_tokens`; OpenAI's input is
`prompt_tokens - cached_tokens` and its cached input `cached_tokens`; output as reported. Its
cost is those tokens at the table's prices. Compared with it, each to the token and to 1e-8 USD:
the batch's `usage` and `cost_usd`, the items' `output.provider.usage` and `cost_usd` summed, and
the deltas of `/metrics`' `pixhook_provider_tokens_total` and `pixhook_provider_cost_total` over
the batch. Exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.api import batch_body, post_accepted, results_of, wait_for_batch
from bench.provider_batch import distinct_images
from bench.provider_standins import (
    PROVIDERS,
    Provider,
    StandIn,
    answer,
    bench_keys,
    running_standin,
    stack_env,
    vision_model,
)
from bench.receivers import LocalServer, photos
from bench.stack import workdir
from service.cli.devstack import local_stack

KINDS = ("input_tokens", "output_tokens", "cached_input_tokens")
# USD per million tokens, deliberately not the list prices.
PRICES: dict[Provider, tuple[float, float, float]] = {
    "anthropic": (1.23, 4.56, 0.12),
    "openai": (0.17, 0.69, 0.085),
}
TOLERANCE_USD = 1e-8


def price_table() -> str:
    return json.dumps(
        {
            f"{provider}/{vision_model(provider)}": dict(
                zip(("input", "output", "cached_input"), prices, strict=True)
            )
            for provider, prices in PRICES.items()
        }
    )


def script(provider: Provider, items: int) -> list[Any]:
    """A 500 first, then plain answers, some input read from the cache, (Anthropic) some written."""
    if provider == "anthropic":
        turns = [{}, {"cache_read_tokens": 40}, {"cache_write_tokens": 24}]
    else:
        turns = [{}, {"cached_tokens": 128}]
    answers = [answer(provider, status=500)]
    return answers + [answer(provider, **turns[i % len(turns)]) for i in range(items + 4)]


def billed(provider: Provider, usage: dict[str, Any]) -> dict[str, int]:
    """One reply's usage as the provider reports it, in pixhook's kinds (module docstring)."""
    if provider == "anthropic":
        return {
            "input_tokens": usage["input_tokens"] + usage["cache_creation_input_tokens"],
            "output_tokens": usage["output_tokens"],
            "cached_input_tokens": usage["cache_read_input_tokens"],
        }
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    return {
        "input_tokens": usage["prompt_tokens"] - cached,
        "output_tokens": usage["completion_tokens"],
        "cached_input_tokens": cached,
    }


# The usage fields each provider reports (OpenAI's cached_tokens under prompt_tokens_details).
RAW = {
    "anthropic": (
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    ),
    "openai": ("prompt_tokens", "cached_tokens", "completion_tokens"),
}


def _field(usage: dict[str, Any], name: str) -> int:
    if name == "cached_tokens":
        return int(usage["prompt_tokens_details"]["cached_tokens"])
    return int(usage[name])


def cost(provider: Provider, tokens: dict[str, int]) -> float:
    prices = PRICES[provider]
    return sum(tokens[kind] * price for kind, price in zip(KINDS, prices, strict=True)) / 1e6


def provider_metrics(api: httpx.Client, provider: Provider) -> dict[str, float]:
    """This provider's token counters (by kind) and cost counter, from /metrics."""
    model, found = vision_model(provider), dict.fromkeys((*KINDS, "cost_usd"), 0.0)
    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("provider") != provider or labels.get("model") != model:
                continue
            if sample.name == "pixhook_provider_tokens_total":
                found[f"{labels['kind']}_tokens"] = sample.value
            elif sample.name == "pixhook_provider_cost_total":
                found["cost_usd"] = sample.value
    return found


def account(
    api: httpx.Client, stack: Any, server: LocalServer, provider: Provider, standin: StandIn, n: int
) -> bool:
    """One provider's batch and its figures; True when every figure agrees."""
    offset = PROVIDERS.index(provider) * n  # each provider its own photos: no cache answers
    inputs = (
        {"image": {"url": server.photo_url(offset + i)}, "provider": provider} for i in range(n)
    )
    standin.script(script(provider, n))
    before = provider_metrics(api, provider)
    created = post_accepted(api, "/v1/batches", batch_body("image.analyze", inputs))
    batch = wait_for_batch(api, stack, created["id"], 120)
    after = provider_metrics(api, provider)
    lines = results_of(api, batch)
    paid = [r["usage"] for r in standin.requests if r["usage"]]
    reported = {kind: sum(billed(provider, u)[kind] for u in paid) for kind in KINDS}
    outputs = [x["output"]["provider"] for x in lines if x["output"]]
    jobs = {kind: sum(int(p["usage"][kind]) for p in outputs) for kind in KINDS}
    views = {
        "the stand-in's replies": reported | {"cost_usd": cost(provider, reported)},
        "the batch's usage, cost_usd": batch["usage"] | {"cost_usd": batch["cost_usd"]},
        "the items' outputs summed": jobs | {"cost_usd": sum(p["cost_usd"] for p in outputs)},
        "/metrics deltas": {k: after[k] - before[k] for k in after},
    }
    refused = len(standin.requests) - len(paid)
    print(
        f"{provider} ({vision_model(provider)}), prices in/out/cached per M "
        f"{'/'.join(f'{p:g}' for p in PRICES[provider])}: {n} items "
        f"({batch['counts']['succeeded']} succeeded, cached answers "
        f"{sum(1 for p in outputs if p['cached'])}); the stand-in had "
        f"{len(standin.requests)} requests, {len(paid)} answered with usage, {refused} not billed"
    )
    raw = {name: sum(_field(u, name) for u in paid) for name in RAW[provider]}
    print("  the stand-in reported, summed: " + ", ".join(f"{k} {v}" for k, v in raw.items()))
    exact = reported | {"cost_usd": cost(provider, reported)}
    agree = True
    for name, figures in views.items():
        differences = [abs(float(figures[k]) - exact[k]) for k in exact]
        same = max(differences[:3]) == 0 and differences[3] < TOLERANCE_USD
        agree = agree and same
        print(
            f"  {name:30} input {int(figures['input_tokens']):>6}  output "
            f"{int(figures['output_tokens']):>6}  cached {int(figures['cached_input_tokens']):>5}  "
            f"cost ${float(figures['cost_usd']):.8f}  "
            + ("equal" if same else "DIFFERS")
            + f" (cost off by {differences[3]:.1e})"
        )
    return agree and len(lines) == n and batch["counts"]["succeeded"] == n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=20, help="items per provider (default 20)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the stack's dir (logs/)")
    args = parser.parse_args()
    n = args.items
    images = distinct_images(n * len(PROVIDERS))
    keys = {provider: bench_keys(provider, 2) for provider in PROVIDERS}
    with (
        LocalServer(photos(images)) as server,
        running_standin("anthropic", keys["anthropic"]) as anthropic,
        running_standin("openai", keys["openai"]) as openai,
    ):
        standins: dict[Provider, StandIn] = {"anthropic": anthropic, "openai": openai}
        env = stack_env("anthropic", anthropic, keys["anthropic"])
        env |= stack_env("openai", openai, keys["openai"])
        env |= {"PIXHOOK_PROVIDER_PRICES": price_table(), "PIXHOOK_PROVIDER_BACKOFF": "0.2"}
        with (
            workdir("pixhook-bench-costs-", args.keep_workdir) as path,
            local_stack(path, env) as stack,
            httpx.Client(
                base_url=stack.api_url,
                headers={"authorization": f"Bearer {stack.client.api_key}"},
                timeout=60,
            ) as api,
        ):
            results = [account(api, stack, server, p, standins[p], n) for p in PROVIDERS]
    print("check: " + ("ok: every figure equal" if all(results) else "MISMATCH"))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
