"""The one rule for "A differs from B": significant and beyond the noise floor, else a tie."""

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from densebench_core import significance
from densebench_core.significance import FASTER, SLOWER, TIE, Latency, compare, rank


def sample(median: float, n: int = 200, spread: float = 0.05, seed: int = 0) -> Latency:
    values = median * np.random.default_rng(seed).lognormal(0.0, spread, n)
    return Latency(p50=float(np.median(values)), samples=tuple(values))


def test_a_large_significant_difference_is_a_difference_in_the_right_direction():
    fast, slow = sample(10.0), sample(13.0, seed=1)
    result = compare(fast, slow)
    assert result.verdict == FASTER and result.method == "rank test"
    assert result.ratio == pytest.approx(slow.p50 / fast.p50)
    assert result.ratio_low < result.ratio < result.ratio_high
    assert result.p_value == pytest.approx(mannwhitneyu(fast.samples, slow.samples).pvalue)
    assert compare(slow, fast).verdict == SLOWER


def test_the_same_distribution_measured_twice_is_a_tie():
    assert compare(sample(10.0, seed=2), sample(10.0, seed=3)).verdict == TIE


def test_a_significant_difference_below_the_floor_is_a_tie():
    # 1% apart with thousands of quiet samples: the rank test is sure, the floor says it does not matter
    a, b = sample(10.0, n=5000, spread=0.01, seed=4), sample(10.1, n=5000, spread=0.01, seed=5)
    result = compare(a, b)
    assert result.p_value < 1e-6 and result.verdict == TIE
    assert "noise floor" in result.why()
    assert compare(a, b, floor=0.001).verdict == FASTER  # with a floor below 1% it is a difference


def test_a_large_difference_that_is_not_significant_is_a_tie():
    a = Latency(p50=11.0, samples=(7.0, 10.0, 12.0, 19.0))
    b = Latency(p50=14.0, samples=(9.0, 13.0, 15.0, 21.0))  # medians 27% apart, but four noisy samples each
    result = compare(a, b)
    assert abs(result.ratio - 1) > significance.NOISE_FLOOR and result.p_value >= significance.ALPHA
    assert result.verdict == TIE and result.why().startswith("not significant")


def test_a_row_timed_on_a_busy_machine_is_not_judged():
    quiet_a, quiet_b = sample(10.0, n=2000, spread=0.02, seed=8), sample(15.0, n=2000, spread=0.02, seed=9)
    assert compare(quiet_a, quiet_b).verdict == FASTER  # 50% apart, quiet machine
    busy_a = Latency(quiet_a.p50, samples=quiet_a.samples, busy=True)
    result = compare(busy_a, quiet_b)
    assert result.verdict == TIE and result.busy and result.p_value < 1e-10  # sure, and still not judged
    assert result.why().startswith("not judged")


def test_without_samples_the_intervals_decide():
    a = Latency(p50=10.0, ci_low=9.8, ci_high=10.2)
    assert compare(a, Latency(p50=12.0, ci_low=11.8, ci_high=12.3)).verdict == FASTER
    overlapping = Latency(p50=12.0, ci_low=10.1, ci_high=14.0)
    result = compare(a, overlapping)
    assert result.verdict == TIE and result.method == "intervals"
    assert result.ratio_low == pytest.approx(10.1 / 10.2) and result.ratio_high == pytest.approx(14.0 / 9.8)


def test_without_samples_or_intervals_the_spread_decides():
    a = Latency(p50=10.0, mean=10.0, std=0.2)
    assert compare(a, Latency(p50=13.0, mean=13.0, std=0.3)).verdict == FASTER
    assert compare(a, Latency(p50=13.0, mean=13.0, std=6.0)).verdict == TIE


def test_ranking_groups_the_ties_with_the_fastest():
    groups = rank({"a": sample(10.0, seed=10), "b": sample(10.05, seed=11), "c": sample(14.0, seed=12),
                   "d": sample(20.0, seed=13)})  # fmt: skip
    assert groups == [["a", "b"], ["c"], ["d"]] or groups == [["b", "a"], ["c"], ["d"]]


def test_interval_text_and_change():
    result = compare(sample(10.0, seed=14), sample(20.0, seed=15))
    assert result.interval_text().startswith(f"{result.ratio:.2f}× [")
    assert result.change_pct == pytest.approx(100 * (1 / result.ratio - 1))
    assert math.isfinite(result.ratio_low)


def test_each_kind_of_row_has_the_floor_its_process_noise_needs():
    assert significance.row_floor("cuda", host_bound=False) == 0.0  # the general floor applies
    assert significance.row_floor("cuda", host_bound=True) == significance.HOST_BOUND_FLOOR
    assert significance.row_floor("cuda", host_bound=None) == significance.HOST_BOUND_FLOOR  # unknown: cautious
    assert significance.row_floor("cpu", host_bound=None) == significance.CPU_FLOOR
    assert significance.row_floor("cpu", None, threads=1) == significance.CPU_ONE_THREAD_FLOOR
    assert significance.row_floor("cpu", None, threads=8) == significance.CPU_FLOOR
    # 1.5x apart and certain: a difference between GPU-bound rows, not between CPU rows (processes differ so much)
    fast, slow = sample(10.0, seed=16), sample(15.0, seed=17)
    on_gpu = [Latency(x.p50, samples=x.samples, floor=significance.row_floor("cuda", False)) for x in (fast, slow)]
    on_cpu = [Latency(x.p50, samples=x.samples, floor=significance.row_floor("cpu", None)) for x in (fast, slow)]
    assert compare(*on_gpu).verdict == FASTER
    result = compare(*on_cpu)
    assert result.verdict == TIE and result.floor == significance.CPU_FLOOR and "50% noise floor" in result.why()
    assert compare(sample(10.0, seed=18), sample(30.0, seed=19)).verdict == FASTER  # 3x: beyond every floor
