"""Keep freed memory in the process: the training steps allocate the same large temporaries at every step.

A step of the MoT allocates tensors of a few MB (seeds x samples x tokens x d, float64) and frees them before the
next step.  glibc's malloc serves such sizes by ``mmap`` and returns them to the system on ``free``, or trims them
off the top of its heap; the next step then faults the same pages in again and the kernel zeroes them, which cost
about a sixth of a MoT run's time (9.2 s against 7.4-7.8 s for 600 steps on 16 seeds, one thread of a 2-core AMD
EPYC; the single transformer, computed in cache-sized sample blocks, gains nothing).  ``keep_freed_memory`` raises
both thresholds (``mallopt``), so freed blocks stay in the heap and are reused.  The arithmetic is untouched: every
number is the same bit for bit (``tests/test_numerics.py``).  The price is memory the process keeps after a peak.

Only on Linux with glibc; elsewhere (or with ``MOT_HEAP=system``) the allocator keeps its own policy.
"""
from __future__ import annotations

import ctypes
import os
import sys

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: the size below which blocks come from the heap, and the free space at its top it keeps (1 GiB each)
THRESHOLD = 1 << 30

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are raised."""
    global _kept
    if _kept is not None:
        return _kept
    _kept = False
    if os.environ.get("MOT_HEAP", "keep") == "system" or not sys.platform.startswith("linux"):
        return _kept
    try:
        libc = ctypes.CDLL("libc.so.6")
        _kept = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):      # not glibc (musl, say): its own policy
        _kept = False
    return _kept
