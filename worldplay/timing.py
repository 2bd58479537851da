"""Timing numbers measured one way everywhere: the HUD's running averages and the benchmarks' spreads.

The first calls of anything pay one-off costs (allocations, caches, a KV window filling up), so a
running average shows its first samples raw, each replacing the last, before it starts
averaging; and a benchmark reports percentiles of its calls after a warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class WarmAverage:
    """A time or rate for the HUD: the first `warmup` samples raw, then an exponential moving
    average with `weight` on the newest sample (steady, yet it follows a change)."""
    weight: float
    warmup: int
    value: float = 0.0
    count: int = 0

    def add(self, sample: float) -> float:
        self.count += 1
        if self.count <= self.warmup:
            self.value = sample
        else:
            self.value = (1 - self.weight) * self.value + self.weight * sample
        return self.value


def percentile(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) of xs, linearly interpolated between the nearest ranks; NaN when empty."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
