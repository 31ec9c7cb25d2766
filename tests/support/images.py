"""Image files built in memory: ordinary ones, and hostile ones (bombs, endless pages, cut-off
data)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image


def image_bytes(size: tuple[int, int] = (400, 300), fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    color: Any = (200, 40, 40, 128) if mode == "RGBA" else (200, 40, 40)
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def png_bomb(width: int, height: int, zero_bytes: int = 64) -> bytes:
    """A valid PNG header claiming width x height 1-bit pixels, then `zero_bytes` of pixel rows
    compressed: under a hundred bytes by default; 4 MiB of rows fit in ~4 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data).to_bytes(4, "big")
        return len(data).to_bytes(4, "big") + kind + data + crc

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    idat = zlib.compress(bytes(zero_bytes), 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def many_page_tiff(pages: int) -> bytes:
    """A TIFF of `pages` 1x1 grey pages, each its own IFD (66 bytes) chained to the next: every
    page must be read to know how many there are."""
    # (tag, type, value): width, height, strip offset and byte count; type 4 is LONG.
    entries = [(256, 4, 1), (257, 4, 1), (273, 4, 8), (279, 4, 1)]
    ifd_size = 2 + 12 * len(entries) + 4
    first = 12  # the 8-byte header, then the one pixel all pages share, padded to 4
    parts = [b"II*\0", struct.pack("<I", first), b"\x80\0\0\0"]
    for page in range(pages):
        following = first + (page + 1) * ifd_size if page < pages - 1 else 0
        fields = b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in entries)
        parts.append(struct.pack("<H", len(entries)) + fields + struct.pack("<I", following))
    return b"".join(parts)


def truncated_jpeg() -> bytes:
    """A JPEG whose header is intact but whose pixel data stops halfway."""
    buffer = io.BytesIO()
    Image.effect_noise((800, 600), 50).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]
