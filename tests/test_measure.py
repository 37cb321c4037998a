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
