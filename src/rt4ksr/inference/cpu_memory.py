"""CPU inference without the kernel's page-fault tax.

glibc serves allocations above its mmap threshold (128 KiB at start, raised dynamically up to 32 MiB) with a
fresh ``mmap`` and returns them with ``munmap`` on free, and it trims the top of the heap back to the kernel
when more than its trim threshold is free. A network's intermediate tensors are large and short-lived, so
every forward pass maps, zero-fills (one page fault per 4 KiB page) and unmaps the same memory again, and
most of the CPU time goes to the kernel instead of the convolutions. ``keep_freed_memory`` raises both
thresholds once, at the start of a command, so freed tensors stay in the process and are reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap in the process


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD_MAX, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Make glibc keep freed tensors for reuse instead of returning them to the kernel; True when applied.

    Allocations up to ``mmap_threshold`` come from the heap, and up to ``trim_threshold`` bytes of freed
    heap stay mapped. Larger tensors are still mapped one by one: the upscaler's CPU tiles (``cpu_tile``)
    keep a large image's intermediates below the threshold. A no-op outside glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    if not ok:  # pragma: no cover - a libc that refuses the values
        log.debug("mallopt refused the thresholds; CPU inference keeps the default allocator behaviour")
    return ok
