"""The pure image functions: sizes, formats, alpha, and refusals."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from service import imaging
from tests.helpers import image_bytes, png_bomb, truncated_jpeg

LIMIT = 50_000_000


def decode(encoded: imaging.EncodedImage) -> Image.Image:
    return Image.open(io.BytesIO(encoded.data))


@pytest.mark.parametrize(
    ("source", "box", "expected"),
    [
        ((960, 640), (320, 320), (320, 213)),
        ((640, 960), (320, 320), (213, 320)),
        ((960, 640), (None, 100), (150, 100)),
        ((960, 640), (480, None), (480, 320)),
        ((100, 50), (400, 400), (100, 50)),  # never upscaled
    ],
)
def test_fit_keeps_the_aspect_ratio_inside_the_box(source, box, expected):
    spec = imaging.FitSpec(box[0], box[1], "png")

    encoded = imaging.fit(image_bytes(source), spec, LIMIT)

    assert (encoded.width, encoded.height) == expected
    assert decode(encoded).size == expected


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_output_is_encoded_in_the_requested_format(fmt):
    encoded = imaging.fit(image_bytes(), imaging.FitSpec(50, 50, fmt), LIMIT)

    assert decode(encoded).format == imaging.OUTPUT_FORMATS[fmt].pillow_name


def test_lower_quality_makes_a_smaller_jpeg():
    noisy = Image.effect_noise((400, 400), 60).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")

    high = imaging.fit(buffer.getvalue(), imaging.FitSpec(None, None, "jpeg", 95), LIMIT)
    low = imaging.fit(buffer.getvalue(), imaging.FitSpec(None, None, "jpeg", 30), LIMIT)

    assert len(low.data) < len(high.data) / 2


def test_transparency_is_flattened_onto_white_for_jpeg():
    clear = image_bytes((40, 40), fmt="PNG", mode="RGBA")  # red at half opacity

    encoded = imaging.fit(clear, imaging.FitSpec(None, None, "jpeg"), LIMIT)

    red, green, blue = decode(encoded).convert("RGB").getpixel((20, 20))  # type: ignore[misc]
    assert red > 200 and 130 < green < 160 and 130 < blue < 160


def test_transparency_is_kept_for_webp():
    clear = image_bytes((40, 40), fmt="PNG", mode="RGBA")

    encoded = imaging.fit(clear, imaging.FitSpec(None, None, "webp"), LIMIT)

    assert decode(encoded).mode == "RGBA"


def test_exif_orientation_is_applied():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.new("RGB", (200, 100), "blue").save(buffer, "JPEG", exif=exif)

    encoded = imaging.fit(buffer.getvalue(), imaging.FitSpec(None, None, "png"), LIMIT)

    assert (encoded.width, encoded.height) == (100, 200)


def test_large_jpeg_is_decoded_at_reduced_scale():
    photo = image_bytes((4000, 3000))
    with Image.open(io.BytesIO(photo)) as image:
        image.draft("RGB", (400, 300))
        drafted = image.size

    encoded = imaging.fit(photo, imaging.FitSpec(400, 400, "jpeg"), LIMIT)

    assert drafted == (500, 375)  # libjpeg's 1/8 scale: the full 12 MP are never decoded
    assert (encoded.width, encoded.height) == (400, 300)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "INVALID_IMAGE"),
        (b"plain text pretending to be a jpeg", "INVALID_IMAGE"),
        (b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "INVALID_IMAGE"),
    ],
)
def test_non_images_are_rejected_with_a_code(data, code):
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.inspect(data, LIMIT)

    assert caught.value.code == code


def test_truncated_image_is_rejected_when_decoded():
    truncated = truncated_jpeg()
    assert imaging.inspect(truncated, LIMIT).width == 800  # the header alone looks fine

    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.fit(truncated, imaging.FitSpec(100, 100), LIMIT)

    assert caught.value.code == "INVALID_IMAGE"


def test_pixel_limit_is_checked_from_the_header():
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.inspect(image_bytes((3000, 3000), fmt="PNG"), max_pixels=1_000_000)

    assert caught.value.code == "IMAGE_TOO_LARGE"


def test_decompression_bomb_beyond_pillows_own_limit_is_rejected():
    # 10^10 pixels: Pillow's own bomb guard fires inside open(), before our limit is checked.
    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.inspect(png_bomb(100_000, 100_000), LIMIT)

    assert caught.value.code == "IMAGE_TOO_LARGE"
