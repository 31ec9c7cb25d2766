"""Bytes in, outputs out: open with limits, decode once as small as allowed, derive each output."""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from PIL import Image, UnidentifiedImageError

from service.imaging.colour import OutputColour, output_colour
from service.imaging.decoding import REDUCING_GAP, Decode, orientation, oriented_size
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
from service.imaging.memory import peak_bytes


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
    source, plans, width, colour = _decoded(data, specs, max_pixels, max_side)
    scale = source.width / width
    outputs = {}
    for name, spec in specs.items():
        derived = _derive(source, plans[name], scale, spec)
        if colour.convert is not None:
            derived = colour.convert(derived)
        outputs[name] = encode(derived, spec, colour.icc_profile)
    return outputs


def render_bytes(
    data: bytes, specs: Mapping[str, OutputSpec], max_pixels: int, *, max_side: int | None = None
) -> int:
    """The most memory `render` holds at once for these outputs, from the headers alone."""
    with _planned(data, specs, max_pixels, max_side) as (decode, plans, width):
        converts = output_colour(decode.image.info.get("icc_profile"), "RGB").convert is not None
        return peak_bytes(
            decode, [(plans[name], spec) for name, spec in specs.items()], width, converts
        )


def _decoded(
    data: bytes, specs: Mapping[str, OutputSpec], max_pixels: int, max_side: int | None
) -> tuple[Image.Image, dict[str, Plan], int, OutputColour]:
    # Returning drops the decoded image: only the (smaller) source outlives this function.
    with _planned(data, specs, max_pixels, max_side) as (decode, plans, width):
        icc_profile = decode.image.info.get("icc_profile")
        source = decode.run()
    return source, plans, width, output_colour(icc_profile, source.mode)


@contextmanager
def _planned(
    data: bytes, specs: Mapping[str, OutputSpec], max_pixels: int, max_side: int | None
) -> Iterator[tuple[Decode, dict[str, Plan], int]]:
    """The image opened, each output planned and checked, the decode planned: nothing decoded."""
    with open_image(data, max_pixels) as image, _damage_rejected():
        turn = orientation(image)
        width, height = oriented_size(image, turn)
        plans = {name: plan(spec, width, height) for name, spec in specs.items()}
        for name, spec in specs.items():
            _check_sides(name, plans[name], spec, max_side)
        yield Decode.plan(image, max(plan.detail for plan in plans.values()), turn), plans, width


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


# Deriving and encoding each output.


def _derive(source: Image.Image, plan: Plan, scale: float, spec: OutputSpec) -> Image.Image:
    left, top, right, bottom = plan.region
    box = (
        left * scale,
        top * scale,
        min(right * scale, source.width),
        min(bottom * scale, source.height),
    )
    resized = source.resize(plan.size, Image.Resampling.LANCZOS, box, REDUCING_GAP)
    if plan.canvas is None:
        return resized
    canvas = Image.new(resized.mode, plan.canvas, (*spec.background, 255))
    offset = ((plan.canvas[0] - resized.width) // 2, (plan.canvas[1] - resized.height) // 2)
    canvas.paste(resized, offset)
    return canvas
