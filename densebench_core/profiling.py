"""A short torch.profiler pass, separate from and after the timed loop, in torch-tb-profiler's layout.

Traces go to ``<log_dir>/profiler/<run_id>_<backend>_<mode>/bs<N>.<time_ns>.pt.trace.json.gz``: torch-tb-profiler
shows each folder as one run (a backend) and each batch size as one worker in it (the ``<time_ns>`` part is the
worker's span). Gzipped, a trace is about a tenth of the size; torch-tb-profiler, Perfetto and chrome://tracing
read it as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

WAIT, WARMUP, ACTIVE = 1, 1, 3
TOP_N = 10
#: longest ``short_name`` of a profiler entry; the report's tables stay readable and the full name stays in the JSON
SHORT_NAME_LIMIT = 60
#: the range Inductor records around each call of a compiled graph; the hash tells a reader nothing
_COMPILED_GRAPH = re.compile(r"##\s*Call CompiledFxGraph\b.*##")
_OPEN = {"<": ">", "(": ")", "[": "]", "{": "}"}


def short_name(name: str, limit: int = SHORT_NAME_LIMIT) -> str:
    """A readable label for a profiler entry: a demangled C++ kernel's base name, without return type, namespaces,
    template and function arguments; CUTLASS's wrapper named by its GEMM configuration; Inductor's
    ``## Call CompiledFxGraph <hash> ##`` as ``compiled graph (Inductor)``. Plain names (``aten::conv2d``,
    ``triton_poi_fused_add_relu_0``, ``Memcpy HtoD (Pageable -> Device)``) stay; any result is cut at ``limit``.
    """
    name = " ".join(str(name).split())
    if _COMPILED_GRAPH.fullmatch(name):
        return "compiled graph (Inductor)"
    if len(name) > 4 and name.startswith("##") and name.endswith("##"):  # other record_function ranges
        name = name.strip("# ")
    cutlass = re.match(r"(?:void )?cutlass::Kernel2?<(\w+)>", name)
    if cutlass:  # every CUTLASS GEMM is the same wrapper template: its argument says which GEMM it is
        name = cutlass.group(1)
    elif name.startswith("void ") or ("::" in name and ("(" in name or "<" in name)):  # a C++ signature
        outer = _outside_brackets(name.replace("(anonymous namespace)::", ""))
        qualified = outer.split()[-1] if outer.split() else name  # drops the return type (``void``)
        parts = qualified.split("::")
        # a generic last part (cuBLAS's ``gemvx::kernel``) keeps its namespace
        name = "::".join(parts[-2:]) if parts[-1].lower() in ("kernel", "kernel2") else parts[-1]
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _outside_brackets(text: str) -> str:
    """``text`` without anything inside ``<>``, ``()``, ``[]`` or ``{}``; a stray ``>`` (as in ``->``) is text."""
    out, stack = [], []
    for ch in text:
        if ch in _OPEN:
            stack.append(_OPEN[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
        elif not stack:
            out.append(ch)
    return "".join(out)


def _self_device_us(event) -> float:
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def _top(events, key, kind: str) -> list[dict[str, Any]]:
    total = sum(key(e) for e in events) or 1.0
    ranked = sorted((e for e in events if key(e) > 0), key=key, reverse=True)[:TOP_N]
    return [
        {
            "name": e.key,
            "short_name": short_name(e.key),
            "kind": kind,
            "self_time_ms": key(e) / 1000.0 / ACTIVE,
            "self_time_pct": 100.0 * key(e) / total,
            "calls": int(e.count) // ACTIVE,
        }
        for e in ranked
    ]


def is_device_activity(event) -> bool:
    """Whether a profiler event is the GPU's own work: a kernel, copy or memset.

    Ranges the profiler draws on the GPU timeline for user annotations (``ProfilerStep#N``, ``Optimizer.step``)
    cover kernels already counted, so they are not.
    """
    import torch

    if event.device_type != torch.autograd.DeviceType.CUDA:
        return False
    # ``key``: the name on both a FunctionEvent and key_averages()'s FunctionEventAvg (which has no ``name``)
    return not (getattr(event, "is_user_annotation", False) or event.key.startswith("ProfilerStep#"))


def top_kernels(events) -> list[dict[str, Any]]:
    """The GPU's own work from ``key_averages()``, largest self device time first, shares of the device's total.

    Only device activities: a CPU operator (``aten::conv2d``) or a range (``## Call CompiledFxGraph … ##``) also
    carries the device time of the kernels it launched, so listing it would count those kernels twice and hide
    what ran, e.g. the Triton kernels inside a compiled graph.
    """
    return _top([e for e in events if is_device_activity(e)], _self_device_us, "cuda")


def device_time_per_step(events, steps: int) -> tuple[float, float]:
    """(ms, count) per step of the device's own activities (:func:`is_device_activity`)."""
    durations = [e.time_range.elapsed_us() for e in events if is_device_activity(e)]
    return sum(durations) / 1000.0 / steps, len(durations) / steps


def collectives_per_step(events, steps: int, cuda: bool) -> tuple[float, float]:
    """(ms, calls) per step of torch.distributed's collectives (a data-parallel row's gradient all-reduce): on the
    GPU the NCCL kernels' own device time, which may overlap the backward's kernels; on the CPU the ``c10d::`` ops."""
    if cuda:
        chosen = [e for e in events if is_device_activity(e) and "nccl" in e.key.lower()]
        total_us = sum(_self_device_us(e) for e in chosen)
    else:
        chosen = [e for e in events if e.key.startswith("c10d::")]
        total_us = sum(float(e.cpu_time_total) for e in chosen)
    return total_us / 1000.0 / steps, sum(e.count for e in chosen) / steps


def step_along(step, ctx, after_each=None) -> None:
    """The ``WAIT + WARMUP + ACTIVE`` steps of a profiler pass, each synchronized, then ``after_each()``:
    :func:`profile_step` runs them under the profiler, the other ranks of a distributed row alone (the profiled
    rank's all-reduces wait for theirs, so both must run the same steps)."""
    for _ in range(WAIT + WARMUP + ACTIVE):
        step()
        ctx.synchronize()
        if after_each is not None:
            after_each()


def profile_step(step, ctx, profile_dir: Path) -> dict[str, Any]:
    """Profile ``WAIT + WARMUP + ACTIVE`` steps; return where the time went (per step) and the trace path."""
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    profile_dir.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU]
    if ctx.is_cuda:
        activities.append(ProfilerActivity.CUDA)
    before = set(profile_dir.iterdir())
    with profile(
        activities=activities,
        schedule=schedule(wait=WAIT, warmup=WARMUP, active=ACTIVE, repeat=1),
        on_trace_ready=tensorboard_trace_handler(
            str(profile_dir), worker_name=f"bs{ctx.batch_size}", use_gzip=True
        ),
        record_shapes=True,
        profile_memory=True,
    ) as prof:
        step_along(step, ctx, after_each=prof.step)
    events = prof.key_averages()
    cpu_ops = [e for e in events if not e.key.startswith("ProfilerStep")]
    summary = {
        "top_ops": _top(cpu_ops, lambda e: float(e.self_cpu_time_total), "cpu"),
        "top_kernels": top_kernels(events) if ctx.is_cuda else [],
        "traces": sorted(str(p) for p in set(profile_dir.iterdir()) - before),
        "steps": ACTIVE,
    }
    collective_ms, collective_calls = collectives_per_step(events, ACTIVE, ctx.is_cuda)
    if collective_calls:
        summary["collective_ms_per_step"], summary["collective_calls_per_step"] = collective_ms, collective_calls
    if ctx.is_cuda:  # how busy the GPU is: the report divides this by the row's mean step time
        summary["device_ms_per_step"], summary["device_activities_per_step"] = device_time_per_step(
            prof.events(), ACTIVE
        )
    return summary
