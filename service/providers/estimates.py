"""Tokens a request will be counted, worked out before it is sent (`POST /v1/estimate`).

Text is about 4 characters a token. Images are counted as each provider documents it:
- Anthropic: the image is scaled down (aspect kept) to fit 1568 px on its long side and 1.15
  megapixels; it costs width × height / 750 tokens.
- OpenAI, high detail: scaled down to fit 2048 × 2048, then so that its short side is at most
  768 px; it costs a base plus a price per 512-px tile it covers: 85 + 170 a tile for the
  gpt-4o class (and any model not listed below), 2833 + 5667 a tile for gpt-4o-mini.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.providers.chat import ChatRequest, TextPart

CHARS_PER_TOKEN = 4
ANTHROPIC_MAX_SIDE = 1568
ANTHROPIC_MAX_PIXELS = 1_150_000
ANTHROPIC_PIXELS_PER_TOKEN = 750
OPENAI_MAX_SIDE = 2048
OPENAI_SHORT_SIDE = 768
OPENAI_TILE = 512
# model -> (base tokens, tokens per tile); others are priced as the gpt-4o class.
OPENAI_TILE_TOKENS = {"gpt-4o-mini": (2833, 5667)}
GPT_4O_TILE_TOKENS = (85, 170)


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    def fit(self, max_side: int) -> Size:
        """Scaled down, aspect kept, to fit `max_side` on its long side (never scaled up)."""
        return self.scaled(max_side / max(self.width, self.height))

    def scaled(self, factor: float) -> Size:
        if factor >= 1:
            return self
        # Floored, as resizers do; the epsilon keeps 3000 x (1568 / 3000) at 1568, not 1567.
        return Size(
            max(1, int(self.width * factor + 1e-9)), max(1, int(self.height * factor + 1e-9))
        )


def text_tokens(request: ChatRequest) -> int:
    """The request's text (system and every text part) at ~4 characters a token."""
    chars = len(request.system or "")
    for message in request.messages:
        chars += sum(len(part.text) for part in message.parts if isinstance(part, TextPart))
    return math.ceil(chars / CHARS_PER_TOKEN)


def image_tokens(provider: str, model: str, size: Size) -> int:
    if provider == "anthropic":
        return anthropic_image_tokens(size)
    return openai_image_tokens(model, size)


def anthropic_image_tokens(size: Size) -> int:
    fitted = size.fit(ANTHROPIC_MAX_SIDE)
    fitted = fitted.scaled(math.sqrt(ANTHROPIC_MAX_PIXELS / (fitted.width * fitted.height)))
    return math.ceil(fitted.width * fitted.height / ANTHROPIC_PIXELS_PER_TOKEN)


def openai_image_tokens(model: str, size: Size) -> int:
    fitted = size.fit(OPENAI_MAX_SIDE)
    fitted = fitted.scaled(OPENAI_SHORT_SIDE / min(fitted.width, fitted.height))
    tiles = math.ceil(fitted.width / OPENAI_TILE) * math.ceil(fitted.height / OPENAI_TILE)
    base, per_tile = OPENAI_TILE_TOKENS.get(model, GPT_4O_TILE_TOKENS)
    return base + per_tile * tiles
