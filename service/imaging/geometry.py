"""Where each output comes from: a region of the upright source and the size it becomes."""

from __future__ import annotations

from dataclasses import dataclass

from service.imaging.formats import GRAVITIES, ImageRejected, OutputSpec


@dataclass(frozen=True)
class Plan:
    """Where one output comes from and how big it ends up, in source pixels."""

    region: tuple[float, float, float, float]  # left, top, right, bottom
    size: tuple[int, int]  # the region is resampled to this
    canvas: tuple[int, int] | None = None  # pad: the resampled region is centred on this

    @property
    def output_size(self) -> tuple[int, int]:
        return self.canvas or self.size

    @property
    def detail(self) -> float:
        """The fraction of the source's resolution this output needs (1 = every pixel)."""
        left, top, right, bottom = self.region
        return min(1.0, max(self.size[0] / (right - left), self.size[1] / (bottom - top)))


def plan(spec: OutputSpec, width: int, height: int) -> Plan:
    if spec.mode == "fill":
        return _fill_plan(spec, width, height)
    if spec.mode == "crop" and spec.box is not None:
        return _crop_plan(spec, spec.box, width, height)
    size = _fit_size(width, height, spec)
    if spec.mode == "pad":
        canvas = (spec.width or size[0], spec.height or size[1])
        return Plan((0, 0, width, height), size, canvas)
    return Plan((0, 0, width, height), size)


def _fit_size(width: float, height: float, spec: OutputSpec) -> tuple[int, int]:
    bounds = ((spec.width, width), (spec.height, height), (spec.max_side, max(width, height)))
    scale = min((limit / side for limit, side in bounds if limit), default=1.0)
    if not spec.upscale:
        scale = min(scale, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _fill_plan(spec: OutputSpec, width: int, height: int) -> Plan:
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
    return Plan((left, top, left + crop_w, top + crop_h), (out_w, out_h))


def _crop_plan(spec: OutputSpec, box: tuple[int, int, int, int], width: int, height: int) -> Plan:
    left, top, box_w, box_h = box
    if left + box_w > width or top + box_h > height:
        raise ImageRejected(
            "CROP_OUTSIDE_IMAGE",
            f"crop box {box_w}x{box_h} at ({left}, {top}) is outside the {width}x{height} image",
        )
    return Plan((left, top, left + box_w, top + box_h), _fit_size(box_w, box_h, spec))


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))
