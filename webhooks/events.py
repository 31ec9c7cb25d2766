"""The event envelope every receiver parses: type, id, timestamp, data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 in UTC with millisecond precision and a `Z`, as every pixhook timestamp is."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_body(event_type: str, event_id: str, data: dict[str, Any], timestamp: str) -> bytes:
    """The exact bytes that are signed and sent."""
    envelope = {"type": event_type, "id": event_id, "timestamp": timestamp, "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
