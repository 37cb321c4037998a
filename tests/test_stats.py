import math
import random

import numpy as np
import pytest

from densebench_core.stats import median_ci, min_samples, percentile, relative_halfwidth, summarize


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


def _binomial_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """The textbook order-statistic interval of the median, worked out from the binomial distribution by hand:
    the largest j with P(B <= j - 1) <= (1 - confidence) / 2, B ~ Binomial(n, 1/2); ranks j and n - j + 1."""
    total, cumulative, j = 2**n, 0, 0
    while True:
        cumulative += math.comb(n, j)
        if cumulative / total > (1 - confidence) / 2:
            return j, n - j + 1  # 1-based ranks
        j += 1


@pytest.mark.parametrize("n", [6, 9, 20, 57, 100, 1000])
def test_median_interval_is_the_binomial_order_statistic_interval(n):
    samples = [float(x) for x in np.random.default_rng(n).permutation(np.arange(1, n + 1))]
    low, high = median_ci(samples)
    j, k = _binomial_ranks(n)
    assert (low, high) == (float(j), float(k))  # the samples are 1..n, so the value is the rank


def test_median_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_median = math.log(2)  # of an exponential(1)
    hits = sum(low <= true_median <= high
               for low, high in (median_ci(list(rng.exponential(1.0, 40))) for _ in range(400)))
    assert 0.92 <= hits / 400 <= 0.99  # the interval's coverage is at least 95% by construction


def test_too_few_samples_give_no_interval_and_tails_need_enough_samples():
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    few = summarize([float(x) for x in range(1, 21)], 1)
    assert few.p90_ms == pytest.approx(np.percentile(range(1, 21), 90)) and few.p99_ms is None
    assert any("p99" in note and "100" in note for note in few.notes)
    assert summarize([1.0] * 9, 1).p90_ms is None
    many = summarize([float(x) for x in range(100)], 1)
    assert many.p99_ms == pytest.approx(np.percentile(range(100), 99)) and not many.notes
    assert (min_samples(50), min_samples(90), min_samples(99)) == (1, 10, 100)


def test_relative_halfwidth_shrinks_with_more_samples():
    rng = np.random.default_rng(1)
    small, large = list(rng.normal(10, 1, 20)), list(rng.normal(10, 1, 2000))
    assert relative_halfwidth(large) < relative_halfwidth(small) < 1
    assert relative_halfwidth([1.0, 2.0]) == math.inf
