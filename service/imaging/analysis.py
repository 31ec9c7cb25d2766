"""Local image analysis: colours, exposure, sharpness, noise, quality and perceptual hashes.

Pure Pillow, bytes in, a JSON-ready dict out; every measure runs on a small decoded copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image, ImageChops, ImageFilter, ImageStat

from service import imaging

# Longest side of the greyscale copy that brightness, contrast, sharpness and noise are measured
# on: a fixed scale makes sharpness and noise comparable between a 1 MP and a 24 MP upload.
ANALYSIS_SIDE = 512
# Colours are counted on a much smaller copy: shares only need a few thousand pixels.
COLOR_SIDE = 128
PALETTE_SIZE = 16
MAX_DOMINANT_COLORS = 5
# CIE76 ΔE under which two palette colours count as one: ~2 is a just-noticeable difference,
# ~15 still reads as "the same colour, another shade" to a person naming it.
MERGE_DELTA_E = 15.0
# Pixels below half opacity are background, not colour.
OPAQUE_FROM = 128

# Shortest side under which an image is too small for a product page or print thumbnail.
TOO_SMALL_BELOW = 500
# Laplacian variance (grey levels², at ANALYSIS_SIDE) under which edges are soft: sharp scenes
# measure 100-300 and more with texture; a GaussianBlur of radius 4 brings one down to ~50.
BLURRY_BELOW = 60.0
# Mean luma (0..1): under a quarter reads as underexposed, over 0.85 as washed out.
DARK_BELOW = 0.25
OVEREXPOSED_ABOVE = 0.85
# Luma standard deviation / 127.5: under 0.1 (about 13 grey levels) the image looks flat and grey.
LOW_CONTRAST_BELOW = 0.10
# Noise sigma in grey levels, measured at ANALYSIS_SIDE (downscaling averages grain away, so this
# is the noise a viewer still sees): clean photos and q90 JPEGs measure under 2; sigma 4 is
# about sigma 8-10 at full size in a 1 MP image, where grain is plainly visible.
NOISY_ABOVE = 4.0

_LAPLACIAN = ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], scale=1, offset=128)
# Immerkær's noise mask: the difference of two Laplacians, blind to flat slopes and gradients.
# Its gain is 6, so the output is halved (scale=2) to keep the 8-bit result from clipping
# until sigma is well past NOISY_ABOVE; clipping only ever underestimates heavy noise.
_NOISE_SCALE = 2
_NOISE_MASK = ImageFilter.Kernel(
    (3, 3), [1, -2, 1, -2, 4, -2, 1, -2, 1], scale=_NOISE_SCALE, offset=128
)
# Noise is measured on the flattest part of the image only, where edges do not count as noise.
_FLAT_SHARE = 0.5
_HASH_SIDE = 32
_HASH_BITS_SIDE = 8


def analyze(data: bytes, max_pixels: int) -> dict[str, Any]:
    """Describe an image; raises `imaging.ImageRejected` for bytes we cannot decode."""
    with open_image(data, max_pixels) as image:
        header: dict[str, Any] = {
            "width": image.width,
            "height": image.height,
            "format": image.format or "",
            "mode": image.mode,
            "has_alpha": _has_alpha(image),
            "animated": bool(getattr(image, "is_animated", False)),
            "frames": int(getattr(image, "n_frames", 1)),
        }
        rgb, opaque = _decode_small(image)
    grey = rgb.convert("L")
    luma = ImageStat.Stat(grey)
    brightness = luma.mean[0] / 255
    contrast = luma.stddev[0] / 127.5
    sharpness = ImageStat.Stat(grey.filter(_LAPLACIAN)).var[0]
    noise = _noise_sigma(grey)
    reasons = _quality_reasons(
        min(header["width"], header["height"]), brightness, contrast, sharpness, noise
    )
    return {
        **header,
        "dominant_colors": _dominant_colors(rgb, opaque),
        "brightness": round(brightness, 3),
        "contrast": round(contrast, 3),
        "sharpness": round(sharpness, 1),
        "noise": round(noise, 2),
        "quality": {"grade": _grade(reasons), "reasons": reasons},
        "phash": _phash(grey),
        "dhash": _dhash(grey),
    }


def decode_bytes(data: bytes, max_pixels: int) -> int:
    """The most memory `analyze` holds at once for this image, from its headers alone."""
    with open_image(data, max_pixels) as image, _damage_rejected():
        return imaging.Decode.within(image, ANALYSIS_SIDE).bytes


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) with the same format list and pixel limit as every job."""
    return imaging.open_image(data, max_pixels)


def hash_distance(a: str, b: str) -> int:
    """Hamming distance between two hex hashes: 0 is the same picture, 64 the opposite."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


@contextmanager
def _damage_rejected() -> Iterator[None]:
    # Pillow reports damage past the header with several exception types.
    try:
        yield
    except imaging.ImageRejected:
        raise
    except (OSError, SyntaxError) as exc:
        raise imaging.ImageRejected("INVALID_IMAGE", f"image data is damaged: {exc}") from exc
    except ValueError as exc:
        raise imaging.ImageRejected("INVALID_IMAGE", f"cannot analyse this image: {exc}") from exc


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _decode_small(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """The first frame, upright, at most ANALYSIS_SIDE: RGB on white, plus an opacity mask."""
    with _damage_rejected():
        # As image.transform decodes: a 24 MP JPEG at 1500x1000 at most (draft mode), anything
        # else reduced a band at a time, never a second full-size copy.
        upright = imaging.Decode.within(image, ANALYSIS_SIDE).run()
        upright.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.LANCZOS, 2.0)
    if upright.mode == "RGB":
        return upright, None
    rgba = upright
    alpha = rgba.getchannel("A")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=alpha)
    return flat, alpha.point(lambda a: 255 if a >= OPAQUE_FROM else 0)


def _dominant_colors(rgb: Image.Image, opaque: Image.Image | None) -> list[dict[str, Any]]:
    small = rgb.copy()
    small.thumbnail((COLOR_SIDE, COLOR_SIDE), Image.Resampling.BOX)
    mask = None
    if opaque is not None:
        mask = opaque.resize(small.size, Image.Resampling.NEAREST)
    quantized = small.quantize(PALETTE_SIZE, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = quantized.getpalette() or []
    counts = quantized.histogram(mask)
    total = sum(counts)
    if total == 0:
        return []
    used = sorted(
        ((count, tuple(palette[3 * i : 3 * i + 3])) for i, count in enumerate(counts) if count),
        reverse=True,
    )
    # Greedy merge, heaviest first: each shade joins the first group whose seed it resembles.
    groups: list[tuple[tuple[float, float, float], list[tuple[int, tuple[int, ...]]]]] = []
    for count, color in used:
        lab = _lab(color)
        for seed, members in groups:
            if math.dist(seed, lab) < MERGE_DELTA_E:
                members.append((count, color))
                break
        else:
            groups.append((lab, [(count, color)]))
    merged = sorted((_weighted_mean(members) for _, members in groups), reverse=True)
    return [
        {"hex": "#{:02x}{:02x}{:02x}".format(*color), "share": round(count / total, 3)}
        for count, color in merged[:MAX_DOMINANT_COLORS]
    ]


def _weighted_mean(members: list[tuple[int, tuple[int, ...]]]) -> tuple[int, tuple[int, ...]]:
    weight = sum(count for count, _ in members)
    mean = tuple(round(sum(count * c[i] for count, c in members) / weight) for i in range(3))
    return weight, mean


def _lab(color: tuple[int, ...]) -> tuple[float, float, float]:
    """sRGB (0..255) to CIE L*a*b* under D65."""

    def linear(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in color[:3])
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _noise_sigma(grey: Image.Image) -> float:
    """Immerkær's fast noise estimate, over the flattest half of the image."""
    if grey.width < 3 or grey.height < 3:
        return 0.0
    # Local range on a blurred copy finds edges without noise itself looking like an edge.
    blurred = grey.filter(ImageFilter.GaussianBlur(1.5))
    local_range = ImageChops.difference(
        blurred.filter(ImageFilter.MaxFilter(3)), blurred.filter(ImageFilter.MinFilter(3))
    )
    flat_mask = local_range.point(_below_share(local_range.histogram(), _FLAT_SHARE))
    # The 1-pixel border of a 3x3 filter sees replicated edges: leave it out.
    border = Image.new("L", grey.size, 0)
    border.paste(255, (1, 1, grey.width - 1, grey.height - 1))
    flat_mask = ImageChops.multiply(flat_mask, border)
    counts = grey.filter(_NOISE_MASK).histogram(flat_mask)
    pixels = sum(counts)
    if pixels == 0:
        return 0.0
    absolute = sum(abs(level - 128) * n for level, n in enumerate(counts)) * _NOISE_SCALE
    return math.sqrt(math.pi / 2) * absolute / (6 * pixels)


def _below_share(histogram: list[int], share: float) -> list[int]:
    """A point table keeping (255) the lowest levels that hold `share` of the pixels."""
    wanted, seen = share * sum(histogram), 0
    for level, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return [255 if v <= level else 0 for v in range(256)]
    return [255] * 256


def _quality_reasons(
    shortest: int, brightness: float, contrast: float, sharpness: float, noise: float
) -> list[str]:
    checks = [
        ("too_small", shortest < TOO_SMALL_BELOW),
        ("blurry", sharpness < BLURRY_BELOW),
        ("dark", brightness < DARK_BELOW),
        ("overexposed", brightness > OVEREXPOSED_ABOVE),
        ("low_contrast", contrast < LOW_CONTRAST_BELOW),
        ("noisy", noise > NOISY_ABOVE),
    ]
    return [reason for reason, failed in checks if failed]


def _grade(reasons: list[str]) -> str:
    # One flaw is usually fixable (crop, brighten); two or more make the image a poor source.
    return "high" if not reasons else "medium" if len(reasons) == 1 else "low"


def _dhash(grey: Image.Image) -> str:
    """Difference hash: is each pixel of a 9x8 thumbnail darker than its right neighbour."""
    small = grey.resize((_HASH_BITS_SIDE + 1, _HASH_BITS_SIDE), Image.Resampling.LANCZOS)
    pixels = small.tobytes()
    width = _HASH_BITS_SIDE + 1
    bits = [
        pixels[row * width + col] < pixels[row * width + col + 1]
        for row in range(_HASH_BITS_SIDE)
        for col in range(_HASH_BITS_SIDE)
    ]
    return _hex(bits)


def _phash(grey: Image.Image) -> str:
    """DCT hash: the 8x8 lowest frequencies of a 32x32 thumbnail, each above or below median."""
    n, k = _HASH_SIDE, _HASH_BITS_SIDE
    small = grey.resize((n, n), Image.Resampling.LANCZOS)
    pixels = small.tobytes()
    cosines = [[math.cos(math.pi * (2 * x + 1) * u / (2 * n)) for x in range(n)] for u in range(k)]
    # Separable DCT-II (unnormalised: only the order of coefficients matters): rows, then columns.
    rows = [
        [
            sum(c * p for c, p in zip(cosines[u], pixels[y * n : y * n + n], strict=True))
            for u in range(k)
        ]
        for y in range(n)
    ]
    coefficients = [
        sum(cosines[v][y] * rows[y][u] for y in range(n)) for v in range(k) for u in range(k)
    ]
    median = sorted(coefficients)[len(coefficients) // 2]
    return _hex([c > median for c in coefficients])


def _hex(bits: list[bool]) -> str:
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    return f"{value:0{len(bits) // 4}x}"
