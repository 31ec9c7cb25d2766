"""Pure Pillow functions: bytes in, bytes out. No Redis, no HTTP."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError, features

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

# Integer box reduction first, LANCZOS only for the last factor of three: as sharp as a full
# LANCZOS resample to the eye, at a fraction of the work.
_REDUCING_GAP = 3.0
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class OutputFormat:
    pillow_name: str
    media_type: str
    extension: str
    has_alpha: bool


def _output_formats() -> dict[str, OutputFormat]:
    formats = {
        "jpeg": OutputFormat("JPEG", "image/jpeg", "jpg", has_alpha=False),
        "png": OutputFormat("PNG", "image/png", "png", has_alpha=True),
        "webp": OutputFormat("WEBP", "image/webp", "webp", has_alpha=True),
    }
    # Pillow builds without libavif exist; offer only what this install can encode.
    if features.check("avif"):
        formats["avif"] = OutputFormat("AVIF", "image/avif", "avif", has_alpha=True)
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


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: OutputFormat
    width: int
    height: int


@dataclass(frozen=True)
class _Plan:
    """Where one output comes from and how big it ends up, in source pixels."""

    region: tuple[float, float, float, float]  # left, top, right, bottom
    size: tuple[int, int]  # the region is resampled to this
    canvas: tuple[int, int] | None = None  # pad: the resampled region is centred on this

    @property
    def detail(self) -> float:
        """The fraction of the source's resolution this output needs (1 = every pixel)."""
        left, top, right, bottom = self.region
        return min(1.0, max(self.size[0] / (right - left), self.size[1] / (bottom - top)))


def inspect(data: bytes, max_pixels: int, max_frames: int | None = None) -> ImageInfo:
    """Read only the headers: format, size and frames, with the pixel and frame limits applied."""
    with _open(data, max_pixels) as image:
        frames = int(getattr(image, "n_frames", 1))
        if max_frames is not None and frames > max_frames:
            raise ImageRejected(
                "TOO_MANY_FRAMES", f"image has {frames} frames; the limit is {max_frames}"
            )
        return ImageInfo(image.format or "", image.width, image.height, image.mode, frames)


def transform(data: bytes, spec: OutputSpec, max_pixels: int) -> EncodedImage:
    """One output from one image."""
    return render(data, {"default": spec}, max_pixels)["default"]


def render(
    data: bytes, specs: Mapping[str, OutputSpec], max_pixels: int
) -> dict[str, EncodedImage]:
    """Decode once, at the resolution the most detailed output needs, then derive every output."""
    with _open(data, max_pixels) as image, _damage_rejected():
        width, height = _oriented_size(image)
        plans = {name: _plan(spec, width, height) for name, spec in specs.items()}
        source = _decode(image, max(plan.detail for plan in plans.values()))
    scale = source.width / width
    icc_profile = _rgb_profile(source)
    return {
        name: _encode(_derive(source, plans[name], scale, spec), spec, icc_profile)
        for name, spec in specs.items()
    }


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


@contextmanager
def _damage_rejected() -> Iterator[None]:
    # Pillow reports damage past the header (pixel data, EXIF) with several exception types.
    try:
        yield
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("INVALID_IMAGE", f"image data is damaged: {exc}") from exc


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    # Orientations 5-8 turn the picture a quarter: the caller's width is the stored height.
    if image.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8):
        return image.height, image.width
    return image.width, image.height


# Geometry: every output as a region of the (upright) source and the size it is resampled to.


def _plan(spec: OutputSpec, width: int, height: int) -> _Plan:
    if spec.mode == "fill":
        return _fill_plan(spec, width, height)
    if spec.mode == "crop" and spec.box is not None:
        return _crop_plan(spec, spec.box, width, height)
    size = _fit_size(width, height, spec)
    if spec.mode == "pad":
        canvas = (spec.width or size[0], spec.height or size[1])
        return _Plan((0, 0, width, height), size, canvas)
    return _Plan((0, 0, width, height), size)


def _fit_size(width: float, height: float, spec: OutputSpec) -> tuple[int, int]:
    bounds = ((spec.width, width), (spec.height, height), (spec.max_side, max(width, height)))
    scale = min((limit / side for limit, side in bounds if limit), default=1.0)
    if not spec.upscale:
        scale = min(scale, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _fill_plan(spec: OutputSpec, width: int, height: int) -> _Plan:
    out_w, out_h = spec.width or width, spec.height or height
    aspect = out_w / out_h
    # The largest region of the output's shape that the source holds.
    crop_w, crop_h = (
        (height * aspect, float(height)) if width / height > aspect else (width, width / aspect)
    )
    focus_x, focus_y = spec.focal_point or GRAVITIES[spec.gravity]
    left = _clamp(focus_x * width - crop_w / 2, 0, width - crop_w)
    top = _clamp(focus_y * height - crop_h / 2, 0, height - crop_h)
    if out_w > crop_w and not spec.upscale:
        out_w, out_h = max(1, round(crop_w)), max(1, round(crop_h))
    return _Plan((left, top, left + crop_w, top + crop_h), (out_w, out_h))


def _crop_plan(spec: OutputSpec, box: tuple[int, int, int, int], width: int, height: int) -> _Plan:
    left, top, box_w, box_h = box
    if left + box_w > width or top + box_h > height:
        raise ImageRejected(
            "CROP_OUTSIDE_IMAGE",
            f"crop box {box_w}x{box_h} at ({left}, {top}) is outside the {width}x{height} image",
        )
    return _Plan((left, top, left + box_w, top + box_h), _fit_size(box_w, box_h, spec))


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))


# Decoding: once, as small as the most detailed output allows.


def _decode(image: Image.Image, detail: float) -> Image.Image:
    full_width = image.width
    # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale, never below the size asked for: a 24 MP
    # photo is never fully decoded to make a thumbnail. Other formats ignore it.
    image.draft("RGB", (math.ceil(image.width * detail), math.ceil(image.height * detail)))
    image.load()  # the file closes with the caller's `with`; a damaged one fails here
    surplus = image.width / full_width / detail
    ImageOps.exif_transpose(image, in_place=True)
    normalised = _normalise_mode(image)
    # Whatever the decoder gave beyond what the most detailed output needs goes in one cheap
    # integer reduction here, rather than in every output's own resample.
    factor = int(surplus / _REDUCING_GAP)
    return normalised.reduce(factor) if factor > 1 else normalised


def _normalise_mode(image: Image.Image) -> Image.Image:
    # Resampling works in RGB(A): palette images would otherwise be resized by nearest neighbour.
    if image.mode == "CMYK":
        return _cmyk_to_srgb(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    target = "RGBA" if has_alpha else "RGB"
    return image if image.mode == target else image.convert(target)


def _cmyk_to_srgb(image: Image.Image) -> Image.Image:
    icc_profile = image.info.get("icc_profile")
    if not icc_profile:
        converted = image.convert("RGB")
    else:
        # The embedded profile says what the inks look like; a plain convert guesses, badly.
        source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        transformed = ImageCms.profileToProfile(image, source_profile, srgb, outputMode="RGB")
        converted = transformed if transformed is not None else image.convert("RGB")
    converted.info.pop("icc_profile", None)  # a CMYK profile would misdescribe RGB pixels
    return converted


def _rgb_profile(image: Image.Image) -> bytes | None:
    # Outputs are RGB(A): a grey or CMYK profile would misdescribe them, so only RGB ones are kept.
    icc_profile = image.info.get("icc_profile")
    if isinstance(icc_profile, bytes) and icc_profile[16:20] == b"RGB ":
        return icc_profile
    return None


# Deriving and encoding each output.


def _derive(source: Image.Image, plan: _Plan, scale: float, spec: OutputSpec) -> Image.Image:
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


def _encode(image: Image.Image, spec: OutputSpec, icc_profile: bytes | None) -> EncodedImage:
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
    elif output.pillow_name == "WEBP" and spec.lossless:
        # `exact` keeps the colour under transparent pixels: lossless means every byte back.
        options.update(lossless=True, exact=True)
    if icc_profile:
        options["icc_profile"] = icc_profile
    buffer = io.BytesIO()
    image.save(buffer, output.pillow_name, **options)
    return buffer.getvalue()


def _format_list() -> str:
    return ", ".join(sorted(INPUT_FORMATS))
