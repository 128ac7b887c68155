"""Keep freed memory in the process for reuse (glibc only).

A training or evaluation step allocates and frees the same tens of MB of activations, gradients and
feature matrices every time. With glibc's default thresholds, blocks above the mmap threshold are unmapped
when freed and the heap's free top is trimmed, so the next step page-faults the same memory back in
(~4,500 faults a step on the demo model). Raising both thresholds keeps that memory in the process, as
jemalloc and tcmalloc do (PyTorch's CPU performance guide recommends either): 1.1-1.2x per fine-tuning
step here (bench/step_speedups.py, column default_malloc). It changes no result, only where freed memory
goes; the process's peak memory stays the same, it just does not shrink after the peak.

A user's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ (glibc's variables) take precedence.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # bytes: larger blocks are still mapped on their own
TRIM_THRESHOLD = (1 << 31) - 1  # glibc's int maximum: never give the heap top back


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where it does nothing (not glibc,
    or the user set glibc's variables)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
