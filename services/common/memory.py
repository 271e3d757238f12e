"""Process-wide malloc settings for services whose threads allocate large,
short-lived buffers (the sampler's pieces, torch activations).

glibc's defaults suit long-lived small objects badly here: the mmap threshold
rises after each large free (up to 32 MB), so multi-megabyte buffers move onto
the heap, and every new thread gets its own arena; freed memory then stays in
the process. Measured on the sampler (6 concurrent 200k-row Adult streams):
peak RSS 1,349 MB with the defaults, 859 MB with a fixed 128 KiB threshold and
two arenas. Python and Arrow's own allocators are unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
_M_ARENA_MAX = -8


def return_large_buffers(mmap_threshold: int = 128 * 1024, arenas: int = 2) -> bool:
    """Serve allocations above ``mmap_threshold`` by mmap (given back to the
    system on free) and cap malloc arenas. True when applied (glibc only);
    call early, before worker threads start."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_ARENA_MAX, arenas))
    if not ok:
        log.warning("mallopt refused the memory settings; peak memory may be higher under load")
    return ok
