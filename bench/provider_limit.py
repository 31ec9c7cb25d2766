"""A stand-in provider's request limit, per key, and the earliest a batch's calls can all have
arrived under it: with every key, and with one key revoked part way through.

The stand-in counts each key's requests in fixed windows of W seconds from the moment the bench
switches counting on, and answers 429 beyond P requests of a key in a window. With K keys it
takes K x P requests per window. N requests, every one answered, therefore need N / (K x P)
windows; the first window takes K x P at once, so the N-th request can arrive no earlier than

    T(N) = (N - K x P) x W / (K x P)          after the first.

With a key revoked, the provider takes K x P per window until the revocation and (K - 1) x P
after it. If M of the N calls were answered before the revocation (counted at the stand-in: the
calls it let through before it revoked the key), the M-th arrives no earlier than T(M) above, and
each window after it holds (K - 1) x P of the remaining N - M, so the last arrives no earlier than

    T = max(0, M - K x P) x W / (K x P)  +  (N - M) x W / ((K - 1) x P).

M is what happened, not a choice: the bench revokes after a number of *answered* calls, and those
in flight then (a few, at ~0.5 s a reply) arrived on the full set of keys; counting them with M
credits pixhook with what the provider let through before the revocation. The second term
treats the rest as a fluid at the survivors' rate: the window the revocation falls in may still
have room on the surviving keys, so the exact figure can be up to one window (W) lower; over a
run of ~80 windows that is ~1%. The refused call (401 on the revoked key) costs no surviving
key's capacity and is not among the N. Neither term includes the last reply (~0.5 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    per_minute: int  # per key: what --provider-limit asked for
    window_s: float
    per_window: int  # per key: what the stand-in lets through per window (its own rounding)
    keys: int = 1

    @property
    def effective_per_minute(self) -> float:
        """Per key."""
        return self.per_window * 60 / self.window_s

    def minimum_s(self, items: int, answered_before_revocation: int | None = None) -> float:
        """T (module docstring): with every key, or with one revoked after M answered calls."""
        combined = self.keys * self.per_window
        if answered_before_revocation is None:
            return max(0, items - combined) * self.window_s / combined
        m = answered_before_revocation
        survivors = (self.keys - 1) * self.per_window
        before = max(0, m - combined) * self.window_s / combined
        return before + max(0, items - m) * self.window_s / survivors


def stand_in_limit(per_minute: int, window_s: float | None, keys: int = 1) -> Limit:
    """By default the shortest window of at least 1 s that holds a whole number of requests at
    `per_minute` (1 s for 300/min: 5; 1.05 s for 400/min: 7), as providers enforce per-minute
    limits in about per-second slices."""
    if window_s is None:
        window_s = 60 * math.ceil(per_minute / 60) / per_minute
        if math.floor(per_minute * window_s / 60) < math.ceil(per_minute / 60):
            window_s = math.nextafter(window_s, math.inf)  # 60 * 7 / 400 * 400 / 60 < 7
    # The stand-in's own rounding (tests/support/standin_server.py, count_requests).
    return Limit(per_minute, window_s, max(1, math.floor(per_minute * window_s / 60)), keys)
