"""Latency statistics of one row: a measurement is a distribution with its spread, not one number.

* The median (p50) comes with a 95% confidence interval: the distribution-free interval between two order
  statistics, whose ranks come from the binomial distribution (``scipy.stats.quantile_test``); it assumes only
  that the iterations are independent draws, not any shape of distribution. It needs at least 6 samples.
* A percentile is reported only from enough samples to hold it: p90 from 10, p99 from 100
  (:func:`min_samples`); otherwise it is empty and the row notes why.
* Throughput is images per second at the mean latency (a sustained rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CONFIDENCE = 0.95


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default)."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within [0, 100], not {q}")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def min_samples(q: float) -> int:
    """Samples needed before the q-th percentile is reported: one beyond it on average, ``1 / (1 - q/100)``."""
    return 1 if q <= 50 else math.ceil(round(100 / (100 - q), 9))


def median_ci(samples: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The distribution-free confidence interval of the median, or None with too few samples (under 6 at 95%)."""
    if len(samples) < 2:
        return None
    import numpy as np
    from scipy.stats import quantile_test

    data = np.asarray(samples, dtype=float)
    interval = quantile_test(data, q=float(np.median(data)), p=0.5).confidence_interval(confidence)
    low, high = float(interval.low), float(interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def relative_halfwidth(samples: list[float]) -> float:
    """Half the width of the median's interval over the median (inf while there is no interval)."""
    interval = median_ci(samples)
    if interval is None:
        return math.inf
    middle = percentile(samples, 50)
    return (interval[1] - interval[0]) / 2 / middle if middle > 0 else math.inf


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-iteration latencies in milliseconds for a batch of ``batch_size`` images."""

    p50_ms: float
    p90_ms: float | None  # None: too few samples (see min_samples)
    p99_ms: float | None
    mean_ms: float
    std_ms: float
    min_ms: float
    iterations: int
    throughput_ips: float
    p50_ci_low_ms: float | None = None
    p50_ci_high_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean): large values mean a noisy measurement."""
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else float("inf")


def summarize(latencies_ms: list[float], batch_size: int) -> LatencyStats:
    """Median with its interval, the percentiles the sample count allows, mean, std, throughput."""
    n = len(latencies_ms)
    if n == 0:
        raise ValueError("no latencies to summarize")
    mean = sum(latencies_ms) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in latencies_ms) / (n - 1)) if n > 1 else 0.0
    notes = []
    tails = {}
    for q in (90, 99):
        if n >= min_samples(q):
            tails[q] = percentile(latencies_ms, q)
        else:
            tails[q] = None
            notes.append(f"p{q} not reported: {n} samples, it needs {min_samples(q)}")
    interval = median_ci(latencies_ms)
    if interval is None:
        notes.append(f"no interval for the median: {n} samples are too few")
    return LatencyStats(
        p50_ms=percentile(latencies_ms, 50),
        p90_ms=tails[90],
        p99_ms=tails[99],
        mean_ms=mean,
        std_ms=std,
        min_ms=min(latencies_ms),
        iterations=n,
        throughput_ips=batch_size * 1000.0 / mean if mean > 0 else float("inf"),
        p50_ci_low_ms=interval[0] if interval else None,
        p50_ci_high_ms=interval[1] if interval else None,
        notes=notes,
    )
