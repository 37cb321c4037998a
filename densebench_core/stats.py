"""Latency statistics: a measurement is a distribution with its spread, not one number."""

from __future__ import annotations

import math
from dataclasses import dataclass


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


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-iteration latencies in milliseconds for a batch of ``batch_size`` images."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    iterations: int
    throughput_ips: float

    @property
    def cv(self) -> float:
        """Coefficient of variation (std / mean): large values mean a noisy measurement."""
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else float("inf")


def summarize(latencies_ms: list[float], batch_size: int) -> LatencyStats:
    """Percentiles, mean, sample standard deviation, and throughput (images per second at the mean latency)."""
    n = len(latencies_ms)
    if n == 0:
        raise ValueError("no latencies to summarize")
    mean = sum(latencies_ms) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in latencies_ms) / (n - 1)) if n > 1 else 0.0
    return LatencyStats(
        p50_ms=percentile(latencies_ms, 50),
        p90_ms=percentile(latencies_ms, 90),
        p99_ms=percentile(latencies_ms, 99),
        mean_ms=mean,
        std_ms=std,
        min_ms=min(latencies_ms),
        iterations=n,
        throughput_ips=batch_size * 1000.0 / mean if mean > 0 else float("inf"),
    )
