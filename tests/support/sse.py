"""Reading Server-Sent Events the way a client does, for the live event tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    """One SSE block as a client parses it: an event, a `retry:` hint, or a comment."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comment: str | None = None

    @property
    def payload(self) -> Any:
        return json.loads(self.data or "null")


def frames(response: httpx.Response) -> Iterator[Frame]:
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if fields:
                yield Frame(**fields)
            fields = {}
        elif line.startswith(":"):
            fields["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data" and "data" in fields:
                fields["data"] += "\n" + value
            elif name in ("id", "event", "data"):
                fields[name] = value
            elif name == "retry":
                fields["retry"] = int(value)
