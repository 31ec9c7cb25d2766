"""Times as people write them, read the same way in environment variables, the CLI and the API:
a length of time in seconds (`90`) or as a duration (`250ms`, `5s`, `30m`, `2h`); a moment as
Unix seconds, a duration ago, or an ISO 8601 time."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from webhooks import parse_duration

MOMENT_FORMS = "Unix seconds, a duration ago like 1h, or an ISO 8601 time"


def parse_seconds(raw: str) -> float:
    """Plain seconds (`"30"`) or a duration (`"30s"`, `"5m"`)."""
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        return seconds
    try:
        return parse_duration(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is neither seconds nor a duration like 5s, 30m or 2h") from None


def parse_moment(raw: str, now: float) -> float:
    """Unix seconds of `raw`: Unix seconds, a duration before `now` (`"1h"`: an hour ago), or
    an ISO 8601 time (UTC when it names no zone)."""
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        return now - parse_duration(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is none of {MOMENT_FORMS}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
