"""The bad-image set `bench/bad_inputs.py` feeds the service: hostile files, and valid ones just
under the limits whose decode is the largest a worker can be asked for.

Each is made in memory, served under its own name with the media type its name claims, and sent
as the thumbnail job of docs/api.md unless it names an output of its own (`spec`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, features

from bench.figures import MiB
from bench.transform import photo_paths
from tests.support.icc_profiles import rgb_profile
from tests.support.images import many_page_tiff, png_bomb, truncated_jpeg

NEAR_CAP = (7000, 7000)  # 49 MP, under the default 50 MP limit
SUCCEEDED = "succeeded"


@dataclass(frozen=True)
class Kind:
    name: str
    file: str
    media_type: str
    data: bytes
    expect: str  # SUCCEEDED, or the error code it must end with (422 or a failed job)
    spec: dict[str, Any] = field(default_factory=dict)  # the job's output, when not the thumbnail


def make_kinds(with_photo: bool) -> list[Kind]:
    kinds = [*_hostile(), *_near_cap()]
    if with_photo:
        photo = photo_paths(1)[0].read_bytes()  # bench/transform.py's 6000x4000 test photo
        kinds.append(Kind("JPEG 24 MP photo", "photo.jpg", "image/jpeg", photo, SUCCEEDED))
    return kinds


def _hostile() -> list[Kind]:
    tall, wide = (
        _encoded(Image.new("L", (1, 65_535)), "PNG"),
        _encoded(Image.new("L", (20_000, 1)), "PNG"),
    )
    icc = rgb_profile(private_bytes=MiB)
    return [
        Kind(
            "PNG 20000x20000 pixel bomb",
            "bomb.png",
            "image/png",
            png_bomb(20_000, 20_000, 4 * MiB),
            "IMAGE_TOO_LARGE",
        ),
        Kind(
            "PNG 7072x7072, just over",
            "over.png",
            "image/png",
            png_bomb(7072, 7072),
            "IMAGE_TOO_LARGE",
        ),
        Kind("truncated JPEG", "truncated.jpg", "image/jpeg", truncated_jpeg(), "INVALID_IMAGE"),
        Kind("truncated PNG", "truncated.png", "image/png", _truncated_png(), "INVALID_IMAGE"),
        Kind(
            "GIF, 10,000 1x1 frames",
            "frames.gif",
            "image/gif",
            many_frames_gif(),
            "TOO_MANY_FRAMES",
        ),
        Kind(
            "TIFF, 30,000 1x1 pages",
            "pages.tif",
            "image/tiff",
            many_page_tiff(30_000),
            "TOO_MANY_FRAMES",
        ),
        Kind("APNG, 1,001 frames", "frames.png", "image/png", _apng(1001), "TOO_MANY_FRAMES"),
        Kind("SVG", "drawing.svg", "image/svg+xml", SVG, "INVALID_IMAGE"),
        Kind("text named .jpg", "text.jpg", "image/jpeg", TEXT, "INVALID_IMAGE"),
        Kind("empty body", "empty.jpg", "image/jpeg", b"", "INVALID_IMAGE"),
        Kind(
            "PNG 1x65535, width 32",
            "tall.png",
            "image/png",
            tall,
            "OUTPUT_SIDE_TOO_LARGE",
            {"width": 32, "format": "jpeg"},
        ),
        Kind(
            "PNG 20000x1 to WebP",
            "wide.png",
            "image/png",
            wide,
            "OUTPUT_SIDE_TOO_LARGE",
            {"format": "webp"},
        ),
        Kind(
            "JPEG, 1 MB ICC, 20 KB out",
            "icc.jpg",
            "image/jpeg",
            _encoded(Image.new("RGB", (320, 240), "red"), "JPEG", icc_profile=icc),
            SUCCEEDED,
            {"width": 32, "format": "jpeg", "max_bytes": 20_000},
        ),
    ]


def _near_cap() -> list[Kind]:
    rotated = Image.Exif()
    rotated[0x0112] = 6
    whole_webp, whole_jpeg = {"format": "webp"}, {"format": "jpeg"}
    kinds = [
        _blank("PNG 7000x7000 RGBA", "rgba.png", "RGBA"),
        _blank("PNG 7000x7000 RGB", "rgb.png", "RGB"),
        _blank("PNG 7000x7000 grey", "grey.png", "L"),
        _blank("PNG 7000x7000 grey+alpha", "la.png", "LA"),
        _blank("PNG 7000x7000 16-bit grey", "grey16.png", "I;16"),
        _blank("PNG 7000x7000 palette, clear", "palette.png", "P", transparency=0),
        _blank("PNG 7000x7000 EXIF-rotated", "rotated.png", "RGB", exif=rotated),
        _blank("WebP 7000x7000 RGBA", "rgba.webp", "RGBA", lossless=True),
        _blank("TIFF 7000x7000 RGB", "rgb.tif", "RGB", compression="tiff_deflate"),
        _blank("GIF 7000x7000", "big.gif", "P"),
        _blank("JPEG 7000x7000 CMYK", "cmyk.jpg", "CMYK"),
        _blank(
            "Whole PNG 7000x7000 RGBA to WebP", "whole.png", "RGBA", "DECODE_TOO_LARGE", whole_webp
        ),
        _blank("Whole PNG 7000x7000 RGB to JPEG", "whole-rgb.png", "RGB", SUCCEEDED, whole_jpeg),
    ]
    if features.check("avif"):  # libavif is slow to encode: a smaller one
        avif = _encoded(Image.new("RGBA", (4000, 4000)), "AVIF", speed=10)
        kinds.append(Kind("AVIF 4000x4000 RGBA", "rgba.avif", "image/avif", avif, SUCCEEDED))
    return kinds


def _blank(
    name: str,
    file: str,
    mode: str,
    expect: str = SUCCEEDED,
    spec: dict[str, Any] | None = None,
    **save: Any,
) -> Kind:
    """A blank NEAR_CAP image in `mode`, saved in the format its file name says."""
    fmt, media_type = _FORMATS[file.rsplit(".", 1)[1]]
    return Kind(name, file, media_type, _encoded(blank(mode), fmt, **save), expect, spec or {})


_FORMATS = {
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
    "tif": ("TIFF", "image/tiff"),
    "gif": ("GIF", "image/gif"),
    "jpg": ("JPEG", "image/jpeg"),
}


def blank(mode: str) -> Image.Image:
    """All zero, so that the file is small (a 49 MP RGBA PNG: 190 KB) and the decode is not."""
    return Image.new(mode, NEAR_CAP)


def many_frames_gif(frames: int = 10_000, side: int = 64) -> bytes:
    """An animated GIF of `frames` 1x1 frames, each at its own spot of a side x side screen."""

    def le(number: int) -> bytes:
        return number.to_bytes(2, "little")

    parts = [b"GIF89a", le(side), le(side), b"\x80\x00\x00", b"\x00\x00\x00\xff\xff\xff"]
    parts.append(b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00")  # loop forever
    for number in range(frames):
        position = le(number % side) + le(number // side % side)
        parts.append(b"\x21\xf9\x04\x00\x02\x00\x00\x00")  # 20 ms per frame
        parts.append(b"\x2c" + position + le(1) + le(1) + b"\x00\x02\x02\x44\x01\x00")
    return b"".join([*parts, b"\x3b"])


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="20000" height="20000">'
    b'<rect width="100%" height="100%" fill="red"/></svg>'
)
TEXT = b"hello, I am a text file named photo.jpg\n" * 20


def _encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _truncated_png() -> bytes:
    whole = _encoded(Image.effect_noise((800, 600), 50), "PNG")
    return whole[: len(whole) // 2]


def _apng(frames: int) -> bytes:
    images = [Image.new("L", (8, 8), number % 256) for number in range(frames)]
    return _encoded(images[0], "PNG", save_all=True, append_images=images[1:])
