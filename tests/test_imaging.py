"""The pure image functions: sizes, formats, alpha, and refusals."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from PIL import Image, ImageCms, ImageFile

from service import imaging
from tests.support import icc_profiles
from tests.support.images import image_bytes, png_bomb, truncated_jpeg

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
    spec = imaging.OutputSpec(width=box[0], height=box[1], format="png")

    encoded = imaging.transform(image_bytes(source), spec, LIMIT)

    assert (encoded.width, encoded.height) == expected
    assert decode(encoded).size == expected


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_output_is_encoded_in_the_requested_format(fmt):
    encoded = imaging.transform(
        image_bytes(), imaging.OutputSpec(width=50, height=50, format=fmt), LIMIT
    )

    assert decode(encoded).format == imaging.OUTPUT_FORMATS[fmt].pillow_name


def test_lower_quality_makes_a_smaller_jpeg():
    noisy = Image.effect_noise((400, 400), 60).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")

    high = imaging.transform(
        buffer.getvalue(), imaging.OutputSpec(format="jpeg", quality=95), LIMIT
    )
    low = imaging.transform(buffer.getvalue(), imaging.OutputSpec(format="jpeg", quality=30), LIMIT)

    assert len(low.data) < len(high.data) / 2


def test_transparency_is_flattened_onto_white_for_jpeg():
    clear = image_bytes((40, 40), fmt="PNG", mode="RGBA")  # red at half opacity

    encoded = imaging.transform(clear, imaging.OutputSpec(format="jpeg"), LIMIT)

    red, green, blue = decode(encoded).convert("RGB").getpixel((20, 20))  # type: ignore[misc]
    assert red > 200 and 130 < green < 160 and 130 < blue < 160


def test_transparency_is_kept_for_webp():
    clear = image_bytes((40, 40), fmt="PNG", mode="RGBA")

    encoded = imaging.transform(clear, imaging.OutputSpec(format="webp"), LIMIT)

    assert decode(encoded).mode == "RGBA"


def test_exif_orientation_is_applied():
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.new("RGB", (200, 100), "blue").save(buffer, "JPEG", exif=exif)

    encoded = imaging.transform(buffer.getvalue(), imaging.OutputSpec(format="png"), LIMIT)

    assert (encoded.width, encoded.height) == (100, 200)


def test_large_jpeg_is_decoded_at_reduced_scale():
    photo = image_bytes((4000, 3000))
    with Image.open(io.BytesIO(photo)) as image:
        image.draft("RGB", (400, 300))
        drafted = image.size

    encoded = imaging.transform(photo, imaging.OutputSpec(width=400, height=400), LIMIT)

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
        imaging.transform(truncated, imaging.OutputSpec(width=100, height=100), LIMIT)

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


# Modes, geometry and upscaling.

RED, BLUE = (255, 0, 0), (0, 0, 255)


def halves(size=(200, 100), split="vertical"):
    """Red in the left (or top) half, blue in the other: a crop's colour says where it came from."""
    image = Image.new("RGB", size, BLUE)
    left_or_top = (
        (0, 0, size[0] // 2, size[1]) if split == "vertical" else (0, 0, size[0], size[1] // 2)
    )
    image.paste(RED, left_or_top)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def centre_colour(encoded):
    image = decode(encoded).convert("RGB")
    return image.getpixel((image.width // 2, image.height // 2))


def is_near(colour, expected, tolerance=40):
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (imaging.OutputSpec(mode="fit", width=50, height=50), (50, 25)),
        (imaging.OutputSpec(mode="fit", max_side=80), (80, 40)),
        (imaging.OutputSpec(mode="fill", width=50, height=50), (50, 50)),
        (imaging.OutputSpec(mode="crop", box=(10, 10, 60, 40)), (60, 40)),
        (imaging.OutputSpec(mode="crop", box=(10, 10, 60, 40), width=30), (30, 20)),
        (imaging.OutputSpec(mode="pad", width=60, height=60), (60, 60)),
    ],
)
def test_each_mode_makes_its_size(spec, expected):
    encoded = imaging.transform(halves(), spec, LIMIT)

    assert (encoded.width, encoded.height) == expected == decode(encoded).size


@pytest.mark.parametrize(
    ("split", "gravity", "expected"),
    [
        ("vertical", "west", RED),
        ("vertical", "east", BLUE),
        ("vertical", "northwest", RED),
        ("vertical", "southeast", BLUE),
        ("horizontal", "north", RED),
        ("horizontal", "south", BLUE),
    ],
)
def test_fill_gravity_keeps_that_side(split, gravity, expected):
    source = halves((200, 100) if split == "vertical" else (100, 200), split)
    spec = imaging.OutputSpec(mode="fill", width=40, height=40, gravity=gravity, format="png")

    assert centre_colour(imaging.transform(source, spec, LIMIT)) == expected


@pytest.mark.parametrize(("x", "expected"), [(0.1, RED), (0.9, BLUE)])
def test_fill_focal_point_picks_the_region(x, expected):
    spec = imaging.OutputSpec(mode="fill", width=40, height=40, focal_point=(x, 0.5), format="png")

    assert centre_colour(imaging.transform(halves(), spec, LIMIT)) == expected


def test_crop_takes_the_box_in_source_pixels():
    spec = imaging.OutputSpec(mode="crop", box=(120, 20, 50, 50), format="png")

    assert centre_colour(imaging.transform(halves(), spec, LIMIT)) == BLUE


def test_crop_box_outside_the_image_is_refused():
    spec = imaging.OutputSpec(mode="crop", box=(180, 0, 50, 50))

    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.transform(halves(), spec, LIMIT)

    assert caught.value.code == "CROP_OUTSIDE_IMAGE"


def test_crop_box_is_in_upright_pixels_after_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 200x100, shown turned 90° clockwise: the left half ends on top
    buffer = io.BytesIO()
    Image.open(io.BytesIO(halves())).save(buffer, "JPEG", exif=exif)
    spec = imaging.OutputSpec(mode="crop", box=(0, 0, 100, 80), format="png")

    encoded = imaging.transform(buffer.getvalue(), spec, LIMIT)

    assert (encoded.width, encoded.height) == (100, 80)
    assert is_near(centre_colour(encoded), RED)


def test_pad_fills_the_border_with_the_background():
    spec = imaging.OutputSpec(mode="pad", width=100, height=100, background=(0, 255, 0))

    image = decode(imaging.transform(halves(), spec, LIMIT)).convert("RGB")

    assert image.size == (100, 100)
    assert is_near(image.getpixel((50, 5)), (0, 255, 0))  # above the 100x50 picture
    assert is_near(image.getpixel((10, 50)), RED)


@pytest.mark.parametrize(
    ("mode", "upscale", "expected"),
    [
        ("fit", False, (100, 50)),
        ("fit", True, (400, 200)),
        ("fill", False, (50, 50)),
        ("fill", True, (400, 400)),
        ("pad", False, (400, 400)),  # the canvas is exact; the picture inside stays 100x50
    ],
)
def test_upscaling_only_when_asked(mode, upscale, expected):
    spec = imaging.OutputSpec(mode=mode, width=400, height=400, upscale=upscale, format="png")

    encoded = imaging.transform(halves((100, 50)), spec, LIMIT)

    assert (encoded.width, encoded.height) == expected


# Encoding options.


def noise_png(size=(400, 400)):
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_max_bytes_finds_a_quality_that_fits(fmt):
    effort = imaging.BUDGET_WEBP_EFFORT  # what jobs with a budget get
    spec = imaging.OutputSpec(format=fmt, quality=95, max_bytes=80_000, effort=effort)

    encoded = imaging.transform(noise_png(), spec, LIMIT)

    assert 60_000 < len(encoded.data) <= 80_000  # the best quality that fits, not the lowest
    assert decode(encoded).size == (400, 400)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_max_bytes_that_nothing_fits_fails_the_output(fmt):
    spec = imaging.OutputSpec(format=fmt, max_bytes=500)

    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.transform(noise_png(), spec, LIMIT)

    assert caught.value.code == "OUTPUT_TOO_LARGE"


@pytest.mark.parametrize(
    ("size", "fmt", "limit"), [((20_000, 1), "webp", 16_383), ((1, 65_535), "jpeg", 65_500)]
)
def test_an_output_larger_than_its_format_allows_is_refused_before_decoding(
    decoded_sizes, size, fmt, limit
):
    """Issue 15, item 21: the encoder refused these after the whole decode, as INTERNAL_ERROR."""
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, "PNG")

    with pytest.raises(imaging.ImageRejected) as caught:
        imaging.transform(buffer.getvalue(), imaging.OutputSpec(format=fmt), LIMIT, max_side=10**5)

    assert caught.value.code == "OUTPUT_SIDE_TOO_LARGE"
    assert f"{fmt} images are at most {limit} pixels a side" in str(caught.value)
    assert decoded_sizes == []


def test_progressive_jpeg_is_flagged():
    encoded = imaging.transform(noise_png(), imaging.OutputSpec(progressive=True), LIMIT)

    assert decode(encoded).info.get("progressive")


def test_lossless_webp_gives_back_every_pixel():
    source = noise_png((64, 48))
    spec = imaging.OutputSpec(format="webp", lossless=True)

    encoded = imaging.transform(source, spec, LIMIT)

    assert decode(encoded).convert("RGB").tobytes() == Image.open(io.BytesIO(source)).tobytes()


def test_webp_effort_trades_encoding_time_for_bytes():
    source = noise_png()

    def webp_bytes(spec: imaging.OutputSpec) -> int:
        return len(imaging.transform(source, spec, LIMIT).data)

    fast, small = (imaging.OutputSpec(format="webp", effort=e) for e in (2, 6))
    assert webp_bytes(small) < webp_bytes(fast)
    default = imaging.OutputSpec(format="webp")
    assert webp_bytes(default) == webp_bytes(replace(default, effort=imaging.DEFAULT_WEBP_EFFORT))


def test_lossless_webp_at_the_lowest_effort_is_still_lossless():
    source = noise_png((64, 48))
    spec = imaging.OutputSpec(format="webp", lossless=True, effort=0)

    encoded = imaging.transform(source, spec, LIMIT)

    assert decode(encoded).convert("RGB").tobytes() == Image.open(io.BytesIO(source)).tobytes()


@pytest.mark.skipif("avif" not in imaging.OUTPUT_FORMATS, reason="Pillow built without AVIF")
def test_avif_output():
    encoded = imaging.transform(image_bytes(), imaging.OutputSpec(width=100, format="avif"), LIMIT)

    assert decode(encoded).format == "AVIF"
    assert encoded.format.media_type == "image/avif"


# Metadata and colour.


def srgb_profile():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_exif_is_stripped_and_the_icc_profile_kept(fmt):
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), "blue").save(buffer, "JPEG", exif=exif, icc_profile=srgb_profile())

    output = decode(imaging.transform(buffer.getvalue(), imaging.OutputSpec(format=fmt), LIMIT))

    assert "exif" not in output.info
    assert output.info.get("icc_profile") == srgb_profile()


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_large_profile_is_converted_to_srgb_and_replaced(mode):
    """Issue 15, item 23: a 1 MB profile was copied into every output. With this one's primaries
    swapped, red pixels are blue: converted, they stay blue under the 588-byte sRGB profile."""
    swapped = icc_profiles.SRGB_PRIMARIES[::-1]
    large = icc_profiles.rgb_profile(swapped, private_bytes=500_000)  # PNG's iCCP takes < 1 MB
    buffer = io.BytesIO()
    Image.new(mode, (80, 60), "red").save(buffer, "PNG", icc_profile=large)

    output = decode(imaging.transform(buffer.getvalue(), imaging.OutputSpec(format="png"), LIMIT))

    assert output.mode == mode
    assert is_near(output.convert("RGB").getpixel((40, 30)), BLUE, tolerance=10)
    assert output.info["icc_profile"] == srgb_profile()


def test_cmyk_input_comes_out_rgb():
    buffer = io.BytesIO()
    Image.new("CMYK", (60, 40), (0, 255, 255, 0)).save(buffer, "JPEG")

    output = decode(imaging.transform(buffer.getvalue(), imaging.OutputSpec(format="png"), LIMIT))

    assert output.mode == "RGB"
    assert is_near(output.getpixel((30, 20)), RED, tolerance=60)


def test_transparency_is_flattened_onto_the_background():
    clear = image_bytes((40, 40), fmt="PNG", mode="RGBA")  # red at half opacity
    spec = imaging.OutputSpec(format="jpeg", background=(0, 0, 0))

    colour = decode(imaging.transform(clear, spec, LIMIT)).getpixel((20, 20))

    assert is_near(colour, (100, 20, 20), tolerance=15)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("P", (40, 40), 0), Image.new("P", (40, 40), 1)]
    for frame in frames:
        frame.putpalette([*RED, *BLUE] + [0] * 762)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)

    encoded = imaging.transform(buffer.getvalue(), imaging.OutputSpec(format="png"), LIMIT)

    assert centre_colour(encoded) == RED


# Variants.


@pytest.fixture
def decoded_sizes(monkeypatch):
    """The size of every image Pillow actually decodes (load_prepare runs once per decode)."""
    sizes = []
    load_prepare = ImageFile.ImageFile.load_prepare

    def recording(self):
        sizes.append(self.size)
        load_prepare(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load_prepare", recording)
    return sizes


def test_variants_are_all_derived_from_a_single_decode(decoded_sizes):
    specs = {
        "thumb": imaging.OutputSpec(mode="fill", width=128, height=128, format="webp"),
        "zoom": imaging.OutputSpec(max_side=1000),
        "square": imaging.OutputSpec(mode="pad", width=300, height=300, format="png"),
    }

    outputs = imaging.render(image_bytes((4000, 3000)), specs, LIMIT)

    assert len(decoded_sizes) == 1
    sizes = {name: decode(encoded).size for name, encoded in outputs.items()}
    assert sizes == {"thumb": (128, 128), "zoom": (1000, 750), "square": (300, 300)}


def test_decode_is_only_as_large_as_the_most_detailed_variant_needs(decoded_sizes):
    specs = {"small": imaging.OutputSpec(width=100), "medium": imaging.OutputSpec(width=900)}

    imaging.render(image_bytes((4000, 3000)), specs, LIMIT)

    assert decoded_sizes == [(1000, 750)]  # libjpeg's 1/4 scale, enough for 900 px wide


@pytest.mark.parametrize("mode", ["RGBA", "P", "L"])
def test_a_decode_band_by_band_gives_the_pixels_of_a_whole_one(mode):
    """Converting and reducing a band of rows at a time (so the decoded image is never copied
    whole) gives what converting and reducing the whole image gives, partial blocks included."""
    noise = Image.effect_noise((1203, 3001), 80)  # rows and columns not multiples of the factor
    image = Image.merge("RGBA", [noise, noise.rotate(90), noise.rotate(180), noise]).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")

    with Image.open(buffer) as opened:
        decode = imaging.Decode.within(opened, 150)
        decoded = decode.run()

    assert decode.factor == 6
    whole = image.convert(decoded.mode).reduce(decode.factor)
    assert decoded.tobytes() == whole.tobytes()


# CMYK with an embedded profile. The profile from tests/support/icc_profiles.py prints blank
# paper as saturated blue, so only a conversion that honours it turns zero ink into blue rather
# than white.

WHITE = (255, 255, 255)


def cmyk_jpeg(ink=(0, 0, 0, 0), icc_profile=None, size=(60, 40)):
    buffer = io.BytesIO()
    options = {"icc_profile": icc_profile} if icc_profile else {}
    Image.new("CMYK", size, ink).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_cmyk_with_a_profile_is_converted_through_it():
    source = cmyk_jpeg(icc_profile=icc_profiles.cmyk_profile())

    output = decode(imaging.transform(source, imaging.OutputSpec(format="png"), LIMIT))

    assert output.mode == "RGB"
    assert is_near(output.getpixel((30, 20)), BLUE, tolerance=10)


def test_cmyk_profile_black_ink_still_comes_out_black():
    # The profile's other corner: without it, "blue everywhere" would pass the test above.
    source = cmyk_jpeg((0, 0, 0, 255), icc_profile=icc_profiles.cmyk_profile())

    output = decode(imaging.transform(source, imaging.OutputSpec(format="png"), LIMIT))

    assert is_near(output.getpixel((30, 20)), (0, 0, 0), tolerance=10)


def test_cmyk_without_a_profile_is_converted_naively():
    # The same pixels as above: only the missing profile makes blank paper white here.
    output = decode(imaging.transform(cmyk_jpeg(), imaging.OutputSpec(format="png"), LIMIT))

    assert output.mode == "RGB"
    assert is_near(output.getpixel((30, 20)), WHITE, tolerance=10)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_a_cmyk_profile_is_not_carried_onto_rgb_output(fmt):
    source = cmyk_jpeg(icc_profile=icc_profiles.cmyk_profile())
    assert Image.open(io.BytesIO(source)).info.get("icc_profile")  # it was embedded

    output = decode(imaging.transform(source, imaging.OutputSpec(format=fmt), LIMIT))

    assert output.info.get("icc_profile") is None


def test_every_variant_of_a_profiled_cmyk_image_uses_the_profile(decoded_sizes):
    source = cmyk_jpeg(icc_profile=icc_profiles.cmyk_profile(), size=(400, 300))
    specs = {
        "thumb": imaging.OutputSpec(mode="fill", width=64, height=64, format="png"),
        "large": imaging.OutputSpec(width=300, format="png"),
    }

    outputs = imaging.render(source, specs, LIMIT)

    assert len(decoded_sizes) == 1
    for encoded in outputs.values():
        assert is_near(centre_colour(encoded), BLUE, tolerance=10)
