"""glibc's allocator, told to give large blocks back to the system as soon as they are freed."""

from __future__ import annotations

import ctypes

# mallopt's parameter number (malloc.h) and the size from which blocks get a mapping of their own.
_M_MMAP_THRESHOLD = -3
_LARGE_BLOCK_BYTES = 1 << 20


def return_large_blocks() -> bool:
    """Serve every allocation of 1 MiB or more from its own mapping, unmapped when
    freed; False where the C library is not glibc (musl, macOS), which leaves it as it was.

    glibc raises this threshold on its own to the largest block freed so far (up to 32 MiB).
    After one large decode, Pillow's 16 MiB blocks of pixels then come from the heap instead,
    and stay resident once freed: a jobs worker's RSS stayed at 1.2-1.5 GB after four 49 MP
    PNGs. Setting the threshold turns that adjustment off."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK_BYTES))
