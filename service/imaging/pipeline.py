"""Bytes in, outputs out: open with limits, decode once as small as allowed, derive each output."""

from __future__ import annotations

import io
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from PIL import Image, UnidentifiedImageError

from service.imaging.colour import cmyk_to_srgb, output_colour
from service.imaging.encoding import encode
from service.imaging.formats import (
    INPUT_FORMATS,
    OUTPUT_FORMATS,
    EncodedImage,
    ImageInfo,
    ImageRejected,
    OutputSpec,
    format_list,
)
from service.imaging.frames import count_frames
from service.imaging.geometry import Plan, plan

# Integer box reduction first, LANCZOS only for the last factor of three: as sharp as a full
# LANCZOS resample to the eye, at a fraction of the work.
_REDUCING_GAP = 3.0
_ORIENTATION_TAG = 0x0112
# What makes each EXIF orientation upright (as ImageOps.exif_transpose does).
_TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def inspect(
    data: bytes,
    max_pixels: int,
    max_frames: int | None = None,
    time_limit_s: float | None = None,
) -> ImageInfo:
    """Read only the headers: format, size and frames, with the pixel and frame limits applied;
    counting frames stops at `max_frames` and after `time_limit_s`."""
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    with open_image(data, max_pixels) as image:
        info = ImageInfo(image.format or "", image.width, image.height, image.mode)
        frames = count_frames(image, max_frames, deadline)
    if max_frames is not None and frames > max_frames:
        raise ImageRejected(
            "TOO_MANY_FRAMES", f"image has more than {max_frames} frames, the most allowed"
        )
    return replace(info, frames=frames)


def transform(
    data: bytes, spec: OutputSpec, max_pixels: int, *, max_side: int | None = None
) -> EncodedImage:
    """One output from one image."""
    return render(data, {"default": spec}, max_pixels, max_side=max_side)["default"]


def render(
    data: bytes, specs: Mapping[str, OutputSpec], max_pixels: int, *, max_side: int | None = None
) -> dict[str, EncodedImage]:
    """Decode once, at the resolution the most detailed output needs, then derive every output.
    No output may be larger than `max_side` or its format allows a side."""
    with open_image(data, max_pixels) as image, _damage_rejected():
        orientation = _orientation(image)
        width, height = _oriented_size(image, orientation)
        plans = {name: plan(spec, width, height) for name, spec in specs.items()}
        for name, spec in specs.items():
            _check_sides(name, plans[name], spec, max_side)
        source = _decode(image, max(plan.detail for plan in plans.values()), orientation)
    scale = source.width / width
    colour = output_colour(source.info.get("icc_profile"), source.mode)
    outputs = {}
    for name, spec in specs.items():
        derived = _derive(source, plans[name], scale, spec)
        if colour.convert is not None:
            derived = colour.convert(derived)
        outputs[name] = encode(derived, spec, colour.icc_profile)
    return outputs


def _check_sides(name: str, plan: Plan, spec: OutputSpec, max_side: int | None) -> None:
    # Before decoding: an encoder's refusal would come after all the work, as a bare OSError.
    format_side = OUTPUT_FORMATS[spec.format].max_side
    if max_side is not None and max_side < format_side:
        limit, what = max_side, "outputs"
    else:
        limit, what = format_side, f"{spec.format} images"
    width, height = plan.output_size
    if max(width, height) <= limit:
        return
    which = "the output" if name == "default" else f"output {name!r}"
    raise ImageRejected(
        "OUTPUT_SIDE_TOO_LARGE",
        f"{which} would be {width}x{height} pixels, and {what} are at most {limit} pixels a "
        "side: set a smaller width, height or max_side",
    )


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageRejected("INVALID_IMAGE", "image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(INPUT_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("IMAGE_TOO_LARGE", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            "INVALID_IMAGE", f"not an image in a supported format ({format_list()})"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("INVALID_IMAGE", f"image header is damaged: {exc}") from exc
    if image.width * image.height > max_pixels:
        image.close()
        raise ImageRejected(
            "IMAGE_TOO_LARGE",
            f"image is {image.width}x{image.height} pixels; the limit is {max_pixels} pixels",
        )
    return image


@contextmanager
def _damage_rejected() -> Iterator[None]:
    # Pillow reports damage past the header (pixel data, EXIF) with several exception types.
    try:
        yield
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("INVALID_IMAGE", f"image data is damaged: {exc}") from exc


def _orientation(image: Image.Image) -> int:
    # Image.getexif, not the file's own: PNG's decodes every pixel in search of an eXIf chunk
    # after them (the spec puts it before, where opening the file has read it already), and
    # sizes are planned and checked before anything is decoded.
    return int(Image.Image.getexif(image).get(_ORIENTATION_TAG, 1))


def _oriented_size(image: Image.Image, orientation: int) -> tuple[int, int]:
    # Orientations 5-8 turn the picture a quarter: the caller's width is the stored height.
    if orientation in (5, 6, 7, 8):
        return image.height, image.width
    return image.width, image.height


# Decoding: once, as small as the most detailed output allows.


def _decode(image: Image.Image, detail: float, orientation: int) -> Image.Image:
    full_width = image.width
    # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale, never below the size asked for: a 24 MP
    # photo is never fully decoded to make a thumbnail. Other formats ignore it.
    image.draft("RGB", (math.ceil(image.width * detail), math.ceil(image.height * detail)))
    image.load()  # the file closes with the caller's `with`; a damaged one fails here
    surplus = image.width / full_width / detail
    method = _TRANSPOSITIONS.get(orientation)
    if method is not None:
        image = image.transpose(method)
    normalised = _normalise_mode(image)
    # Whatever the decoder gave beyond what the most detailed output needs goes in one cheap
    # integer reduction here, rather than in every output's own resample.
    factor = int(surplus / _REDUCING_GAP)
    return normalised.reduce(factor) if factor > 1 else normalised


def _normalise_mode(image: Image.Image) -> Image.Image:
    # Resampling works in RGB(A): palette images would otherwise be resized by nearest neighbour.
    if image.mode == "CMYK":
        return cmyk_to_srgb(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    target = "RGBA" if has_alpha else "RGB"
    return image if image.mode == target else image.convert(target)


# Deriving and encoding each output.


def _derive(source: Image.Image, plan: Plan, scale: float, spec: OutputSpec) -> Image.Image:
    left, top, right, bottom = plan.region
    box = (
        left * scale,
        top * scale,
        min(right * scale, source.width),
        min(bottom * scale, source.height),
    )
    resized = source.resize(plan.size, Image.Resampling.LANCZOS, box, _REDUCING_GAP)
    if plan.canvas is None:
        return resized
    canvas = Image.new(resized.mode, plan.canvas, (*spec.background, 255))
    offset = ((plan.canvas[0] - resized.width) // 2, (plan.canvas[1] - resized.height) // 2)
    canvas.paste(resized, offset)
    return canvas
