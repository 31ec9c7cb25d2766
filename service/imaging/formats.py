"""What the imaging functions speak: formats, output specs, results and refusals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from PIL import features

# Formats we decode. Anything else (SVG, PDF, PSD, ...) is refused before Pillow touches it further.
INPUT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"})

MODES = frozenset({"fit", "fill", "crop", "pad"})

# Where `fill` keeps the crop, as a focal point (x, y) in 0..1 of the source.
GRAVITIES: Mapping[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "north": (0.5, 0.0),
    "south": (0.5, 1.0),
    "east": (1.0, 0.5),
    "west": (0.0, 0.5),
    "northeast": (1.0, 0.0),
    "northwest": (0.0, 0.0),
    "southeast": (1.0, 1.0),
    "southwest": (0.0, 1.0),
}

# `max_bytes` never buys its size with a quality below this: past it, the job fails instead.
MIN_QUALITY = 30

# libwebp's `method`: 0 is fastest, 6 makes the smallest files. At 2 a 512 px thumbnail encodes
# 2.7x faster than at libwebp's default 4 for about 6% more bytes at the same quality: in a job
# service the encoder's CPU is paid on every output, so speed is the default and bytes are asked
# for (`effort`, or PIXHOOK_WEBP_EFFORT for every job). docs/decisions.md has the figures.
WEBP_EFFORTS = range(7)
DEFAULT_WEBP_EFFORT = 2
# Under a `max_bytes` budget every byte saved buys quality back, and fine texture (grain, knit,
# foliage) costs up to 1.7x the bytes at effort 2: such outputs get libwebp's default at least.
BUDGET_WEBP_EFFORT = 4


@dataclass(frozen=True)
class OutputFormat:
    pillow_name: str
    media_type: str
    extension: str
    has_alpha: bool
    max_side: int  # the most pixels a side the encoder takes: libjpeg, libwebp, libavif, PNG's spec


def _output_formats() -> dict[str, OutputFormat]:
    formats = {
        "jpeg": OutputFormat("JPEG", "image/jpeg", "jpg", has_alpha=False, max_side=65_500),
        "png": OutputFormat("PNG", "image/png", "png", has_alpha=True, max_side=2**31 - 1),
        "webp": OutputFormat("WEBP", "image/webp", "webp", has_alpha=True, max_side=16_383),
    }
    # Pillow builds without libavif exist; offer only what this install can encode.
    if features.check("avif"):
        formats["avif"] = OutputFormat(
            "AVIF", "image/avif", "avif", has_alpha=True, max_side=65_536
        )
    return formats


OUTPUT_FORMATS = _output_formats()


class ImageRejected(ValueError):
    """The bytes are not an image we can work with, or no output fits; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str
    frames: int = 1


@dataclass(frozen=True)
class OutputSpec:
    """One output. Sizes are upper bounds (fit, crop) or exact (fill, pad); never upscaled
    unless `upscale`. `box` is (left, top, width, height) in source pixels, after EXIF rotation."""

    mode: str = "fit"
    width: int | None = None
    height: int | None = None
    max_side: int | None = None
    gravity: str = "center"
    focal_point: tuple[float, float] | None = None
    box: tuple[int, int, int, int] | None = None
    background: tuple[int, int, int] = (255, 255, 255)
    upscale: bool = False
    format: str = "jpeg"
    quality: int = 85
    max_bytes: int | None = None
    progressive: bool = False
    lossless: bool = False
    effort: int = DEFAULT_WEBP_EFFORT  # WebP only


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: OutputFormat
    width: int
    height: int


def format_list() -> str:
    return ", ".join(sorted(INPUT_FORMATS))
