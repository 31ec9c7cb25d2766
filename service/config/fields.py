"""How one setting is declared: its variable, default, parser, kind and description in one call.

A section is a frozen dataclass whose fields are made by these functions, e.g.
`timeout_s: float = seconds(300.0, "PIXHOOK_JOB_TIMEOUT", "a job running longer fails")`; reading
the environment (`read_section`) and writing docs/configuration.md both walk them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from service.moments import parse_seconds

T = TypeVar("T")


class ConfigError(ValueError):
    """An environment variable holds a value pixhook cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class Declared:
    """What a field's declaration says beyond its name and type."""

    variable: str
    doc: str
    parse: Callable[[str], Any]
    kind: str
    shown_default: str | None


def declared(f: Field[Any]) -> Declared:
    found: Declared = f.metadata["pixhook"]
    return found


def section_fields(section: type[Any]) -> list[tuple[Field[Any], Declared]]:
    return [(f, declared(f)) for f in fields(section)]


def setting(
    default: Any,
    variable: str,
    doc: str,
    parse: Callable[[str], Any] = lambda raw: raw,
    *,
    kind: str = "text",
    secret: bool = False,
    shown_default: str | None = None,
) -> Any:
    """A field read from `variable` with `parse`; a secret's value never shows in `repr`."""
    metadata = {"pixhook": Declared(variable, doc, parse, kind, shown_default)}
    return field(default=default, repr=not secret, metadata=metadata)


def text(default: str, variable: str, doc: str, **options: Any) -> Any:
    return setting(default, variable, doc, **options)


def url(default: str, variable: str, doc: str, **options: Any) -> Any:
    """A base URL, kept without its trailing slash."""
    return setting(default, variable, doc, lambda raw: raw.rstrip("/"), kind="URL", **options)


def count(default: int, variable: str, doc: str, **options: Any) -> Any:
    """A whole number greater than 0."""
    return setting(default, variable, doc, _positive(int), kind="integer > 0", **options)


def at_least(low: int, default: int, variable: str, doc: str, **options: Any) -> Any:
    return setting(default, variable, doc, _at_least(low), kind=f"integer ≥ {low}", **options)


def within(allowed: range, default: int, variable: str, doc: str, **options: Any) -> Any:
    kind = f"integer {allowed[0]}–{allowed[-1]}"
    return setting(default, variable, doc, _within(allowed), kind=kind, **options)


def rate(default: float, variable: str, doc: str, **options: Any) -> Any:
    """A number greater than 0."""
    return setting(default, variable, doc, _positive(float), kind="number > 0", **options)


def fraction(default: float, variable: str, doc: str, **options: Any) -> Any:
    return setting(default, variable, doc, _fraction, kind="number in (0, 1]", **options)


def seconds(default: float, variable: str, doc: str, **options: Any) -> Any:
    """A length of time greater than 0: seconds (`600`) or a duration (`10m`)."""
    kind = "duration (`600` or `10m`)"
    return setting(default, variable, doc, _positive(parse_seconds), kind=kind, **options)


def flag(default: bool, variable: str, doc: str, **options: Any) -> Any:
    return setting(default, variable, doc, _flag, kind="boolean", **options)


def choice(allowed: tuple[str, ...], default: str, variable: str, doc: str, **o: Any) -> Any:
    kind = " or ".join(f"`{a}`" for a in allowed)
    return setting(default, variable, doc, _one_of(allowed), kind=kind, **o)


def secret_list(variable: str, doc: str) -> Any:
    """Secrets separated by commas or newlines, or one per line of `@/path/to/file`."""
    kind = "comma-separated, or `@file` (one per line)"
    return setting((), variable, doc, _secret_list, kind=kind, secret=True)


def _secret_list(raw: str) -> tuple[str, ...]:
    text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
    lines = (line.strip() for line in text.replace(",", "\n").splitlines())
    return tuple(dict.fromkeys(line for line in lines if line and not line.startswith("#")))


def _positive(convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        value = convert(raw)
        if not value > 0:  # type: ignore[operator]
            raise ValueError(f"{raw!r} must be greater than 0")
        return value

    return parse


def _at_least(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value < low:
            raise ValueError(f"{raw!r} must be at least {low}")
        return value

    return parse


def _within(allowed: range) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if value not in allowed:
            raise ValueError(f"{raw!r} must be from {allowed[0]} to {allowed[-1]}")
        return value

    return parse


def _one_of(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be {' or '.join(allowed)}, not {raw!r}")
        return raw

    return parse


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"{raw!r} is neither true nor false")
    return value in ("1", "true", "yes", "on")


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError(f"{raw!r} must be greater than 0 and at most 1")
    return value
