"""Keep freed memory in the process instead of handing it back to the system.

PyTorch on CPU allocates every tensor through the C library's malloc. glibc's malloc returns freed memory at
the top of its heap to the system once more than a few MB are free there, and serves big blocks with mmap,
unmapping them on free; the next step allocates the same sizes again and the kernel maps the pages back in,
one page fault and one zeroed 4 KB page at a time. A fine-tuning step of the demo model faults 10,000-15,000
pages (40-60 MB) back in this way, which is why PyTorch's CPU tuning guides swap in jemalloc or tcmalloc. The
same fix is two glibc settings, made at run time with mallopt: a high trim threshold (freed memory stays in
the heap, up to `trim_mb`) and a fixed mmap threshold of `mmap_mb` (smaller blocks come from the heap and are
reused; an older glibc that refuses more than 32 MB gets 32 MB). Nothing computed changes, only where the
bytes live. bench/step_speedups.py measures it side by side (the same step in a worker process with glibc's
defaults and in one with these: its default_malloc column).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
OLD_GLIBC_MMAP_MAX = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the most older glibc accepts


def _mallopt():
    """glibc's mallopt, or None (another C library, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: musl has mallopt as a no-op
    except (OSError, AttributeError):
        return None
    fn = libc.mallopt
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def keep_freed_memory(trim_mb: int = 1024, mmap_mb: int = 256) -> bool:
    """Keep up to trim_mb of freed memory in the process and serve blocks under mmap_mb from the heap. True
    where glibc accepted both settings; False elsewhere (nothing changes there: only speed)."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    trim = min(trim_mb * 2**20, 2**31 - 1)
    mmap = min(mmap_mb * 2**20, 2**31 - 1)
    mapped = bool(mallopt(M_MMAP_THRESHOLD, mmap)) or bool(mallopt(M_MMAP_THRESHOLD, min(mmap, OLD_GLIBC_MMAP_MAX)))
    return mapped and bool(mallopt(M_TRIM_THRESHOLD, trim))
