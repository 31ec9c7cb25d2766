"""The overview's chart of the last hour: polylines for an inline SVG, drawn on the server so the
console needs no JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 600, 120


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str
    points: str  # the `points` attribute of a <polyline>
    total: int


@dataclass(frozen=True)
class Chart:
    series: list[Series]
    peak: int  # per minute, the top of the scale
    width: int = WIDTH
    height: int = HEIGHT


def chart(lines: Sequence[tuple[str, str, Sequence[int]]]) -> Chart:
    """One polyline per (name, css class, counts per minute), on a shared scale."""
    peak = max((max(counts, default=0) for _, _, counts in lines), default=0)
    scale = HEIGHT / peak if peak else 0.0
    series = []
    for name, css_class, counts in lines:
        step = WIDTH / max(len(counts) - 1, 1)
        points = " ".join(
            f"{n * step:.1f},{HEIGHT - count * scale:.1f}" for n, count in enumerate(counts)
        )
        series.append(Series(name, css_class, points, sum(counts)))
    return Chart(series, peak)
