"""Colour profiles: what the input's says, and what each output carries."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageCms

# An RGB profile up to this size goes into every output as it came: a matrix profile (sRGB,
# Display P3, Adobe RGB) is 0.5-3 KB. Beyond it are lookup tables and private measurement
# data, up to megabytes, which would outweigh a thumbnail many times over: such pixels are
# converted to sRGB instead, and outputs carry littleCMS's 588-byte sRGB profile.
MAX_KEPT_PROFILE_BYTES = 8 * 1024


@dataclass(frozen=True)
class OutputColour:
    """The profile every output embeds, and the conversion its pixels need first, if any."""

    icc_profile: bytes | None = None
    convert: Callable[[Image.Image], Image.Image] | None = None


def output_colour(icc_profile: object, mode: str) -> OutputColour:
    """For RGB(A) pixels of `mode` read with the input's `icc_profile` (from `image.info`)."""
    # Outputs are RGB(A): a grey or CMYK profile would misdescribe them, so only RGB ones count.
    if not isinstance(icc_profile, bytes) or icc_profile[16:20] != b"RGB ":
        return OutputColour()
    if len(icc_profile) <= MAX_KEPT_PROFILE_BYTES:
        return OutputColour(icc_profile)
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        transform = ImageCms.buildTransform(source, _srgb(), mode, mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return OutputColour()  # a profile littleCMS cannot read describes nothing we can honour
    return OutputColour(_srgb().tobytes(), transform.apply)


def cmyk_converter(icc_profile: object) -> Callable[[Image.Image], Image.Image]:
    """CMYK pixels to sRGB, through the input's profile when it has one littleCMS reads."""
    if isinstance(icc_profile, bytes) and icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            # The embedded profile says what the inks look like; a plain convert guesses, badly.
            return ImageCms.buildTransform(source, _srgb(), "CMYK", "RGB").apply
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return lambda image: image.convert("RGB")


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
