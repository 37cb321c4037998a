"""The timed loop: per-iteration latencies of a zero-argument step, with CUDA events on GPU.

Nothing here knows about plugins: the step is resolved beforehand, so pluggy dispatch never enters the loop.
"""

from __future__ import annotations

import time
from typing import Callable

#: Safety cap so a tiny step with a long --min-time cannot fill memory with samples.
MAX_ITERATIONS = 100_000


def measure_latency(
    step: Callable[[], object],
    *,
    cuda_device=None,
    min_iters: int,
    min_time_s: float,
    max_iters: int = MAX_ITERATIONS,
) -> list[float]:
    """Run ``step`` until both ``min_iters`` iterations and ``min_time_s`` seconds are reached.

    On CUDA each iteration is bracketed by CUDA events on the current stream and the device is synchronized
    once at the end (no per-iteration host sync that would hide launch overlap); on CPU each iteration is
    timed with ``time.perf_counter``. Returns latencies in milliseconds.
    """
    if cuda_device is not None:
        return _measure_cuda(step, cuda_device, min_iters, min_time_s, max_iters)
    return _measure_cpu(step, min_iters, min_time_s, max_iters)


def _measure_cpu(step, min_iters, min_time_s, max_iters) -> list[float]:
    clock = time.perf_counter
    latencies: list[float] = []
    started = clock()
    while True:
        t0 = clock()
        step()
        t1 = clock()
        latencies.append((t1 - t0) * 1000.0)
        if len(latencies) >= max_iters or (len(latencies) >= min_iters and t1 - started >= min_time_s):
            return latencies


def _measure_cuda(step, device, min_iters, min_time_s, max_iters) -> list[float]:
    import torch

    with torch.cuda.device(device):
        pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        clock = time.perf_counter
        started = clock()
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
