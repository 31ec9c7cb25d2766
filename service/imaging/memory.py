"""What rendering an image holds in memory at its peak, known before anything is decoded.

Measured with VmHWM on 9 and 49 MP images in every input mode and output format; each figure
below is the most a step was seen to hold, so that the sum bounds the peak from above.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.imaging.decoding import Decode
from service.imaging.formats import OUTPUT_FORMATS, OutputSpec
from service.imaging.geometry import Plan

# The encoders' own buffers, per output pixel: libjpeg and zlib stream rows; libwebp and libavif
# copy the whole image into planes of their own, more when there is an alpha plane.
_ENCODER_BYTES_PER_PIXEL = {"JPEG": 0, "PNG": 0, "WEBP": 6, "AVIF": 18}
_ENCODER_ALPHA_BYTES_PER_PIXEL = {"JPEG": 0, "PNG": 0, "WEBP": 8, "AVIF": 4}
# Python objects, codec state and the encoded bytes themselves.
_WORKING_BYTES = 16 << 20


def peak_bytes(
    decode: Decode, outputs: Sequence[tuple[Plan, OutputSpec]], width: int, converts: bool
) -> int:
    """`width` is the upright image's; `converts` says whether outputs convert colours."""
    scale = decode.source_size[0] / width
    # Outputs are made one at a time, once only the source remains of the decode.
    derived = max(_output_bytes(decode, plan, spec, scale, converts) for plan, spec in outputs)
    return max(decode.bytes, derived) + _WORKING_BYTES


def _output_bytes(
    decode: Decode, plan: Plan, spec: OutputSpec, scale: float, converts: bool
) -> int:
    left, top, right, bottom = plan.region
    resampled = plan.size != (round((right - left) * scale), round((bottom - top) * scale))
    # Resampling holds an intermediate of up to the source's size, and for RGBA a premultiplied
    # copy of the source first; an output of the source's own size is a plain copy.
    sources = 1 + (1 + decode.has_alpha if resampled else 0)
    output = OUTPUT_FORMATS[spec.format]
    # The resampled image, then maybe a canvas (pad), a colour-converted copy, and a flattened
    # one (alpha to JPEG: RGB and the alpha channel as its mask); then the encoder's buffers.
    per_pixel = 4 + 4 * (plan.canvas is not None) + 4 * converts
    if decode.has_alpha and not output.has_alpha:
        per_pixel += 5
    per_pixel += _ENCODER_BYTES_PER_PIXEL[output.pillow_name]
    if decode.has_alpha and output.has_alpha:
        per_pixel += _ENCODER_ALPHA_BYTES_PER_PIXEL[output.pillow_name]
    out_width, out_height = plan.output_size
    return decode.source_bytes * sources + out_width * out_height * per_pixel
