"""Generated pictures whose truth the analysis tests know: structure for hashes and sharpness."""

from __future__ import annotations

import io
import random
from typing import Any

from PIL import Image, ImageDraw


def scene(size: tuple[int, int] = (800, 600), seed: int = 1) -> Image.Image:
    """Gradients under random ellipses, boxes and strokes: structure for hashes and sharpness."""
    rng = random.Random(seed)
    width, height = size
    across = Image.linear_gradient("L").rotate(rng.choice([0, 90, 180, 270])).resize(size)
    down = Image.radial_gradient("L").resize(size)
    image = Image.merge("RGB", (across, down, Image.new("L", size, rng.randrange(256))))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = rng.randrange(width), rng.randrange(height)
        box = (x, y, x + rng.randrange(20, width // 3), y + rng.randrange(20, height // 3))
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        shape = rng.choice(["ellipse", "rectangle", "line"])
        if shape == "ellipse":
            draw.ellipse(box, fill=color)
        elif shape == "rectangle":
            draw.rectangle(box, fill=color)
        else:
            draw.line(box, fill=color, width=rng.randrange(2, 12))
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
