"""Refusing fields pixhook does not know, in every request body, the same way.

A dropped field is a silent bug on the caller's side (`webhookUrl` meant no webhook at all), so
each object a body holds is checked against the fields it takes: `422 UNKNOWN_FIELD`, the
field's full path, and the field most likely meant when one is close.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from service.errors import InvalidInput

UNKNOWN_FIELD = "UNKNOWN_FIELD"
# How alike (difflib's ratio, once case, '_' and '-' are set aside) a known name must be to be
# suggested: `webhook` -> `webhook_url` passes, `initial_image_url` -> `image` does not.
_CLOSE_ENOUGH = 0.75


def refuse_unknown_fields(names: Iterable[str], known: Collection[str], where: str = "") -> None:
    """`InvalidInput(UNKNOWN_FIELD)` for the first of `names` not in `known`; `where` is the
    path of the object they belong to (`input`, `items[3].input`, or "" for the body)."""
    for name in names:
        if name not in known:
            raise InvalidInput(
                f"unknown field {name!r}; {_hint(name, known)}",
                code=UNKNOWN_FIELD,
                field=f"{where}.{name}" if where else name,
            )


def _hint(name: str, known: Collection[str]) -> str:
    meant = _closest(name, known)
    if meant is not None:
        return f"did you mean {meant!r}?"
    return f"the fields here are: {', '.join(sorted(known))}"


def _closest(name: str, known: Collection[str]) -> str | None:
    folded = {_fold(option): option for option in known}
    matches = difflib.get_close_matches(_fold(name), folded, n=1, cutoff=_CLOSE_ENOUGH)
    return folded[matches[0]] if matches else None


def _fold(name: str) -> str:
    # webhookUrl, webhook-url and WEBHOOK_URL all mean webhook_url.
    return name.lower().replace("_", "").replace("-", "")
