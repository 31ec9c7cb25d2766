"""The wording pixhook gives the delivery engine for Slack channels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.notify.slack import default_message, summary_line, template_context


class PixhookSlackWording:
    """pixhook's events in Slack (a `webhooks.SlackWording`): job, batch, endpoint and ping
    messages, and the text values templates may name besides `data` and `event`."""

    template_roots: tuple[str, ...] = ("duration", "link", "output_url", "summary", "thumbnail_url")

    def summary(self, event_type: str, data: Mapping[str, Any]) -> str:
        return summary_line(event_type, data)

    def message(
        self, event: Mapping[str, Any], event_type: str, data: Mapping[str, Any], summary: str
    ) -> dict[str, Any]:
        return default_message(event, event_type, data, summary)

    def context(
        self, event: Mapping[str, Any], event_type: str, data: Mapping[str, Any], summary: str
    ) -> dict[str, Any]:
        return template_context(event, event_type, data, summary)


SLACK_WORDING = PixhookSlackWording()
