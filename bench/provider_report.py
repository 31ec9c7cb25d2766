"""What `bench.provider_batch` prints: the minimum and the completion against it, the stand-in's
view per key (requests, 429s, the revoked key's calls after its revocation), the items."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench.figures import percentile

if TYPE_CHECKING:
    from bench.provider_batch import Config, Outcome

GOAL_RATIO = 1.10


def report(config: Config, outcome: Outcome) -> int:
    """Prints the figures; 1 when a goal was missed (a failed item, a 429, a failed check, a
    completion over 1.10x the minimum), else 0."""
    ratio = describe(config, outcome)
    refused = sum(w.refused for w in outcome.windows)
    per_key_window(config, outcome)
    per_key(config, outcome)
    failed = items(outcome)
    others(config, outcome)
    missed = failed or refused or outcome.checks or ratio > GOAL_RATIO
    return 1 if missed else 0


def describe(config: Config, outcome: Outcome) -> float:
    """The setup, the minimum, the completion; returns completion / minimum."""
    limit, n, k = config.limit, outcome.items, config.limit.keys
    hints = [f"…{key[-4:]}" for key in config.keys]
    print(
        f"image.analyze batch of {n:,} distinct 96x96 JPEGs by URL, provider {config.provider} "
        f"({config.model}) = the stand-in (reply after {1000 * config.latency_s:.0f} ms, streamed "
        f"in 16-char pieces every {1000 * config.chunk_delay_s:.0f} ms)"
    )
    revoked = (
        f"; {'…' + config.revoked[-4:]} revoked (401 from then on) once {config.revoke_at} calls "
        "were answered"
        if config.revoked
        else ""
    )
    print(
        f"stand-in: {k} key(s) ({', '.join(hints)}), each {limit.per_minute}/min as "
        f"{limit.per_window} per {limit.window_s:g} s window, 429 + retry-after beyond it, "
        f"rate-limit headers on every reply{revoked}"
    )
    print(
        f"pixhook: PIXHOOK_PROVIDER_REQUESTS_PER_MINUTE={config.rate} per key "
        f"({config.rate / limit.effective_per_minute:.2f} x the stand-in's) BURST={config.burst}, "
        f"provider/job/batch concurrency {config.concurrency} (batch: {outcome.concurrency}), "
        f"{config.workers} jobs worker(s)"
    )
    print()
    m = outcome.answered_before_revocation
    minimum = limit.minimum_s(n, m)
    kp, w = k * limit.per_window, limit.window_s
    if m is None:
        print(
            f"minimum the keys allow: (N - K*P) * W / (K*P) = ({n} - {kp}) * {w:g} / {kp} = "
            f"{minimum:.1f} s from the first request to the last"
        )
    else:
        survivors = (k - 1) * limit.per_window
        print(
            f"minimum the keys allow, M = {m} calls answered before the revocation: "
            f"max(0, M - K*P) * W / (K*P) + (N - M) * W / ((K-1)*P) = ({m} - {kp}) * {w:g} / "
            f"{kp} + ({n} - {m}) * {w:g} / {survivors} = {limit.minimum_s(m):.1f} + "
            f"{minimum - limit.minimum_s(m):.1f} = {minimum:.1f} s from the first request to the "
            f"last"
        )
    ratio = outcome.run_s / minimum
    print(
        f"completion: started_at -> finished_at {outcome.run_s:.1f} s = {ratio:.3f} x minimum "
        f"(goal <= {GOAL_RATIO:.2f}: {'met' if ratio <= GOAL_RATIO else 'MISSED'}); POST -> seen "
        f"completed {outcome.wall_s:.1f} s ({outcome.wall_s / minimum:.3f} x); items/s "
        f"{n / outcome.run_s:.2f} (the keys' limit: {kp / w:g}/s"
        + (f", {(k - 1) * limit.per_window / w:g}/s after the revocation)" if m else ")")
    )
    arrivals = [r["at"] for r in outcome.requests]
    span = max(arrivals) - min(arrivals) if arrivals else math.nan
    windows = outcome.windows
    arrived, refused = sum(x.arrived for x in windows), sum(x.refused for x in windows)
    print(
        f"at the stand-in: first -> last request {span:.1f} s ({span / minimum:.3f} x minimum); "
        f"{len(outcome.requests):,} requests, {refused:,} answered 429 (goal 0), "
        f"{sum(1 for r in outcome.requests if r['usage']):,} answered, "
        f"{len(outcome.requests) - arrived:,} refused as unauthorised"
    )
    return ratio


def per_key_window(config: Config, outcome: Outcome) -> None:
    """How full each key's windows were: the stand-in's own count."""
    p = config.limit.per_window
    for key, windows in outcome.key_windows.items():
        accepted = [x.arrived - x.refused for x in windows]
        inner = accepted[1:-1] or accepted  # the first and last windows are partial
        full = sum(1 for a in accepted if a == p)
        print(
            f"  …{key[-4:]} windows: {len(windows)}, accepted max {max(accepted, default=0)} "
            f"(limit {p}), median {statistics.median(inner) if inner else math.nan:g}, full "
            f"{full}, max arrived {max((x.arrived for x in windows), default=0)}, with a 429 "
            f"{sum(1 for x in windows if x.refused)}"
        )


def per_key(config: Config, outcome: Outcome) -> None:
    """Requests per key, before and after the revocation, and the revoked key's calls after it."""
    revoked_at = outcome.revoked_at
    rows: dict[str, Counter[str]] = {key: Counter() for key in config.keys}
    for request in outcome.requests:
        row = rows.setdefault(request["key"], Counter())
        when = "after" if revoked_at is not None and request["at"] >= revoked_at else "before"
        row[when] += 1
        row["answered" if request["usage"] else "refused"] += 1
    shown = (_key_row(key, row, revoked_at) for key, row in rows.items())
    print("requests per key: " + "; ".join(shown))
    if config.revoked is not None:
        after = rows[config.revoked]["after"]
        when = "never" if revoked_at is None else f"at {revoked_at - _first(outcome):.1f} s"
        print(
            f"revoked key …{config.revoked[-4:]}: revoked {when}, after "
            f"{outcome.answered_before_revocation} answered calls (all keys); its calls after the "
            f"revocation: {after} (goal 1: the refused one)"
        )


def _key_row(key: str, row: Counter[str], revoked_at: float | None) -> str:
    text = f"…{key[-4:]} {row['before'] + row['after']} ({row['answered']} answered"
    text += f", {row['refused']} refused)" if row["refused"] else ")"
    if revoked_at is not None:
        text += f" = {row['before']} before the revocation + {row['after']} after"
    return text


def _first(outcome: Outcome) -> float:
    return min((r["at"] for r in outcome.requests), default=math.nan)


def items(outcome: Outcome) -> list[dict[str, Any]]:
    """Items failed (with codes), attempts, keys that answered; returns the failed ones."""
    failed = [x for x in outcome.lines if x["status"] != "succeeded"]
    errors = Counter(str((x.get("error") or {}).get("code")) for x in failed)
    providers = [x["output"]["provider"] for x in outcome.lines if x["output"]]
    attempts = Counter(int(p["attempts"]) for p in providers)
    print(
        f"items: {outcome.counts.get('succeeded', 0):,} succeeded, {len(failed):,} failed "
        f"(goal 0{': ' + str(dict(errors)) if errors else ''}); provider attempts per item "
        f"{dict(sorted(attempts.items()))}; answered per key (output.provider.key) "
        f"{dict(sorted(Counter(str(p.get('key')) for p in providers).items()))}"
    )
    latencies = [float(p["latency_ms"]) for p in providers]
    print(
        f"provider.latency_ms per item (rate waits, retries and the reply): median "
        f"{percentile(latencies, 50, interpolate=False):.0f}, "
        f"p95 {percentile(latencies, 95, interpolate=False):.0f}, max "
        f"{max(latencies, default=math.nan):.0f}; items in flight at most "
        f"{max((p.in_flight for p in outcome.polls), default=0)}"
    )
    return failed


def others(config: Config, outcome: Outcome) -> None:
    factors = outcome.factors
    print(
        f"shared rate factor (the lowest key's, at each poll): min "
        f"{min(factors, default=1.0):.2f}, "
        f"mean {statistics.fmean(factors) if factors else 1.0:.2f}, cuts seen {len(outcome.cuts)}"
    )
    if outcome.jobs_by_worker:
        print(f"jobs run per jobs worker (warm-up included): {outcome.jobs_by_worker}")
    print(
        "check: "
        + ("ok: N result lines, indexes unique, none cached" if not outcome.checks else "")
        + "; ".join(outcome.checks)
    )
    for log, lines in outcome.log_lines.items():
        for text, count in lines.most_common(5):
            print(f"log {log}: {count} x {text}")
