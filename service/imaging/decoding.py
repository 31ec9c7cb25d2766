"""Decoding once: as small as the most detailed output allows, and never held twice whole.

A decode's memory is known before it starts (`Decode.bytes`), so a worker can admit it against
its budget. Decoded pixels are converted to RGB(A) and reduced a band of rows at a time, into
the smaller source every output is derived from: only the decoded image is ever full size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from service.imaging.colour import cmyk_converter

# Integer box reduction first, LANCZOS only for the last factor of three: as sharp as a full
# LANCZOS resample to the eye, at a fraction of the work.
REDUCING_GAP = 3.0
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
# Rows are converted and reduced this many pixels at a time: 1 MiB of RGBA, under the size from
# which the jobs worker maps memory afresh (service/imaging/allocator.py), so bands reuse the heap.
_BAND_PIXELS = 1 << 18
# A band is held three times: cut out (up to 4 bytes a pixel), converted (4), premultiplied (4).
_BAND_BYTES_PER_PIXEL = 12
# Pillow keeps 1, L and P in a byte a pixel, I;16 in two, every other mode (RGB too) in four.
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
# libwebp and libavif decode into canvases of their own and hand Pillow a copy as bytes, which it
# decodes again: a 49 MP WebP peaks at four times its pixels (748 MiB) while it loads.
_DECODER_COPIES = {"WEBP": 4, "AVIF": 4}


def orientation(image: Image.Image) -> int:
    """The EXIF orientation, read without decoding."""
    # Image.getexif, not the file's own: PNG's decodes every pixel in search of an eXIf chunk
    # after them (the spec puts it before, where opening the file has read it already).
    return int(Image.Image.getexif(image).get(_ORIENTATION_TAG, 1))


def oriented_size(image: Image.Image, orientation: int) -> tuple[int, int]:
    # Orientations 5-8 turn the picture a quarter: the caller's width is the stored height.
    if orientation in (5, 6, 7, 8):
        return image.height, image.width
    return image.width, image.height


@dataclass(frozen=True)
class Decode:
    """How an opened image is decoded: at the draft size its format allows, then reduced by
    `factor`, converted to RGB(A) and turned upright."""

    image: Image.Image
    factor: int
    orientation: int

    @classmethod
    def plan(cls, image: Image.Image, detail: float, orientation: int) -> Decode:
        """`detail` is the fraction of the full resolution the most detailed output needs."""
        full_width = image.width
        # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale, never below the size asked for: a
        # 24 MP photo is never fully decoded to make a thumbnail. Other formats ignore it.
        image.draft("RGB", (math.ceil(image.width * detail), math.ceil(image.height * detail)))
        surplus = image.width / full_width / detail
        # What the decoder gives beyond what the most detailed output needs goes in one cheap
        # integer reduction here, rather than in every output's own resample.
        return cls(image, max(1, int(surplus / REDUCING_GAP)), orientation)

    @classmethod
    def within(cls, image: Image.Image, side: int) -> Decode:
        """To make an upright image of at most `side` pixels a side from an opened one."""
        return cls.plan(image, min(1.0, side / max(image.size)), orientation(image))

    @property
    def source_size(self) -> tuple[int, int]:
        """The source every output is derived from, upright."""
        width, height = oriented_size(self.image, self.orientation)
        return -(-width // self.factor), -(-height // self.factor)

    @property
    def source_bytes(self) -> int:
        """The source's pixels: RGB(A), four bytes each."""
        width, height = self.source_size
        return width * height * 4

    @property
    def has_alpha(self) -> bool:
        return _target_mode(self.image) == "RGBA"

    @property
    def bytes(self) -> int:
        """The most memory the decode holds at once: the decoded image, and while it is reduced
        and converted, the source and a band, then the source's upright copy."""
        width, height = self.image.size
        copies = _DECODER_COPIES.get(self.image.format or "", 1)
        held = width * height * _pixel_bytes(self.image.mode) * copies
        if self._in_bands:
            band = _band_rows(width, self.factor) * width * _BAND_BYTES_PER_PIXEL
            held += self.source_bytes + band
        if self.orientation in _TRANSPOSITIONS:
            held += self.source_bytes
        return held

    @property
    def _in_bands(self) -> bool:
        # A WebP or AVIF image keeps its decoder's copies while it lives: the source is a new
        # image, so they go as soon as it is decoded.
        if self.factor > 1 or (self.image.format or "") in _DECODER_COPIES:
            return True
        return self.image.mode != _target_mode(self.image)

    def run(self) -> Image.Image:
        """Decode (a damaged file fails here), convert, reduce and turn upright."""
        self.image.load()
        source = self.image
        if self._in_bands:
            source = _in_bands(self.image, self.factor, _converter(self.image))
        method = _TRANSPOSITIONS.get(self.orientation)
        return source if method is None else source.transpose(method)


def _pixel_bytes(mode: str) -> int:
    return 1 if mode in _ONE_BYTE_MODES else 2 if mode.startswith("I;16") else 4


def _band_rows(width: int, factor: int) -> int:
    # A whole number of reduction blocks, so that each band reduces as the whole image would.
    return max(1, _BAND_PIXELS // width // factor) * factor


def _target_mode(image: Image.Image) -> str:
    # Resampling works in RGB(A): palette images would otherwise be resized by nearest neighbour.
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    return "RGBA" if has_alpha else "RGB"


def _converter(image: Image.Image) -> Callable[[Image.Image], Image.Image] | None:
    if image.mode == "CMYK":
        return cmyk_converter(image.info.get("icc_profile"))
    target = _target_mode(image)
    return None if image.mode == target else lambda band: band.convert(target)


def _in_bands(
    image: Image.Image, factor: int, convert: Callable[[Image.Image], Image.Image] | None
) -> Image.Image:
    # Whole, both steps would copy the decoded image: a conversion to RGB(A) makes a new one,
    # and reducing RGBA premultiplies its alpha into another. A band at a time, they copy a band.
    rows = _band_rows(image.width, factor)
    source: Image.Image | None = None
    for top in range(0, image.height, rows):
        band = image.crop((0, top, image.width, min(top + rows, image.height)))
        if convert is not None:
            band = convert(band)
        if factor > 1:
            band = band.reduce(factor)
        if source is None:
            size = (-(-image.width // factor), -(-image.height // factor))
            source = Image.new(band.mode, size)
        source.paste(band, (0, top // factor))
    assert source is not None, "an image has at least one row"
    return source
