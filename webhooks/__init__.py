"""pixhook's webhook delivery engine: Standard Webhooks signing, sending, retries.

It knows nothing of images or jobs; `service` uses it, never the reverse.
"""

from webhooks.receiver import InvalidWebhook, verify
from webhooks.signing import generate_secret, sign

__all__ = ["InvalidWebhook", "generate_secret", "sign", "verify"]
