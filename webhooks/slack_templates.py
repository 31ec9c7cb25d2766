"""Per-endpoint Slack message templates: checked once when saved, filled in for every event.

A template is a Slack message (`text`, `blocks`, `unfurl_links`, `unfurl_media`) whose strings
may hold `{path}` placeholders over the render context, e.g. `{data.output.images.0.url}`. The
context has the event's `data` and `event` fields, and whatever text roots the application's
wording adds (`{summary}`, say);
`{{` and `}}` stand for literal braces. Templates are keyed by event type (`job.failed`),
prefix pattern (`job.*`) or `*`, and the most specific key wins.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from webhooks.errors import InvalidTemplate

MAX_TEMPLATES = 20
MAX_BLOCKS = 50
MESSAGE_KEYS = ("blocks", "text", "unfurl_links", "unfurl_media")
# Roots every context has: the event's data and its envelope fields; only these have fields.
ENVELOPE_ROOTS = ("data", "event")
EVENT_FIELDS = ("id", "timestamp", "type")
# Slack reads these as URLs or plain text, not markup: escaping would corrupt them.
_UNESCAPED_KEYS = frozenset({"image_url", "url", "alt_text"})
_KEY = re.compile(r"\*|[a-z][a-z0-9_]*(\.([a-z][a-z0-9_]*|\*))?")
_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

Path = tuple[str, ...]


class _BadPlaceholder(Exception):
    pass


class Mrkdwn(str):
    """Text that is already Slack markup (the default summary): substituted without escaping."""


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities, so event data cannot link, mention or
    inject formatting tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def check_templates(templates: object, text_roots: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The templates, validated; raises `InvalidTemplate` at the first thing wrong. Placeholders
    may name `data`, `event` and the `text_roots` the render context will have."""
    roots = frozenset(text_roots) | frozenset(ENVELOPE_ROOTS)
    if not isinstance(templates, Mapping):
        raise InvalidTemplate("", "templates must be an object of event type → Slack message")
    if len(templates) > MAX_TEMPLATES:
        raise InvalidTemplate("", f"at most {MAX_TEMPLATES} templates, got {len(templates)}")
    checked: dict[str, dict[str, Any]] = {}
    for key, message in templates.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise InvalidTemplate(
                str(key), "keys are event types (job.failed), patterns (job.*) or *"
            )
        _check_message(key, message, roots)
        checked[key] = copy.deepcopy(dict(message))
    return checked


def pick_template(
    templates: Mapping[str, Mapping[str, Any]] | None, event_type: str
) -> Mapping[str, Any] | None:
    """The template for `event_type`: its exact key, then `prefix.*`, then `*`."""
    if not templates:
        return None
    keys = [event_type]
    if "." in event_type:
        keys.append(event_type.partition(".")[0] + ".*")
    keys.append("*")
    return next((templates[key] for key in keys if key in templates), None)


def render_template(template: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh message with every placeholder filled; raises `InvalidTemplate` if the template
    was never checked and cannot be parsed."""
    if not isinstance(template, Mapping):
        raise InvalidTemplate("", "a template must be an object")
    roots = frozenset(context)
    return {key: _render(value, context, key, roots) for key, value in template.items()}


def _check_message(key: str, message: object, roots: frozenset[str]) -> None:
    if not isinstance(message, Mapping):
        raise InvalidTemplate(key, "must be a Slack message object with text and/or blocks")
    for name in message:
        if name not in MESSAGE_KEYS:
            raise InvalidTemplate(f"{key}.{name}", f"unknown key; use {', '.join(MESSAGE_KEYS)}")
    if "text" in message and not (isinstance(message["text"], str) and message["text"]):
        raise InvalidTemplate(f"{key}.text", "must be a non-empty string")
    if "blocks" in message:
        _check_blocks(f"{key}.blocks", message["blocks"])
    if "text" not in message and "blocks" not in message:
        raise InvalidTemplate(key, "needs a non-empty text or blocks")
    for name in ("unfurl_links", "unfurl_media"):
        if name in message and not isinstance(message[name], bool):
            raise InvalidTemplate(f"{key}.{name}", "must be true or false")
    _check_strings(key, message, roots)


def _check_blocks(field: str, blocks: object) -> None:
    if not isinstance(blocks, list) or not blocks:
        raise InvalidTemplate(field, "must be a non-empty list of Block Kit blocks")
    if len(blocks) > MAX_BLOCKS:
        raise InvalidTemplate(field, f"Slack takes at most {MAX_BLOCKS} blocks")
    for index, block in enumerate(blocks):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise InvalidTemplate(f"{field}[{index}]", "a block is an object with a type")


def _check_strings(field: str, value: object, roots: frozenset[str]) -> None:
    if isinstance(value, str):
        try:
            _parse(value, roots)
        except _BadPlaceholder as exc:
            raise InvalidTemplate(field, str(exc)) from None
    elif isinstance(value, Mapping):
        for name, item in value.items():
            _check_strings(f"{field}.{name}", item, roots)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(f"{field}[{index}]", item, roots)


@functools.lru_cache(maxsize=1024)
def _parse(template: str, roots: frozenset[str]) -> tuple[str | Path, ...]:
    """Literal text and placeholder paths, in order."""
    parts: list[str | Path] = []
    position = 0
    for match in _TOKEN.finditer(template):
        parts.append(template[position : match.start()])
        token = match.group()
        if token in ("{{", "}}"):
            parts.append(token[0])
        elif token == "{":
            raise _BadPlaceholder("'{' is never closed; write {{ for a literal brace")
        elif token == "}":
            raise _BadPlaceholder("'}' without a '{'; write }} for a literal brace")
        else:
            parts.append(_placeholder(match.group(1), roots))
        position = match.end()
    parts.append(template[position:])
    return tuple(part for part in parts if part)


def _placeholder(inner: str, roots: frozenset[str]) -> Path:
    path = tuple(inner.split("."))
    if not all(_SEGMENT.fullmatch(segment) for segment in path):
        raise _BadPlaceholder(f"{{{inner}}} is not a placeholder; write e.g. {{data.id}}")
    root = path[0]
    if root not in roots:
        known = ", ".join(sorted(roots))
        raise _BadPlaceholder(f"{{{inner}}}: unknown root {root!r}; use one of {known}")
    if root == "event" and (len(path) != 2 or path[1] not in EVENT_FIELDS):
        raise _BadPlaceholder(f"{{{inner}}}: the event has only {', '.join(EVENT_FIELDS)}")
    if root not in ENVELOPE_ROOTS and len(path) > 1:
        raise _BadPlaceholder(f"{{{inner}}}: {root} is text and has no fields")
    return path


def _render(value: Any, context: Mapping[str, Any], key: str, roots: frozenset[str]) -> Any:
    if isinstance(value, str):
        return _fill(value, context, roots, escape=key not in _UNESCAPED_KEYS)
    if isinstance(value, Mapping):
        return {name: _render(item, context, name, roots) for name, item in value.items()}
    if isinstance(value, list):
        return [_render(item, context, key, roots) for item in value]
    return value


def _fill(template: str, context: Mapping[str, Any], roots: frozenset[str], *, escape: bool) -> str:
    try:
        parts = _parse(template, roots)
    except _BadPlaceholder as exc:
        raise InvalidTemplate("", str(exc)) from None
    pieces: list[str] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        value = _lookup(context, part)
        text = _as_text(value)
        pieces.append(escape_mrkdwn(text) if escape and not isinstance(value, Mrkdwn) else text)
    return "".join(pieces)


def _lookup(context: Mapping[str, Any], path: Path) -> Any:
    value: Any = context
    for segment in path:
        if isinstance(value, Mapping):
            value = value.get(segment)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return None
    return value


def _as_text(value: Any) -> str:
    """Strings as they are, missing values as nothing, anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
