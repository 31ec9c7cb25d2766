"""One attempt at a target, the same for a queued delivery and an endpoint's test send: signed,
guarded, sent within its deadline, and its failures mapped to the attempt log's codes."""

from __future__ import annotations

import aiohttp

from webhooks.errors import InvalidSecret
from webhooks.guard import UrlPolicy
from webhooks.sender import AttemptResult, outgoing_headers, send
from webhooks.targets import Refused, Target

# The target's secret cannot sign (it is not `whsec_` + base64): nothing was sent.
SIGNING_ERROR = "SIGNING_ERROR"


async def attempt_once(
    session: aiohttp.ClientSession,
    target: Target | Refused,
    msg_id: str,
    body: bytes,
    *,
    url_policy: UrlPolicy,
    deadline_s: float,
    response_cap: int,
) -> tuple[AttemptResult, dict[str, str]]:
    """The attempt's result, and the headers it sent as the attempt log keeps them."""
    if isinstance(target, Refused):
        return target.result(), {}
    try:
        headers = target.signed_headers(msg_id, body)
    except InvalidSecret as exc:
        unsigned = AttemptResult(False, 0.0, error_code=SIGNING_ERROR, error_message=str(exc))
        return unsigned, {}
    result = await send(
        session,
        target.url,
        body,
        headers,
        policy=url_policy,
        deadline_s=deadline_s,
        response_cap=response_cap,
    )
    return result, outgoing_headers(target.logged(headers))
