"""glibc's allocator, told to give decoded pixels back to the system once they are freed."""

from __future__ import annotations

import ctypes

# mallopt's parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Pillow keeps pixels in blocks of up to 16 MiB: any image above 2 MiB gets mappings of its own.
_MMAP_FROM_BYTES = 2 << 20
# Free heap kept for reuse: a decode's bands (1 MiB each) come and go without page faults.
_KEEP_FREE_BYTES = 8 << 20
# Each heap keeps its own free memory, and glibc gives threads up to 8 heaps a core: decoding
# threads share two, so what is kept stays under 2 x 8 MiB however many cores there are.
_HEAPS = 2


def return_large_blocks() -> bool:
    """Serve allocations of 2 MiB or more from mappings of their own, unmapped when freed, and
    keep at most 8 MiB of free memory in each of two heaps; False where the C library is not
    glibc (musl, macOS), which leaves it as it was.

    glibc raises its mmap threshold on its own to the largest block freed so far (up to 32 MiB):
    after one large decode, Pillow's 16 MiB blocks came from the heap instead and stayed
    resident once freed, and a jobs worker's RSS stayed at 1.2-1.5 GB after four 49 MP PNGs.
    Setting both thresholds turns that adjustment off."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    settings = (
        (_M_MMAP_THRESHOLD, _MMAP_FROM_BYTES),
        (_M_TRIM_THRESHOLD, _KEEP_FREE_BYTES),
        (_M_ARENA_MAX, _HEAPS),
    )
    return all(mallopt(parameter, value) for parameter, value in settings)
