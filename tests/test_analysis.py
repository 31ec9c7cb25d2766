"""The local analysis, on generated images whose truth we know."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from service.imaging import ImageRejected, analysis
from tests.support.analysis_scenes import encode, scene
from tests.support.images import png_bomb

LIMIT = 50_000_000


def analyze(image: Image.Image, fmt: str = "PNG", **options: Any) -> dict[str, Any]:
    return analysis.analyze(encode(image, fmt, **options), LIMIT)


def with_noise(image: Image.Image, amount: float = 0.3) -> Image.Image:
    grain = Image.effect_noise(image.size, 40).convert("RGB")
    return Image.blend(image, grain, amount)


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return scene()


@pytest.fixture(scope="module")
def measured(original: Image.Image) -> dict[str, Any]:
    return analyze(original)


def test_header_fields_describe_the_file(original):
    result = analyze(original, "JPEG", quality=90)

    assert (result["width"], result["height"], result["format"], result["mode"]) == (
        800,
        600,
        "JPEG",
        "RGB",
    )
    assert (result["has_alpha"], result["animated"], result["frames"]) == (False, False, 1)


def test_a_clean_structured_image_grades_high(measured):
    assert measured["quality"] == {"grade": "high", "reasons": []}
    assert 0.2 < measured["brightness"] < 0.8 and measured["contrast"] > 0.2


def test_blurring_lowers_sharpness_and_is_called_blurry(original, measured):
    blurred = analyze(original.filter(ImageFilter.GaussianBlur(4)))

    assert blurred["sharpness"] < measured["sharpness"] / 3
    assert "blurry" in blurred["quality"]["reasons"]


def test_darkening_lowers_brightness_and_is_called_dark(original, measured):
    darkened = analyze(ImageEnhance.Brightness(original).enhance(0.3))

    assert darkened["brightness"] < measured["brightness"] / 2
    assert "dark" in darkened["quality"]["reasons"]


def test_blowing_out_is_called_overexposed(original):
    brightened = analyze(ImageEnhance.Brightness(original).enhance(5))

    assert "overexposed" in brightened["quality"]["reasons"]


def test_flattening_is_called_low_contrast(original, measured):
    flattened = analyze(ImageEnhance.Contrast(original).enhance(0.15))

    assert flattened["contrast"] < measured["contrast"] / 4
    assert "low_contrast" in flattened["quality"]["reasons"]


def test_added_grain_raises_noise_and_is_called_noisy(original, measured):
    grainy = analyze(with_noise(original))

    assert grainy["noise"] > 10 * max(measured["noise"], 0.1)
    assert "noisy" in grainy["quality"]["reasons"]


def test_a_small_image_is_too_small(original):
    small = analyze(original.resize((300, 200)))

    assert "too_small" in small["quality"]["reasons"]


def test_several_flaws_grade_low(original):
    dark_and_blurred = ImageEnhance.Brightness(original.filter(ImageFilter.GaussianBlur(4)))

    result = analyze(dark_and_blurred.enhance(0.3))

    assert result["quality"]["grade"] == "low"


def test_a_pure_red_image_is_all_red():
    [red] = analyze(Image.new("RGB", (600, 600), (255, 0, 0)))["dominant_colors"]

    assert red == {"hex": "#ff0000", "share": 1.0}


def test_two_colours_come_out_with_their_shares():
    image = Image.new("RGB", (1000, 600), (0, 0, 255))
    ImageDraw.Draw(image).rectangle((700, 0, 999, 599), fill=(255, 255, 0))

    blue, yellow = analyze(image)["dominant_colors"][:2]

    assert blue["hex"] == "#0000ff" and blue["share"] == pytest.approx(0.7, abs=0.02)
    assert yellow["hex"] == "#ffff00" and yellow["share"] == pytest.approx(0.3, abs=0.02)


def test_close_shades_merge_into_one_colour():
    image = Image.new("RGB", (600, 600), (200, 30, 30))
    ImageDraw.Draw(image).rectangle((300, 0, 599, 599), fill=(206, 34, 30))

    [red] = analyze(image)["dominant_colors"]

    assert red["share"] == 1.0


def test_dominant_colours_are_at_most_five_sorted_by_share(measured):
    shares = [color["share"] for color in measured["dominant_colors"]]

    assert 1 < len(shares) <= 5
    assert shares == sorted(shares, reverse=True)


@pytest.mark.parametrize(
    "copy",
    [
        lambda image: encode(image.resize((400, 300), Image.Resampling.LANCZOS)),
        lambda image: encode(image, "JPEG", quality=70),
    ],
    ids=["resized-to-half", "jpeg-q70"],
)
def test_copies_hash_close_to_the_original(original, measured, copy):
    result = analysis.analyze(copy(original), LIMIT)

    assert analysis.hash_distance(measured["phash"], result["phash"]) <= 6
    assert analysis.hash_distance(measured["dhash"], result["dhash"]) <= 6


def test_an_unrelated_image_hashes_far_away(measured):
    unrelated = analyze(scene(seed=2))

    assert analysis.hash_distance(measured["phash"], unrelated["phash"]) >= 20
    assert analysis.hash_distance(measured["dhash"], unrelated["dhash"]) >= 20


def test_hashes_are_64_bit_hex(measured):
    assert all(len(measured[h]) == 16 and int(measured[h], 16) >= 0 for h in ("phash", "dhash"))


def test_hash_distance_counts_differing_bits():
    assert analysis.hash_distance("0" * 16, "f" * 16) == 64
    assert analysis.hash_distance("00000000000000ff", "000000000000000f") == 4


def test_transparent_pixels_are_not_counted_as_colour():
    image = Image.new("RGBA", (600, 600), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 299, 599), fill=(0, 160, 0, 255))

    result = analyze(image)

    assert result["has_alpha"] is True
    assert result["dominant_colors"] == [{"hex": "#00a000", "share": 1.0}]


def test_an_animated_gif_reports_its_frames():
    frames = [scene((200, 150), seed=s).convert("P") for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)

    result = analysis.analyze(buffer.getvalue(), LIMIT)

    assert (result["format"], result["animated"], result["frames"]) == ("GIF", True, 3)


def test_a_large_jpeg_is_measured_like_its_smaller_copy(original):
    large = analyze(original.resize((3200, 2400), Image.Resampling.LANCZOS), "JPEG", quality=92)
    small = analyze(original, "JPEG", quality=92)

    assert (large["width"], large["height"]) == (3200, 2400)
    assert large["brightness"] == pytest.approx(small["brightness"], abs=0.02)
    assert analysis.hash_distance(large["phash"], small["phash"]) <= 6


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"not an image", "INVALID_IMAGE"), (png_bomb(20_000, 20_000), "IMAGE_TOO_LARGE")],
)
def test_undecodable_or_oversized_bytes_are_rejected(data, code):
    with pytest.raises(ImageRejected) as caught:
        analysis.analyze(data, LIMIT)

    assert caught.value.code == code
