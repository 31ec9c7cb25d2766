"""Events as Slack incoming-webhook messages: the endpoint's template for the event type
(webhooks/slack_templates.py) or the application's default wording (a `SlackWording`), cut to
Slack's limits.

    if is_slack_url(endpoint.url):
        body = slack_body(event, wording, endpoint.templates)

The library knows event types only as strings: what a `job.failed` says is the application's.
Pure functions, no I/O. Nothing here raises for odd event data: a notification that reads badly
beats one that never arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from webhooks.errors import InvalidTemplate
from webhooks.slack_templates import pick_template, render_template

SLACK_HOSTS = frozenset({"hooks.slack.com"})
MAX_BODY_BYTES = 40_000
# Slack takes one message a second per channel (an incoming webhook posts to one channel); a
# little more than that leaves room for the time between being paced and arriving.
SLACK_INTERVAL_S = 1.05
# Slack refuses a message over these limits (invalid_blocks), so we cut rather than lose it.
_TEXT, _SECTION, _FIELD, _HEADER, _ALT = 3000, 3000, 2000, 150, 2000
_MAX_BLOCKS, _MAX_FIELDS, _MAX_ELEMENTS = 50, 10, 10
# Cutting every text below this leaves nothing worth reading: drop trailing blocks instead.
_MIN_CLIP = 200
_CLIPPED_KEYS = frozenset({"text", "alt_text"})


class SlackWording(Protocol):
    """What an application's events say in Slack. `summary` is one line of mrkdwn (also the
    notification text); `message` the default message; `context` the values templates fill in,
    beyond `data` and `event`: the names in `template_roots`."""

    template_roots: tuple[str, ...]

    def summary(self, event_type: str, data: Mapping[str, Any]) -> str: ...

    def message(
        self, event: Mapping[str, Any], event_type: str, data: Mapping[str, Any], summary: str
    ) -> dict[str, Any]: ...

    def context(
        self, event: Mapping[str, Any], event_type: str, data: Mapping[str, Any], summary: str
    ) -> dict[str, Any]: ...


def is_slack_url(url: str) -> bool:
    """Whether `url` is a Slack incoming webhook, which gets Slack messages, not pixhook events."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() == "https" and (parts.hostname or "") in SLACK_HOSTS
    except (ValueError, AttributeError):
        return False


def slack_body(
    event: Mapping[str, Any],
    wording: SlackWording,
    templates: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    """The request body for a Slack incoming webhook: `slack_message` as compact UTF-8 JSON."""
    return _dump(slack_message(event, wording, templates))


def slack_message(
    event: Mapping[str, Any],
    wording: SlackWording,
    templates: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The event as a Slack message: the most specific template for its type (checked with
    `check_templates`), else the wording's default summary and blocks; never raises."""
    raw_type = event.get("type")
    event_type = raw_type if isinstance(raw_type, str) and raw_type else "event"
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    summary = wording.summary(event_type, data)
    message = _templated(wording, templates, event, event_type, data, summary)
    if message is None:
        message = wording.message(event, event_type, data, summary)
    return _within_body_budget(_within_slack_limits(message), summary)


def _templated(
    wording: SlackWording,
    templates: Mapping[str, Mapping[str, Any]] | None,
    event: Mapping[str, Any],
    event_type: str,
    data: Mapping[str, Any],
    summary: str,
) -> dict[str, Any] | None:
    template = pick_template(templates, event_type)
    if template is None:
        return None
    try:
        message = render_template(template, wording.context(event, event_type, data, summary))
    except InvalidTemplate:
        return None  # saved without check_templates: better our message than none
    text, blocks = message.get("text"), message.get("blocks")
    if not (isinstance(text, str) and text.strip()) and not (isinstance(blocks, list) and blocks):
        # e.g. "{data.error.message}" for an event without an error: Slack refuses it empty
        message["text"] = summary
    return message


def _within_slack_limits(message: dict[str, Any]) -> dict[str, Any]:
    """Cuts, in place, every text and list that is over Slack's per-element limits."""
    if isinstance(message.get("text"), str):
        message["text"] = _clip(message["text"], _TEXT)
    blocks = message.get("blocks")
    if isinstance(blocks, list):
        message["blocks"] = [_limit_block(block) for block in blocks[:_MAX_BLOCKS]]
    return message


def _limit_block(block: Any) -> Any:
    if not isinstance(block, dict):
        return block
    kind = block.get("type")
    _clip_text(block.get("text"), _HEADER if kind == "header" else _SECTION)
    _clip_text(block.get("title"), _ALT)
    if isinstance(block.get("fields"), list):
        block["fields"] = block["fields"][:_MAX_FIELDS]
        for field in block["fields"]:
            _clip_text(field, _FIELD)
    if kind == "context" and isinstance(block.get("elements"), list):
        block["elements"] = block["elements"][:_MAX_ELEMENTS]
        for element in block["elements"]:
            _clip_text(element, _TEXT)
            _clip_alt_text(element)
    _clip_alt_text(block)
    _clip_alt_text(block.get("accessory"))
    return block


def _clip_text(text_object: object, limit: int) -> None:
    if isinstance(text_object, dict) and isinstance(text_object.get("text"), str):
        text_object["text"] = _clip(text_object["text"], limit)


def _clip_alt_text(image: object) -> None:
    if isinstance(image, dict) and isinstance(image.get("alt_text"), str):
        image["alt_text"] = _clip(image["alt_text"], _ALT)


def _within_body_budget(message: dict[str, Any], fallback_text: str) -> dict[str, Any]:
    """The message within MAX_BODY_BYTES: its longest texts cut to the largest common length
    that fits, and only if that is not enough, its last blocks dropped."""
    if _fits(message):
        return message
    longest = max((len(text) for text in _texts(message)), default=0)
    low, high = _MIN_CLIP, longest
    if not _fits(_capped(message, low)):
        return _dropping_blocks(_capped(message, low), fallback_text)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if _fits(_capped(message, middle)) else (low, middle - 1)
    capped: dict[str, Any] = _capped(message, low)
    return capped


def _dropping_blocks(message: dict[str, Any], fallback_text: str) -> dict[str, Any]:
    blocks = message.get("blocks")
    while isinstance(blocks, list) and blocks and not _fits(message):
        blocks.pop()
    if isinstance(blocks, list) and not blocks:
        del message["blocks"]
        # Slack refuses a message with neither blocks nor text
        message.setdefault("text", _clip(fallback_text, _TEXT))
    return message


def _texts(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, str) and key in _CLIPPED_KEYS:
        yield value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _texts(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, key)


def _capped(value: Any, cap: int, key: str = "") -> Any:
    """A copy with every text longer than `cap` cut to it."""
    if isinstance(value, str) and key in _CLIPPED_KEYS:
        return _clip(value, cap)
    if isinstance(value, dict):
        return {name: _capped(item, cap, name) for name, item in value.items()}
    if isinstance(value, list):
        return [_capped(item, cap, key) for item in value]
    return value


def _clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters, ending in "…", without leaving a half link or
    entity that Slack would show as markup, and closing a code block it cut into."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 4, 0)]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    if cut.rfind("&") > cut.rfind(";") and len(cut) - cut.rfind("&") < 6:
        cut = cut[: cut.rfind("&")]
    return cut + ("…```" if cut.count("```") % 2 else "…")


def _fits(message: dict[str, Any]) -> bool:
    return len(_dump(message)) <= MAX_BODY_BYTES


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str).encode()
