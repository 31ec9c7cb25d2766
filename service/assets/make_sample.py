"""Regenerate `sample.jpg`, the demo's product photo: `python -m service.assets.make_sample`."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter


def make_sample(width: int = 960, height: int = 640) -> Image.Image:
    """A studio-style shot: a soft backdrop, a shadow and a red sneaker-like shape."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image = Image.blend(image, Image.new("RGB", (width, height), (236, 232, 226)), 0.8)
    draw = ImageDraw.Draw(image)
    shadow = Image.new("L", (width, height), 0)
    ImageDraw.Draw(shadow).ellipse((250, 470, 730, 530), fill=120)
    image.paste((90, 90, 90), mask=shadow.filter(ImageFilter.GaussianBlur(18)))
    draw.rounded_rectangle((260, 330, 720, 480), radius=70, fill=(200, 30, 45))
    draw.rounded_rectangle((300, 250, 520, 400), radius=60, fill=(200, 30, 45))
    draw.rectangle((260, 455, 720, 490), fill=(245, 245, 245))
    for x in range(340, 500, 36):
        draw.line((x, 300, x + 30, 330), fill=(250, 250, 250), width=6)
    return image


if __name__ == "__main__":
    target = Path(__file__).with_name("sample.jpg")
    make_sample().save(target, "JPEG", quality=82, optimize=True)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
