"""Figures for the benches' tables: bytes as MiB, percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

MiB = 1024 * 1024


def mib(value: float) -> str:
    """Bytes as MiB with one decimal, for a table cell."""
    return f"{value / MiB:.1f}"


def percentile(values: Sequence[float], percent: int, *, interpolate: bool = True) -> float:
    """The `percent`th percentile of `values` (nan if there are none): interpolated between the
    two nearest values (statistics.quantiles' "inclusive" method), or with `interpolate=False`
    the value at index n * percent // 100 of the sorted values."""
    if not values:
        return math.nan
    if not interpolate:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, len(ordered) * percent // 100)]
    if len(values) == 1:  # statistics.quantiles needs two
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]
