import time

from densebench_core.measure import measure_latency


def test_stops_after_both_minimum_iterations_and_minimum_time():
    calls = []
    latencies = measure_latency(lambda: calls.append(time.sleep(0.002)), min_iters=5, min_time_s=0.05)
    assert len(latencies) == len(calls) >= 5
    assert sum(latencies) >= 40  # ms: about min_time, allowing for the loop's own cost
    assert all(x >= 1.9 for x in latencies)  # each call sleeps 2 ms


def test_minimum_iterations_dominate_when_time_is_zero():
    latencies = measure_latency(lambda: None, min_iters=7, min_time_s=0.0)
    assert len(latencies) == 7


def test_iteration_cap():
    assert len(measure_latency(lambda: None, min_iters=1, min_time_s=60, max_iters=50)) == 50


def test_noisy_steps_are_measured_longer_until_the_median_is_known_well_enough():
    import random

    rng = random.Random(0)

    def noisy():
        time.sleep(0.001 + rng.random() * 0.004)

    lower_bounds_only = measure_latency(noisy, min_iters=10, min_time_s=0.0)
    tight = measure_latency(noisy, min_iters=10, min_time_s=0.0, max_time_s=5.0, target_rel_ci=0.10)
    assert len(lower_bounds_only) == 10
    assert len(tight) > 10
    from densebench_core.stats import relative_halfwidth

    assert relative_halfwidth(tight) <= 0.10 or sum(tight) / 1000 >= 4.0  # target met, or the budget spent


def test_the_time_budget_bounds_the_extra_rounds():
    latencies = measure_latency(lambda: time.sleep(0.002), min_iters=3, min_time_s=0.0, max_time_s=0.3,
                                target_rel_ci=0.0, max_iters=5000)  # a target never met: only the budget stops it
    assert sum(latencies) >= 250  # ms: it went on measuring for about the budget...
    assert len(latencies) < 5000  # ...and then stopped, well before the iteration cap
