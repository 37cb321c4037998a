import math
import random

import numpy as np
import pytest

from densebench_core.stats import percentile, summarize


def test_percentiles_match_numpy_on_known_samples():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(samples, 50) == 3.0
    assert percentile(samples, 0) == 1.0 and percentile(samples, 100) == 5.0
    assert percentile(samples, 90) == pytest.approx(4.6)
    rng = random.Random(7)
    many = [rng.lognormvariate(0, 0.5) for _ in range(501)]
    for q in (50, 90, 99):
        assert percentile(many, q) == pytest.approx(float(np.percentile(many, q)))


def test_summary_of_known_samples():
    stats = summarize([10.0, 12.0, 14.0], batch_size=4)
    assert stats.p50_ms == 12.0
    assert stats.mean_ms == 12.0
    assert stats.std_ms == pytest.approx(2.0)  # sample standard deviation
    assert stats.min_ms == 10.0 and stats.iterations == 3
    assert stats.throughput_ips == pytest.approx(4 * 1000 / 12.0)
    assert stats.cv == pytest.approx(2.0 / 12.0)


def test_single_sample_has_zero_spread_and_empty_is_an_error():
    assert summarize([2.5], 1).std_ms == 0.0
    with pytest.raises(ValueError):
        summarize([], 1)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    assert math.isfinite(summarize([1.0, 1.0], 2).cv)
