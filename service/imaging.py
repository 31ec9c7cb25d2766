"""Pure Pillow functions: bytes in, bytes out. No Redis, no HTTP."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Formats we decode. Anything else (SVG, PDF, PSD, ...) is refused before Pillow touches it further.
INPUT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"})


@dataclass(frozen=True)
class OutputFormat:
    pillow_name: str
    media_type: str
    extension: str
    has_alpha: bool


OUTPUT_FORMATS = {
    "jpeg": OutputFormat("JPEG", "image/jpeg", "jpg", has_alpha=False),
    "png": OutputFormat("PNG", "image/png", "png", has_alpha=True),
    "webp": OutputFormat("WEBP", "image/webp", "webp", has_alpha=True),
}


class ImageRejected(ValueError):
    """The bytes are not an image we can work with; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str


@dataclass(frozen=True)
class FitSpec:
    """Resize to fit inside width x height (either may be None), never upscaling."""

    width: int | None
    height: int | None
    format: str = "jpeg"
    quality: int = 85


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: OutputFormat
    width: int
    height: int


def inspect(data: bytes, max_pixels: int) -> ImageInfo:
    """Read only the header: format and size, with the pixel limit applied."""
    with _open(data, max_pixels) as image:
        return ImageInfo(image.format or "", image.width, image.height, image.mode)


def fit(data: bytes, spec: FitSpec, max_pixels: int) -> EncodedImage:
    """Decode (at reduced scale where the format allows), orient, resize to fit, encode."""
    output = OUTPUT_FORMATS[spec.format]
    with _open(data, max_pixels) as image:
        try:
            resized = _decode_to_fit(image, spec)
        except (OSError, SyntaxError) as exc:
            raise ImageRejected("INVALID_IMAGE", f"image data is damaged: {exc}") from exc
    converted = _convert_for(resized, output)
    buffer = io.BytesIO()
    converted.save(buffer, output.pillow_name, **_save_options(output, spec.quality))
    return EncodedImage(buffer.getvalue(), output, converted.width, converted.height)


def _decode_to_fit(image: Image.Image, spec: FitSpec) -> Image.Image:
    # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale: a 24 MP photo is never fully decoded.
    # The EXIF orientation is not known yet, so ask for enough pixels for either rotation.
    upright = _fit_size(image.width, image.height, spec.width, spec.height)
    turned = _fit_size(image.width, image.height, spec.height, spec.width)
    image.draft("RGB", (max(upright[0], turned[0]), max(upright[1], turned[1])))
    oriented = ImageOps.exif_transpose(image)
    target = _fit_size(oriented.width, oriented.height, spec.width, spec.height)
    if target == oriented.size:
        return oriented
    # reducing_gap: integer box reduction first, LANCZOS only for the last factor of three.
    return oriented.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _open(data: bytes, max_pixels: int) -> Image.Image:
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
            "INVALID_IMAGE", f"not an image in a supported format ({_format_list()})"
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


def _fit_size(width: int, height: int, max_w: int | None, max_h: int | None) -> tuple[int, int]:
    scale = min(
        1.0,
        (max_w / width) if max_w else 1.0,
        (max_h / height) if max_h else 1.0,
    )
    return max(1, round(width * scale)), max(1, round(height * scale))


def _convert_for(image: Image.Image, output: OutputFormat) -> Image.Image:
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha and output.has_alpha:
        return image.convert("RGBA")
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def _save_options(output: OutputFormat, quality: int) -> dict[str, object]:
    if output.pillow_name == "PNG":
        return {"optimize": True}
    return {"quality": quality}


def _format_list() -> str:
    return ", ".join(sorted(INPUT_FORMATS))
