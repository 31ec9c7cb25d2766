"""The query string of the list routes `GET /v1/jobs` and `GET /v1/batches`: a page size, an
opaque cursor, statuses, times; each bad value refused as `INVALID_INPUT` naming its parameter."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection

from starlette.datastructures import QueryParams

from service.api.operations import Param
from service.api.routes.deliveries import MAX_PAGE, MOMENT
from service.errors import InvalidInput
from service.jobs.index import CURSOR_PATTERN, IndexCursor
from service.moments import MOMENT_FORMS, parse_moment

DEFAULT_PAGE = 50
_LIMIT = re.compile(r"[0-9]{1,4}")
# The last moment a score in microseconds can hold exactly, 9999-12-31T23:59:59Z.
_LAST = 253402300799

PAGING = (
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    Param(
        "cursor",
        "query",
        {"type": "string", "pattern": f"^{CURSOR_PATTERN.pattern}$"},
        "`next_cursor` of the previous page",
    ),
)


def statuses_param(allowed: Collection[str]) -> Param:
    """`status`, repeated or comma-separated: any of these."""
    schema = {"type": "array", "items": {"enum": sorted(allowed)}}
    return Param("status", "query", schema, "one or several (`status=a&status=b` or `a,b`)")


def moment_param(name: str, description: str) -> Param:
    return Param(name, "query", MOMENT, f"{description}: {MOMENT_FORMS}")


def paging(params: QueryParams) -> tuple[int, IndexCursor | None]:
    raw_limit = params.get("limit", str(DEFAULT_PAGE))
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    raw_cursor = params.get("cursor")
    if raw_cursor is None:
        return int(raw_limit), None
    cursor = IndexCursor.parse(raw_cursor)
    if cursor is None:
        raise InvalidInput("cursor must be a next_cursor from an earlier page", field="cursor")
    return int(raw_limit), cursor


def statuses(params: QueryParams, allowed: Collection[str]) -> tuple[str, ...]:
    """The statuses asked for, in the order allowed lists them; () for any."""
    asked = {s.strip() for raw in params.getlist("status") for s in raw.split(",")}
    unknown = sorted(asked - set(allowed))
    if unknown:
        raise InvalidInput(
            f"status {unknown[0]!r} is none of: {', '.join(allowed)}", field="status"
        )
    return tuple(s for s in allowed if s in asked)


def moment(params: QueryParams, name: str) -> float | None:
    """Unix seconds of the parameter `name`, written in any of MOMENT_FORMS."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = parse_moment(raw, time.time())
    except ValueError:
        value = math.nan
    # NaN, infinities and times past year 9999 parse as numbers but name no moment.
    if not abs(value) <= _LAST:
        raise InvalidInput(f"{name} must be {MOMENT_FORMS}", field=name)
    return value
