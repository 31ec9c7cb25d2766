"""OpenAI's chat completions and images APIs as a wire (service/providers/wire.py): one request
with one key, its answer or its failure; streamed chat is read by chat_stream.py."""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import time
from typing import Any

import httpx

from service.fetch import tls_context
from service.providers.chat import ChatRequest, ImagePart, TokenUsage
from service.providers.chat_stream import read_stream
from service.providers.errors import (
    PROVIDER_AUTH,
    PROVIDER_BAD_RESPONSE,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    ProviderError,
    too_slow,
    unreachable,
)
from service.providers.wire import Endpoint, Forward, LimitHints, WireReply
from webhooks import parse_retry_after

_STREAM = {"stream": True, "stream_options": {"include_usage": True}}
# OpenAI's reset durations: "1s", "6m0s", "20ms", "1h2m3.5s".
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class OpenAIWire:
    provider = "openai"

    async def send(
        self,
        http: httpx.AsyncClient,
        endpoint: Endpoint,
        model: str,
        request: ChatRequest,
        forward: Forward | None,
    ) -> WireReply:
        body = chat_body(model, request)
        if forward is None:
            response = await post(http, endpoint, "/v1/chat/completions", json=body)
            return _reply(parse(response), model, limit_hints(response.headers))
        return await _stream(http, endpoint, body | _STREAM, model, forward)

    async def check_key(self, http: httpx.AsyncClient, endpoint: Endpoint) -> None:
        try:
            response = await http.get(
                f"{endpoint.base_url}/v1/models",
                headers=_auth(endpoint),
                timeout=endpoint.timeout_s,
            )
        except httpx.HTTPError as exc:
            raise unreachable(exc) from exc
        parse(response)


def chat_body(model: str, request: ChatRequest) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        content = [
            {"type": "image_url", "image_url": {"url": _data_url(part)}}
            if isinstance(part, ImagePart)
            else {"type": "text", "text": part.text}
            for part in message.parts
        ]
        messages.append({"role": message.role, "content": content})
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": request.max_tokens}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.json_schema is not None:
        schema = {"name": "answer", "schema": request.json_schema}
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": schema | {"strict": strict_compatible(request.json_schema)},
        }
    elif request.json_reply:
        body["response_format"] = {"type": "json_object"}
    return body


def strict_compatible(schema: Any) -> bool:
    """OpenAI's strict mode takes only schemas whose every object names all its properties as
    required and allows no others; any other schema is asked for without it."""
    if isinstance(schema, list):
        return all(strict_compatible(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(strict_compatible(value) for value in schema.values())


def _data_url(part: ImagePart) -> str:
    return f"data:{part.media_type};base64," + base64.b64encode(part.data).decode()


async def _stream(
    http: httpx.AsyncClient, endpoint: Endpoint, body: dict[str, Any], model: str, forward: Forward
) -> WireReply:
    url, timeout_s = endpoint.base_url + "/v1/chat/completions", endpoint.timeout_s
    chunks = 0

    async def counted(text: str) -> None:
        nonlocal chunks
        chunks += 1
        await forward(text)

    try:
        # httpx times each read; one deadline also bounds a stream that trickles.
        async with (
            asyncio.timeout(timeout_s),
            http.stream("POST", url, json=body, headers=_auth(endpoint), timeout=timeout_s) as r,
        ):
            hints = limit_hints(r.headers)
            await endpoint.hear(hints)
            if r.status_code == 200 and r.headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                reply = await read_stream(r, counted)
            else:
                await r.aread()
                reply = parse(r)
                # A server that ignores `stream` answers in one piece: forwarded as one piece.
                if isinstance(text := _message_text(reply), str) and text:
                    await counted(text)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise too_slow() from exc
    except httpx.HTTPError as exc:
        raise unreachable(exc) from exc
    return _reply(reply, model, hints, chunks)


async def post(
    http: httpx.AsyncClient,
    endpoint: Endpoint,
    path: str,
    *,
    json: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
) -> httpx.Response:
    """One POST with the key; a transport failure is a retryable ProviderError."""
    try:
        response = await http.post(
            endpoint.base_url + path,
            json=json,
            data=data,
            files=files,
            headers=_auth(endpoint),
            timeout=endpoint.timeout_s,
        )
    except httpx.TimeoutException as exc:
        raise too_slow() from exc
    except httpx.HTTPError as exc:
        raise unreachable(exc) from exc
    await endpoint.hear(limit_hints(response.headers))
    return response


def _reply(reply: dict[str, Any], model: str, hints: LimitHints, chunks: int = 0) -> WireReply:
    text = _message_text(reply)
    if not isinstance(text, str):
        raise ProviderError(
            "the reply has no choices[0].message.content",
            code=PROVIDER_BAD_RESPONSE,
            retryable=False,
        )
    answered = reply.get("model")
    return WireReply(
        text, answered if isinstance(answered, str) else model, usage(reply), hints, chunks
    )


def usage(reply: dict[str, Any]) -> TokenUsage:
    """OpenAI's prompt tokens include the cached ones; they are billed apart."""
    raw = reply.get("usage")
    if not isinstance(raw, dict):
        return TokenUsage()
    details = raw.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = _count(raw.get("prompt_tokens", raw.get("input_tokens")))
    output = _count(raw.get("completion_tokens", raw.get("output_tokens")))
    return TokenUsage(max(0, prompt - cached), output, cached)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def parse(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 200; any other status as the ProviderError it means."""
    status, hints = response.status_code, limit_hints(response.headers)
    if status in (401, 403):
        raise ProviderError(
            f"the provider refused the API key ({status}): {_message(response)}",
            code=PROVIDER_AUTH,
            retryable=False,
            status=status,
            hints=hints,
        )
    if status == 429 and _error_field(response, "code") == "insufficient_quota":
        # OpenAI's 429 for an exhausted balance: waiting does not help, and it says nothing of rate.
        raise ProviderError(
            f"the provider account is out of quota: {_message(response)}",
            code=PROVIDER_REJECTED,
            retryable=False,
            status=status,
        )
    if status == 429 or status >= 500:
        raise ProviderError(
            f"the provider answered {status}",
            code=PROVIDER_UNAVAILABLE,
            retryable=True,
            status=status,
            retry_after_s=retry_after_s(response.headers),
            hints=hints,
        )
    if status != 200:
        raise ProviderError(
            f"the provider rejected the request ({status}): {_message(response)}",
            code=PROVIDER_REJECTED,
            retryable=False,
            status=status,
        )
    try:
        reply = response.json()
    except ValueError as exc:
        raise ProviderError(
            "the provider's answer is not JSON", code=PROVIDER_BAD_RESPONSE, retryable=True
        ) from exc
    if not isinstance(reply, dict):
        raise ProviderError(
            "the provider's answer is not a JSON object", code=PROVIDER_BAD_RESPONSE, retryable=True
        )
    return reply


def limit_hints(headers: httpx.Headers) -> LimitHints:
    return LimitHints(
        _int(headers.get("x-ratelimit-remaining-requests")),
        _duration_s(headers.get("x-ratelimit-reset-requests")),
        _int(headers.get("x-ratelimit-remaining-tokens")),
        _duration_s(headers.get("x-ratelimit-reset-tokens")),
        _int(headers.get("x-ratelimit-limit-requests")),
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _duration_s(value: str | None) -> float | None:
    if not value:
        return None
    parts = _DURATION.findall(value)
    if not parts or "".join(a + u for a, u in parts) != value.strip():
        return None
    return sum(float(amount) * _UNIT_S[unit] for amount, unit in parts)


def _message(response: httpx.Response) -> str:
    return _error_field(response, "message") or response.text[:300]


def _error_field(response: httpx.Response, name: str) -> str:
    try:
        return str(response.json()["error"][name] or "")[:300]
    except (ValueError, KeyError, TypeError):
        return ""


def retry_after_s(headers: httpx.Headers) -> float | None:
    # OpenAI also sends the wait in milliseconds, which a one-second window needs.
    try:
        milliseconds = float(headers.get("retry-after-ms", ""))
    except ValueError:
        milliseconds = math.nan
    if math.isfinite(milliseconds) and milliseconds >= 0:
        return milliseconds / 1000
    return parse_retry_after(headers.get("retry-after", ""), time.time())


def _message_text(reply: dict[str, Any]) -> Any:
    try:
        return reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None


def _auth(endpoint: Endpoint) -> dict[str, str]:
    return {"authorization": f"Bearer {endpoint.key}"}


def decode_b64_image(value: Any) -> bytes:
    """An image from a `b64_json` field; a bad one is the provider's fault, not the caller's."""
    if not isinstance(value, str):
        raise ProviderError("b64_json is missing", code=PROVIDER_BAD_RESPONSE, retryable=False)
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ProviderError(
            "b64_json is not base64", code=PROVIDER_BAD_RESPONSE, retryable=False
        ) from exc


def provider_http() -> httpx.AsyncClient:
    """The HTTP client provider calls share within a process."""
    return httpx.AsyncClient(verify=tls_context(), trust_env=False)
