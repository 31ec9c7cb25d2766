"""Encoding one output: the format's options, flattening, and the quality that fits a size."""

from __future__ import annotations

import io

from PIL import Image

from service.imaging.formats import (
    MIN_QUALITY,
    OUTPUT_FORMATS,
    EncodedImage,
    ImageRejected,
    OutputFormat,
    OutputSpec,
)


def encode(image: Image.Image, spec: OutputSpec, icc_profile: bytes | None) -> EncodedImage:
    output = OUTPUT_FORMATS[spec.format]
    converted = _convert_for(image, output, spec.background)
    # EXIF, XMP, comments and the like stay behind: only pixels and the colour profile go out.
    converted.info = {}
    if spec.max_bytes is None:
        data = _save(converted, output, spec, spec.quality, icc_profile)
    else:
        data = _save_within(converted, output, spec, spec.max_bytes, icc_profile)
    return EncodedImage(data, output, converted.width, converted.height)


def _convert_for(
    image: Image.Image, output: OutputFormat, background: tuple[int, int, int]
) -> Image.Image:
    if image.mode != "RGBA":
        return image if image.mode == "RGB" else image.convert("RGB")
    if output.has_alpha:
        return image
    flattened = Image.new("RGB", image.size, background)
    flattened.paste(image, mask=image.getchannel("A"))
    return flattened


def _save_within(
    image: Image.Image,
    output: OutputFormat,
    spec: OutputSpec,
    max_bytes: int,
    icc_profile: bytes | None,
) -> bytes:
    data = _save(image, output, spec, spec.quality, icc_profile)
    if len(data) <= max_bytes:
        return data
    best: bytes | None = None
    if _is_lossy(output, spec):
        # Size falls as quality falls, so the best quality that fits is a binary search away.
        low, high = MIN_QUALITY, spec.quality - 1
        while low <= high:
            quality = (low + high) // 2
            candidate = _save(image, output, spec, quality, icc_profile)
            if len(candidate) <= max_bytes:
                best, low = candidate, quality + 1
            else:
                high = quality - 1
    if best is None:
        raise ImageRejected(
            "OUTPUT_TOO_LARGE",
            f"a {image.width}x{image.height} {spec.format} image does not fit in {max_bytes} bytes",
        )
    return best


def _is_lossy(output: OutputFormat, spec: OutputSpec) -> bool:
    return output.pillow_name in ("JPEG", "AVIF") or (
        output.pillow_name == "WEBP" and not spec.lossless
    )


def _save(
    image: Image.Image,
    output: OutputFormat,
    spec: OutputSpec,
    quality: int,
    icc_profile: bytes | None,
) -> bytes:
    options: dict[str, object] = {"quality": quality}
    if output.pillow_name == "PNG":
        options = {"optimize": True}
    elif output.pillow_name == "JPEG":
        options["progressive"] = spec.progressive
    elif output.pillow_name == "WEBP":
        options["method"] = spec.effort
        if spec.lossless:
            # `exact` keeps the colour under transparent pixels: lossless means every byte back.
            options.update(lossless=True, exact=True)
    if icc_profile:
        options["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    image.save(buffer, output.pillow_name, **options)
    return buffer.getvalue()
