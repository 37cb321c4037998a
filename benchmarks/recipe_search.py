"""Search for the fastest DenseNet-121 recipe: each variant in its own process, with a kernel-time breakdown.

The suite (``densebench run``) measures what the installed backends offer; this script tries settings the
backends do not (yet) expose, to decide which ones deserve to become options: cuDNN autotuning, bf16, fused
optimizers, Inductor settings, one CUDA graph over the compiled model, the fused dense-layer kernels
(``dense_kernels``: the ``fused`` plugin's rewrite), and TF32 or freezing off to explain reference numbers. It times
with the core's own loop (:func:`densebench_core.measure.measure_latency`, CUDA events) and checks accuracy against the same fp32
reference, so its numbers compare with the suite's rows.

    python benchmarks/recipe_search.py --out DIR VARIANT [VARIANT ...]     # see VARIANTS below
    python benchmarks/recipe_search.py --list

Each variant writes one JSON line to DIR/recipes.jsonl: compile time (first calls), latency percentiles,
throughput, accuracy, peak memory, and with ``profile`` the device time per kernel category (convolution,
GEMM, Triton, copies) and the top kernels, from a short ``torch.profiler`` pass after the timed loop.
``--set key=value`` overrides a field of every variant (for a small CPU check: ``--set bs=1 --set size=64``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE = {
    "mode": "inference", "bs": 256, "size": 224, "dtype": "fp16", "channels_last": True, "compile": None,
    "freezing": True, "cudnn_benchmark": False, "dense_kernels": None, "cuda_graph": False, "logs": "",
    "inductor": {}, "tf32": True, "optimizer": "sgd", "profile": False, "min_time": 2.0, "min_iters": 50,
    "warmup": 20,
}  # fmt: skip

# name -> overrides of BASE. "ro" is the published fastest-latency recipe (fp16, channels_last, freezing,
# reduce-overhead); the others change one thing at a time against it.
VARIANTS: dict[str, dict] = {
    # inference, batch 256 and 1
    "ro-256": {"compile": "reduce-overhead"},
    "ro-cudnnbench-256": {"compile": "reduce-overhead", "cudnn_benchmark": True},
    "default-256-profile": {"compile": "default", "profile": True},
    "default-cudnnbench-256-profile": {"compile": "default", "cudnn_benchmark": True, "profile": True},
    "ro-bf16-256": {"compile": "reduce-overhead", "dtype": "bf16"},
    "ro-1": {"compile": "reduce-overhead", "bs": 1},
    "ro-cudnnbench-1": {"compile": "reduce-overhead", "bs": 1, "cudnn_benchmark": True},
    "eager-1-profile": {"bs": 1, "profile": True},
    # compile.dense_kernels=triton: each dense layer's BN+ReLU, 1x1 conv, norm2 and ReLU as one Triton GEMM over a
    # preallocated block buffer (no concatenation); transitions pool before their conv
    "ro-triton-1": {"compile": "reduce-overhead", "bs": 1, "dense_kernels": "triton"},
    "ro-triton-256": {"compile": "reduce-overhead", "dense_kernels": "triton"},
    "default-triton-256-profile": {"compile": "default", "dense_kernels": "triton", "profile": True},
    "eager-triton-1-profile": {"bs": 1, "dense_kernels": "triton", "profile": True},
    # session 3: ro-triton-1 was 3x slower than its kernels; are CUDA graphs skipped (logs), does a plain capture help?
    "ro-triton-1-logs": {"compile": "reduce-overhead", "bs": 1, "dense_kernels": "triton", "profile": True,
                         "logs": "cudagraphs,perf_hints"},
    "cg-triton-1": {"compile": "default", "bs": 1, "dense_kernels": "triton", "cuda_graph": True},
    "cg-triton-256": {"compile": "default", "dense_kernels": "triton", "cuda_graph": True},
    # after the op took its block by key (27 graph inputs instead of 317): does Inductor's graph partition still
    # copy the frozen constants it passes to the CUDA graph as inputs? (graph_partition=False embeds them)
    "ro-triton-1-profile": {"compile": "reduce-overhead", "bs": 1, "dense_kernels": "triton", "profile": True},
    "ro-triton-1-nopart": {"compile": "reduce-overhead", "bs": 1, "dense_kernels": "triton",
                           "inductor": {"graph_partition": False}},
    "default-nofreeze-256": {"compile": "default", "freezing": False},  # the reference's compile default, likely
    "ro-1-nopart": {"compile": "reduce-overhead", "bs": 1, "inductor": {"graph_partition": False}},
    "ro-triton-256-nopart": {"compile": "reduce-overhead", "dense_kernels": "triton",
                             "inductor": {"graph_partition": False}},
    # training, batch 128: explain the reference (eager fp32 with and without TF32), then speed up
    "train-eager-fp32": {"mode": "training", "bs": 128, "dtype": "fp32", "channels_last": False},
    "train-eager-fp32-notf32": {"mode": "training", "bs": 128, "dtype": "fp32", "channels_last": False,
                                "tf32": False},
    "train-eager-amp-nchw": {"mode": "training", "bs": 128, "channels_last": False},
    "train-eager-amp": {"mode": "training", "bs": 128},
    "train-eager-amp-cudnnbench": {"mode": "training", "bs": 128, "cudnn_benchmark": True},
    "train-compile-amp": {"mode": "training", "bs": 128, "compile": "default", "profile": True},
    "train-compile-amp-cudnnbench": {"mode": "training", "bs": 128, "compile": "default", "cudnn_benchmark": True,
                                     "profile": True},
    "train-compile-bf16-fused": {"mode": "training", "bs": 128, "compile": "default", "dtype": "bf16",
                                 "cudnn_benchmark": True, "optimizer": "sgd_fused"},
    "train-ro-amp-cudnnbench": {"mode": "training", "bs": 128, "compile": "reduce-overhead",
                                "cudnn_benchmark": True},
}  # fmt: skip


# -- one variant, in a child process --------------------------------------------------------------------------
KERNEL_CATEGORIES = (
    ("convolution", ("conv", "implicit", "xmma", "cudnn", "fprop", "dgrad", "wgrad", "nchwtonhwc", "nhwctonchw")),
    ("gemm", ("gemm", "cutlass", "sm90_", "cublas", "triton_tem", "mm_")),
    ("triton", ("triton_",)),
    ("copy/cat", ("copy", "cat", "memcpy", "memset", "elementwise")),
    ("batchnorm", ("batch_norm", "bn_")),
)


def categorize(name: str) -> str:
    lowered = name.lower()
    for category, needles in KERNEL_CATEGORIES:
        if any(n in lowered for n in needles):
            return category
    return "other"


def kernel_breakdown(step, steps: int = 3) -> dict:
    """Device time per kernel over ``steps`` steps (outside the timed loop), by category and top 15 kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from densebench_core.profiling import is_device_activity

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    kernels: dict[str, list[float]] = {}
    for event in prof.events():
        if is_device_activity(event):
            entry = kernels.setdefault(event.name, [0.0, 0])
            entry[0] += event.time_range.elapsed_us() / 1000.0 / steps  # ms per step
            entry[1] += 1 / steps
    categories: dict[str, float] = {}
    for name, (ms, _) in kernels.items():
        category = categorize(name)
        categories[category] = categories.get(category, 0.0) + ms
    top = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:15]
    return {
        "kernel_ms_per_step": round(sum(ms for ms, _ in kernels.values()), 4),
        "kernels_per_step": round(sum(count for _, count in kernels.values()), 1),
        "categories_ms": {k: round(v, 4) for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
        "top": [{"name": n[:140], "ms": round(ms, 4), "count": round(c, 1)} for n, (ms, c) in top],
    }


def run_variant(v: dict) -> dict:
    import torch

    from densebench_core import accuracy
    from densebench_core.measure import measure_latency
    from densebench_core.model import build_model, make_inputs, make_targets
    from densebench_core.stats import summarize

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = bool(v["cudnn_benchmark"])
    torch.backends.cudnn.allow_tf32 = bool(v["tf32"])
    torch.backends.cuda.matmul.allow_tf32 = bool(v["tf32"])
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[v["dtype"]]
    training = v["mode"] == "training"
    model = build_model("random", 0, v["size"])
    inputs = make_inputs(v["bs"], v["size"], 0).to(device)
    reference = None if training else accuracy.reference_outputs(model, [inputs], device).to(device)
    result: dict = {}
    model = model.to(device)
    memory_format = torch.channels_last if v["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    inputs = inputs.contiguous(memory_format=memory_format)
    if training:
        model.train()
        targets = make_targets(v["bs"], 0).to(device)
        loss_fn = torch.nn.CrossEntropyLoss()
    else:
        model = model.to(dtype)
        inputs = inputs.to(dtype)
        if v["dense_kernels"] == "triton":  # as the fused plugin does, on the model it receives
            from densebench_fused.dense_fusion import fuse_dense_blocks

            result["dense_fused"] = fuse_dense_blocks(model)
    if v["compile"]:
        import torch._inductor.config as inductor_config

        for key, value in v["inductor"].items():
            setattr(inductor_config, key, value)
        options = {}
        if v["compile"] != "default":
            from torch._inductor import list_mode_options

            options.update(list_mode_options(v["compile"], False))
        options["freezing"] = bool(v["freezing"]) and not training
        runnable = torch.compile(model, dynamic=False, options=options)
    else:
        runnable = model

    if training:
        use_amp = v["dtype"] != "fp32"
        scaler = torch.amp.GradScaler("cuda" if cuda else "cpu", enabled=v["dtype"] == "fp16")
        fused = {"fused": True} if v["optimizer"] == "sgd_fused" else {}  # else torch's default (foreach on CUDA)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, **fused)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
                output = runnable(inputs)
            loss = loss_fn(output.float(), targets)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return output
    else:

        def step():
            with torch.no_grad():
                return runnable(inputs)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    sync()
    if cuda:  # peak memory from here, as in the suite's worker: CUDA-graph pools are allocated while compiling
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if v["cuda_graph"] and cuda:  # one plain CUDA graph of the whole (compiled) forward, replayed per step
        step = graphed_step(runnable, inputs)
    for _ in range(3):  # compilation, then CUDA-graph warm-up and recording
        step()
    sync()
    result["compile_s"] = round(time.perf_counter() - t0, 2)
    for _ in range(v["warmup"]):
        step()
    latencies = measure_latency(
        step, cuda_device=device if cuda else None, min_iters=v["min_iters"], min_time_s=v["min_time"]
    )
    stats = summarize(latencies, v["bs"])
    result.update(
        p50_ms=round(stats.p50_ms, 4),
        p99_ms=None if stats.p99_ms is None else round(stats.p99_ms, 4),  # None: under the 100 samples p99 needs
        mean_ms=round(stats.mean_ms, 4),
        cv=round(stats.cv, 4),
        iterations=stats.iterations,
        throughput_ips=round(stats.throughput_ips, 1),
    )
    if cuda:
        result["peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if reference is not None:
        result.update({k: round(x, 6) for k, x in accuracy.compare(step().float(), reference).items()})
    if v["profile"] and cuda:
        try:
            result["profile"] = kernel_breakdown(step)
        except Exception as exc:  # noqa: BLE001 - the timing stands without its breakdown
            result["profile"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return result


def graphed_step(runnable, inputs):
    """A step that copies ``inputs`` into a static buffer and replays one CUDA graph of ``runnable`` on it
    (captured as ``benchmarks/harness_overhead.py`` captures its ``--cuda-graph`` step)."""
    import torch
    from harness_overhead import capture_graph  # benchmarks/, beside this script

    static_in = inputs.clone()
    output = {}

    def forward():
        with torch.no_grad():
            output["y"] = runnable(static_in)

    replay = capture_graph(forward, inputs.device)

    def step():
        static_in.copy_(inputs)
        replay()
        return output["y"]  # the tensor the capture wrote: the graph's static output

    return step


def child_main(spec: str) -> int:
    name, v = json.loads(spec)
    try:
        result = {"variant": name, "status": "ok", **run_variant(v)}
    except Exception as exc:  # noqa: BLE001 - one failed variant is a result, not a crash
        import traceback

        traceback.print_exc()
        result = {"variant": name, "status": "failed", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# -- the parent: one child per variant, with a time limit ----------------------------------------------------
def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*")
    parser.add_argument("--out", type=Path, default=Path("recipe-search"))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per variant (default 300)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds for the whole invocation: later variants are skipped or cut to fit",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.list:
        for name, overrides in VARIANTS.items():
            print(f"{name}: {json.dumps(overrides)}")
        return 0
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        print(f"recipe_search: unknown or no variant {unknown}; see --list", file=sys.stderr)
        return 2
    overrides = {}
    for pair in args.set:
        key, _, value = pair.partition("=")
        if key not in BASE:
            print(f"recipe_search: --set {key!r} is not a field ({', '.join(BASE)})", file=sys.stderr)
            return 2
        overrides[key] = parse_value(value)
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "recipes.jsonl"
    end = time.perf_counter() + args.deadline if args.deadline else float("inf")
    for name in args.variants:
        settings = {**BASE, **VARIANTS[name], **overrides}
        spec = json.dumps([name, settings])
        started = time.perf_counter()
        timeout = min(args.timeout, end - started)
        if timeout < 30:
            print(f"{name}: not run, {timeout:.0f} s left before the deadline", flush=True)
            continue
        # own process group: a timeout also ends Inductor's compile workers
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", spec],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **({"TORCH_LOGS": settings["logs"]} if settings["logs"] else {})},
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
            result = (
                json.loads(lines[-1][7:])
                if lines
                else {"variant": name, "status": "failed", "reason": f"exit {proc.returncode}: {stderr[-300:]}"}
            )
            if result["status"] != "ok" or settings["logs"]:
                (args.out / f"{name}.stderr.txt").write_text(stderr[-20000:])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            result = {"variant": name, "status": "timeout", "reason": f"over {timeout:.0f} s"}
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        result["wall_s"] = round(time.perf_counter() - started, 1)
        result["settings"] = {**VARIANTS[name], **overrides}
        with jsonl.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
        brief = {
            k: result.get(k)
            for k in ("status", "compile_s", "p50_ms", "throughput_ips", "cosine_sim", "wall_s", "reason")
            if result.get(k) is not None
        }
        print(f"{name}: {json.dumps(brief)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
