"""Process memory, as the eval, the recorder and the soak report it (no psutil needed)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import sys

MB = 2 ** 20
RSS_UNIT = 1 if sys.platform == "darwin" else 1024   # ru_maxrss is bytes on macOS, KiB on Linux


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT / MB


def rss_mb() -> float:
    """Resident memory now, in MB: /proc/self/statm where there is one, else the peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


@functools.lru_cache(maxsize=1)
def _libc_trim():
    """glibc's malloc_trim, or None (macOS, musl, Windows: their allocators return memory themselves)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc malloc_trim over every arena).

    A streaming session frees and reallocates tensors of changing sizes every chunk from two
    threads (generation and display); glibc keeps the freed pages of its per-thread arenas,
    so without this a minute-long walk's RSS creeps up by ~100 MB a minute with nothing live."""
    trim = _libc_trim()
    if trim is not None:
        trim(0)
