"""Process memory, as the eval, the recorder and the soak report it (no psutil needed)."""

from __future__ import annotations

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
