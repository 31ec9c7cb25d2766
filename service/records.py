"""Reading records that another release of pixhook may have written."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any


def known_fields(record_type: type, data: dict[str, Any]) -> dict[str, Any]:
    """The fields of `record_type` in `data`. A newer release may have added fields: an older one
    reading its records (after a rollback) must not fail on them."""
    assert is_dataclass(record_type)
    names = {field.name for field in fields(record_type)}
    return {key: value for key, value in data.items() if key in names}
