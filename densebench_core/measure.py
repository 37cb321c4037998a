"""The timed loop: per-iteration latencies of a zero-argument step, with CUDA events on GPU.

Nothing here knows about plugins: the step is resolved beforehand, so pluggy dispatch never enters the loop.

When to stop: first at least ``min_iters`` iterations and ``min_time_s`` seconds; then, with a ``target_rel_ci``,
more rounds until the median's 95% interval is within ``±target_rel_ci`` of the median or ``max_time_s`` seconds
of measuring are spent (:mod:`densebench_core.stats`).
"""

from __future__ import annotations

import time
from typing import Callable

from densebench_core.stats import relative_halfwidth

#: Safety cap so a tiny step with a long time budget cannot fill memory with samples.
MAX_ITERATIONS = 100_000
#: each extra round adds this share of the samples so far (at least MIN_ROUND): checks stay rare
ROUND_SHARE, MIN_ROUND = 0.25, 10


def measure_latency(
    step: Callable[[], object],
    *,
    cuda_device=None,
    min_iters: int,
    min_time_s: float,
    max_time_s: float | None = None,
    target_rel_ci: float | None = None,
    max_iters: int = MAX_ITERATIONS,
) -> list[float]:
    """Run ``step`` until the lower bounds are met and the median is known well enough; latencies in ms.

    On CUDA each iteration is bracketed by CUDA events on the current stream and the device is synchronized
    only at the end of a round (no per-iteration host sync that would hide launch overlap); on CPU each
    iteration is timed with ``time.perf_counter``.
    """
    run_round = _cuda_round(step, cuda_device) if cuda_device is not None else _cpu_round(step)
    started = time.perf_counter()
    latencies = run_round(min_iters, min_time_s, started, max_iters)
    if target_rel_ci is None or max_time_s is None:
        return latencies
    while len(latencies) < max_iters and time.perf_counter() - started < max_time_s:
        if relative_halfwidth(latencies) <= target_rel_ci:
            break
        extra = min(max(MIN_ROUND, int(len(latencies) * ROUND_SHARE)), max_iters - len(latencies))
        latencies += run_round(extra, 0.0, time.perf_counter(), extra)
    return latencies


def _cpu_round(step):
    clock = time.perf_counter

    def run(min_iters, min_time_s, started, max_iters) -> list[float]:
        latencies: list[float] = []
        while True:
            t0 = clock()
            step()
            t1 = clock()
            latencies.append((t1 - t0) * 1000.0)
            if len(latencies) >= max_iters or (len(latencies) >= min_iters and t1 - started >= min_time_s):
                return latencies

    return run


def _cuda_round(step, device):
    import torch

    def run(min_iters, min_time_s, started, max_iters) -> list[float]:
        with torch.cuda.device(device):
            pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
            clock = time.perf_counter
            while True:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step()
                end.record()
                pairs.append((start, end))
                n = len(pairs)
                if n >= max_iters:
                    break
                if n >= min_iters and clock() - started >= min_time_s:
                    break  # the host runs ahead of the device, so the device has done at least this much
            torch.cuda.synchronize(device)
            return [s.elapsed_time(e) for s, e in pairs]

    return run


def launch_time_ms(step: Callable[[], object], synchronize: Callable[[], None], repeats: int = 5) -> float:
    """The host's time to launch one step onto an idle device (median of ``repeats``), in milliseconds.

    Compared with the step's latency it says who waits for whom: a step whose launch takes about as long as its
    latency is host-bound (the GPU waits for the CPU); one launched in a fraction of it is GPU-bound.
    """
    times = []
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000.0)
    synchronize()
    return sorted(times)[len(times) // 2]
