"""The C allocator setting the collector process runs with (glibc; elsewhere nothing).

Every scrape joins the /metrics text per family: tens of MB at 10,000 nodes, freed once
the gzip body is made. glibc's mmap threshold is dynamic: the first such block freed
raises it to that block's size (up to 32 MiB), so later blocks come from the heap, and
the heap keeps them after they are freed, between the reports and texts that stay:
~14 KiB per node of RSS at 5,000-10,000 nodes, never given back (docs/performance.md,
"memory per node"). A fixed threshold (which also turns the dynamic adjustment off)
keeps every block above it in a mapping of its own, returned to the system when freed;
the blocks below it are the small, long-lived ones. An operator's own setting
(MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES) is left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["MMAP_THRESHOLD_BYTES", "fix_mmap_threshold"]

# glibc's own starting value; <malloc.h>: M_MMAP_THRESHOLD is -3.
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3


def fix_mmap_threshold() -> bool:
    """Fixes glibc's mmap threshold at MMAP_THRESHOLD_BYTES; True when glibc took it."""
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
        "GLIBC_TUNABLES", ""
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False  # no mallopt (not glibc): nothing to fix
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
