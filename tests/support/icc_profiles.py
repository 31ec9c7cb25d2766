"""ICC profiles built in code, for tests that need one no file on disk provides."""

from __future__ import annotations

import struct

# Saturated sRGB blue, (0, 0, 255), as CIELAB against the ICC's D50 white.
BLUE_LAB = (29.57, 68.3, -112.03)
BLACK_LAB = (0.0, 0.0, 0.0)

XYZ = tuple[float, float, float]
# sRGB's red, green and blue primaries, adapted to D50 as ICC profiles state them.
SRGB_PRIMARIES: tuple[XYZ, XYZ, XYZ] = (
    (0.4361, 0.2225, 0.0139),
    (0.3851, 0.7169, 0.0971),
    (0.1431, 0.0606, 0.7141),
)

# The profile connection space's white, D50, which every v2 profile states in its header.
_D50 = (0.9642, 1.0, 0.8249)


def cmyk_profile(
    paper: tuple[float, float, float] = BLUE_LAB,
    black: tuple[float, float, float] = BLACK_LAB,
    description: str = "pixhook test CMYK",
) -> bytes:
    """A minimal ICC v2 CMYK output profile whose inks look nothing like real ones.

    No CMYK profile ships with Pillow or littleCMS, and a real one (e.g. a FOGRA or SWOP file)
    is megabytes of licensed data. This one exists so a test can tell whether a CMYK image's
    embedded profile was honoured: its A2B0 table maps every colour without black ink (K=0),
    including the no-ink corner C=M=Y=K=0, to `paper` (Lab), and every colour with full black
    ink (K=255) to `black`, interpolating in between. With the default, blank paper is
    saturated blue, where a plain `convert("RGB")` would give white.

    Only the tags littleCMS needs to use it as a *source* are written: 'desc', 'wtpt', 'cprt'
    and 'A2B0' (as lut8Type, 2x2x2x2 grid). The B2A tags and 'gamt' that the ICC spec also asks
    of an output profile are left out, so it cannot be a conversion's destination.
    """
    tags = [
        (b"desc", _text_description(description)),
        (b"wtpt", _xyz(_D50)),
        (b"cprt", _text("No copyright, test data")),
        (b"A2B0", _cmyk_to_lab_lut(paper, black)),
    ]
    return _profile(b"prtr", b"CMYK", b"Lab ", tags)


def rgb_profile(
    primaries: tuple[XYZ, XYZ, XYZ] = SRGB_PRIMARIES,
    private_bytes: int = 0,
    description: str = "pixhook test RGB",
) -> bytes:
    """A minimal ICC v2 RGB display profile: a matrix of `primaries` (red, green, blue, as XYZ
    against D50) and a gamma 2.2 tone curve, under 1 KB. With the primaries swapped, a pixel's
    colour says which profile it was read with.

    `private_bytes` adds a private tag of that size, as profiles that carry their measurement
    data do (ProfileMaker's run to hundreds of KB, some scanners' to megabytes); colour
    management ignores it.
    """
    red, green, blue = primaries
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256))  # u8Fixed8 gamma
    tags = [
        (b"desc", _text_description(description)),
        (b"wtpt", _xyz(_D50)),
        (b"cprt", _text("No copyright, test data")),
        (b"rXYZ", _xyz(red)),
        (b"gXYZ", _xyz(green)),
        (b"bXYZ", _xyz(blue)),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
    ]
    if private_bytes:
        tags.append((b"pxhk", b"data\0\0\0\0\0\0\0\1" + bytes(private_bytes)))  # binary dataType
    return _profile(b"mntr", b"RGB ", b"XYZ ", tags)


def _profile(
    device_class: bytes,
    colour_space: bytes,
    connection_space: bytes,
    tags: list[tuple[bytes, bytes]],
) -> bytes:
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries = b""
    data = b""
    for signature, element in tags:
        entries += signature + struct.pack(">II", offset + len(data), len(element))
        # Tag data starts on a 4-byte boundary.
        data += element + b"\0" * (-len(element) % 4)
    body = struct.pack(">I", len(tags)) + entries + data

    header = b"".join(
        [
            struct.pack(">I", 128 + len(body)),
            b"\0\0\0\0",  # preferred CMM: none
            struct.pack(">I", 0x02100000),  # version 2.1
            device_class,
            colour_space,
            connection_space,
            struct.pack(">6H", 2024, 1, 1, 0, 0, 0),  # fixed date: the bytes are reproducible
            b"acsp",
            b"\0\0\0\0",  # platform
            b"\0\0\0\0",  # flags
            b"\0\0\0\0",  # manufacturer
            b"\0\0\0\0",  # model
            b"\0" * 8,  # attributes
            struct.pack(">I", 0),  # rendering intent: perceptual
            _s15_fixed16(*_D50),  # PCS illuminant
            b"\0\0\0\0",  # creator
            b"\0" * 44,  # profile ID (v4 only) and reserved
        ]
    )
    assert len(header) == 128
    return header + body


def _cmyk_to_lab_lut(paper: tuple[float, float, float], black: tuple[float, float, float]) -> bytes:
    channels_in, channels_out, grid = 4, 3, 2
    identity_curve = bytes(range(256))
    identity_matrix = _s15_fixed16(1, 0, 0, 0, 1, 0, 0, 0, 1)  # only used for an XYZ input
    clut = b""
    # The first input channel (C) varies slowest and the last (K) fastest.
    for _c in range(grid):
        for _m in range(grid):
            for _y in range(grid):
                for k in range(grid):
                    clut += _lab8(black if k else paper)
    return b"".join(
        [
            b"mft1\0\0\0\0",
            bytes([channels_in, channels_out, grid, 0]),
            identity_matrix,
            identity_curve * channels_in,
            clut,
            identity_curve * channels_out,
        ]
    )


def _lab8(lab: tuple[float, float, float]) -> bytes:
    # lut8Type's Lab encoding: L 0..100 over 0..255, a and b offset by 128.
    lightness, a, b = lab
    return bytes(
        [
            round(_clamp(lightness, 0, 100) * 255 / 100),
            round(_clamp(a + 128, 0, 255)),
            round(_clamp(b + 128, 0, 255)),
        ]
    )


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))


def _text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return b"".join(
        [
            b"desc\0\0\0\0",
            struct.pack(">I", len(ascii_text)),
            ascii_text,
            struct.pack(">II", 0, 0),  # Unicode language code and length: none
            struct.pack(">HB", 0, 0),  # ScriptCode code and length: none
            b"\0" * 67,  # ScriptCode description, fixed size
        ]
    )


def _text(text: str) -> bytes:
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def _xyz(xyz: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + _s15_fixed16(*xyz)


def _s15_fixed16(*values: float) -> bytes:
    return b"".join(struct.pack(">i", round(value * 65536)) for value in values)
