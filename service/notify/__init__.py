"""How pixhook's events read to people: their Slack wording, handed to the delivery engine."""

from service.notify.wording import SLACK_WORDING, PixhookSlackWording

__all__ = ["SLACK_WORDING", "PixhookSlackWording"]
