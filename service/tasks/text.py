"""`text.generate`: a chat answer from Anthropic or an OpenAI-compatible model, streamed as
`job.output.delta` events while it is written (a browser reads them over SSE), the whole text in
the output and the webhook, with its time to first token and pace."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from service.config import Settings
from service.errors import InvalidInput
from service.jobs.model import Job
from service.providers.chat import ChatRequest, Message, TextPart
from service.shapes.fields import Bound, OneOf
from service.shapes.validation import REQUEST
from service.tasks.context import TaskContext
from service.tasks.provider_choice import PROVIDERS, Models, default_model, model_list
from service.tasks.streamed_text import Deltas

NAME = "text.generate"
MAX_MESSAGES = 100
MAX_REPLY_TOKENS = 8192
DEFAULT_REPLY_TOKENS = 1024

PromptLength = Bound("limits.max_prompt_chars", "maxLength")


class ChatMessage(BaseModel):
    model_config = REQUEST
    role: Literal["user", "assistant"]
    content: Annotated[str, Field(min_length=1), PromptLength]


class TextInput(BaseModel):
    """A conversation for the model to answer: `messages` alternate, starting and ending with
    the user's."""

    model_config = REQUEST
    provider: Annotated[str, OneOf(PROVIDERS)] = "anthropic"
    model: Models | None = None
    system: Annotated[str, PromptLength] | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES)]
    # Anthropic takes 0–1, OpenAI 0–2: the range both take.
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_REPLY_TOKENS)] = DEFAULT_REPLY_TOKENS


def parse_input(raw: TextInput, settings: Settings) -> dict[str, Any]:
    roles = [message.role for message in raw.messages]
    if roles[0] != "user" or roles[-1] != "user":
        at = "0" if roles[0] != "user" else str(len(roles) - 1)
        raise InvalidInput(
            "the conversation starts and ends with the user's message",
            code="INVALID_CONVERSATION",
            field=f"input.messages[{at}].role",
        )
    for index, (before, after) in enumerate(zip(roles, roles[1:], strict=False), start=1):
        if before == after:
            raise InvalidInput(
                "user and assistant messages alternate",
                code="INVALID_CONVERSATION",
                field=f"input.messages[{index}].role",
            )
    return {
        "provider": raw.provider,
        "models": model_list(raw.model, default_model(raw.provider, settings, "text")),
        "system": raw.system,
        "messages": [message.model_dump() for message in raw.messages],
        "temperature": raw.temperature,
        "max_tokens": raw.max_tokens,
    }


async def run(job: Job, image: bytes, ctx: TaskContext) -> dict[str, Any]:
    """`image` is empty: this job type takes none."""
    params = job.input
    request = ChatRequest(
        tuple(Message(m["role"], (TextPart(m["content"]),)) for m in params["messages"]),
        system=params["system"],
        max_tokens=params["max_tokens"],
        temperature=params["temperature"],
    )
    deltas = Deltas(ctx.emit)
    reply = await ctx.providers().chat(params["provider"], params["models"], request, deltas.add)
    await deltas.flush()
    return {"text": reply.text, "provider": reply.as_output()}
