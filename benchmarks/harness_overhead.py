"""Does the harness add anything? The runner's median against a bare timing loop over the same callable.

For one prepared model (fp32 eager DenseNet-121 by default), alternate ROUNDS times between
  * the harness: ``measure_latency`` exactly as the worker calls it (per-iteration CUDA events on GPU,
    perf_counter on CPU), taking its median (the ``latency_p50_ms`` the CSV reports), and
  * a bare loop: ``for _ in range(n): step()`` with one synchronize at the end, timed as a whole
    (CUDA events around the loop on GPU), giving the mean time per call,
then compare the medians over rounds. Target: within 1%.

    python benchmarks/harness_overhead.py --device cpu --batch-size 1 --image-size 64
    python benchmarks/harness_overhead.py --device cuda --batch-size 1 --image-size 224 --channels-last --fp16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from densebench_core.measure import measure_latency
from densebench_core.model import build_model, make_inputs
from densebench_core.stats import summarize


def bare_loop_ms(step, iterations: int, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(iterations):
            step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / iterations
    t0 = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - t0) * 1000.0 / iterations


def capture_graph(step, device):
    """Capture ``step`` into a CUDA graph (after side-stream warm-up) and return its replay."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--cuda-graph", action="store_true",
                        help="time a CUDA-graph replay of the model: a steady, GPU-bound callable")
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    model = build_model("random", 0, args.image_size).to(device)
    inputs = make_inputs(args.batch_size, args.image_size, 0).to(device)
    if args.channels_last:
        model, inputs = model.to(memory_format=torch.channels_last), inputs.contiguous(
            memory_format=torch.channels_last
        )
    if args.fp16:
        model, inputs = model.half(), inputs.half()

    def step():
        return model(inputs)

    harness, bare = [], []
    with torch.no_grad():
        if args.cuda_graph:
            step = capture_graph(step, device)
        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        for _ in range(args.rounds):
            latencies = measure_latency(
                step, cuda_device=device if device.type == "cuda" else None,
                min_iters=args.iterations, min_time_s=0.0, max_iters=args.iterations,
            )  # fmt: skip
            harness.append(summarize(latencies, args.batch_size).p50_ms)
            bare.append(bare_loop_ms(step, args.iterations, device))
    harness_ms, bare_ms = statistics.median(harness), statistics.median(bare)
    difference = harness_ms / bare_ms - 1.0
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "channels_last": args.channels_last,
        "fp16": args.fp16,
        "cuda_graph": args.cuda_graph,
        "iterations_per_round": args.iterations,
        "rounds": args.rounds,
        "harness_median_ms": round(harness_ms, 4),
        "bare_loop_ms": round(bare_ms, 4),
        "harness_rounds_ms": [round(x, 4) for x in harness],
        "bare_rounds_ms": [round(x, 4) for x in bare],
        "difference_pct": round(100 * difference, 2),
        "within_tolerance": abs(difference) <= args.tolerance,
    }
    print(json.dumps(report, indent=1))
    return 0 if report["within_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
