"""The child process: one (backend or recipe, mode, batch size) measured end to end.

``python -m densebench_core.worker JOB.json RESULT.json`` builds its own plugin registry, model and inputs,
prepares the backend (timed as ``prepare_s``, first step included), warms up, measures, checks accuracy
against the fp32 eager reference, exports, optionally profiles (after, never inside, the timed loop), and
writes RESULT.json. Anything that goes wrong becomes a ``failed`` or ``skipped`` result; a crash or hang of
this process is turned into a row by the parent (:mod:`densebench_core.runner`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from densebench_core import accuracy
from densebench_core.context import RunContext
from densebench_core.machine_load import Window, loadavg
from densebench_core.measure import launch_time_ms, measure_latency
from densebench_core.model import build_model, make_inputs, make_targets
from densebench_core.plugins import build_registry, missing_requirements
from densebench_core.significance import HOST_BOUND_SHARE
from densebench_core.stats import summarize

HIGH_SPREAD_CV = 0.10


class Skip(Exception):
    """The backend cannot run here; the message is the reason."""


def _phase_writer(result_path: Path):
    phase_file = result_path.with_suffix(".phase")

    def set_phase(name: str) -> None:
        phase_file.write_text(name)

    return set_phase


def default_step(model, inputs, ctx):
    """One inference forward pass, or one training step (forward, loss, backward, optimizer step)."""
    if not ctx.training:
        return model(inputs)
    ctx.optimizer.zero_grad(set_to_none=True)
    output = model(inputs)
    loss = ctx.loss_fn(output.float(), ctx.targets)
    loss.backward()
    ctx.optimizer.step()
    return output


def bind(fn, **kwargs):
    """A zero-argument step calling the raw implementation with only the arguments it accepts."""
    raw = getattr(fn, "__wrapped__", fn)
    names = getattr(fn, "argnames", None)
    if names is None:
        return functools.partial(raw, **kwargs)
    return functools.partial(raw, **{k: v for k, v in kwargs.items() if k in names})


def _peak_memory_mb(ctx) -> float:
    import torch

    if ctx.is_cuda:
        return torch.cuda.max_memory_allocated(ctx.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_job(job: dict[str, Any], set_phase) -> dict[str, Any]:
    import torch

    result: dict[str, Any] = {"status": "ok", "reason": "", "notes": []}
    set_phase("loading plugins")
    registry = build_registry()
    members: list[str] = job["members"]
    device = torch.device(job["device"])
    ctx = RunContext(
        backend=job["backend"],
        members=members,
        device=device,
        mode=job["mode"],
        batch_size=job["batch_size"],
        image_size=job["image_size"],
        warmup=job["warmup"],
        options=job.get("options", {}),
        seed=job.get("seed", 0),
        models_dir=Path(job["models_dir"]) if job.get("models_dir") else None,
    )
    result["precision"] = ctx.precision

    # -- availability ---------------------------------------------------------------------------------
    set_phase("checking availability")
    for name in members:
        entry = registry.entries.get(name)
        if entry is None or entry.status != "ok":
            raise Skip(f"{name}: plugin not loaded ({entry.reason if entry else 'not installed'})")
        why = missing_requirements(entry.info, device.type, ctx.mode)
        if why is None:
            _, why = registry.call(name, "check_available", ctx=ctx)
        if why:
            raise Skip(f"{name}: {why}")

    # -- model, inputs and the fp32 reference on the evaluation set ---------------------------------------
    set_phase("building model")
    model = build_model(job["weights"], ctx.seed, ctx.image_size, job.get("cache_dir"))
    inputs = make_inputs(ctx.batch_size, ctx.image_size, ctx.seed).to(device)
    reference = eval_batches = None
    if not ctx.training:
        set_phase("computing the fp32 reference")
        eval_batches = accuracy.evaluation_batches(job.get("eval_images", 256), ctx.batch_size, ctx.image_size,
                                                   ctx.seed)
        reference = accuracy.reference_outputs(model, eval_batches, device)
    if ctx.training:
        model.train()
        ctx.targets = make_targets(ctx.batch_size, ctx.seed).to(device)
        ctx.loss_fn = torch.nn.CrossEntropyLoss()
    model = model.to(device)

    grad_mode = contextlib.nullcontext() if ctx.training else torch.no_grad()
    with grad_mode:
        # -- prepare: inputs, model, first step (lazy compilers work there) ------------------------------
        set_phase("preparing")
        if ctx.is_cuda:
            torch.cuda.synchronize(device)
            # peak memory counts from here: CUDA-graph backends allocate their graphs' memory pool while
            # preparing, so a reset just before the timed loop would leave that memory out
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()

        def prepare_inputs(batch):
            for name in members:
                found, new_batch = registry.call(name, "prepare_inputs", inputs=batch, ctx=ctx)
                if found and new_batch is not None:
                    batch = new_batch
            return batch

        inputs = prepare_inputs(inputs)
        for name in members:
            found, new_model = registry.call(
                name, "prepare_model", model=model, example_inputs=inputs, ctx=ctx
            )
            if found and new_model is not None:
                model = new_model
        if ctx.training:
            ctx.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        step_fn = registry.last_impl(members, "run_step") or default_step
        step = bind(step_fn, model=model, inputs=inputs, ctx=ctx)
        step()
        ctx.synchronize()
        result["prepare_s"] = time.perf_counter() - t0
        result["precision"] = ctx.precision

        # -- warm-up ------------------------------------------------------------------------------------
        set_phase("warming up")
        warmup_fn = registry.last_impl(members, "warmup")
        if warmup_fn is not None:
            warmup_fn(step=step, model=model, inputs=inputs, ctx=ctx)
        else:
            for _ in range(ctx.warmup):
                step()
        ctx.synchronize()

        # -- measurement --------------------------------------------------------------------------------
        set_phase("measuring")
        load = {"cpu_count": os.cpu_count(), "loadavg_before": loadavg()}
        window = Window.start()
        latencies = measure_latency(
            step,
            cuda_device=device if ctx.is_cuda else None,
            min_iters=job["min_iters"],
            min_time_s=job["min_time"],
            max_time_s=job.get("max_time"),
            target_rel_ci=job.get("ci_target"),
        )
        load.update(loadavg_after=loadavg(), other_cpu_cores=window.other_cores())
        result["load"] = load
        result["peak_mem_mb"] = _peak_memory_mb(ctx)
        problems = []
        for name in members:
            _, problem = registry.call(name, "after_measure", model=model, ctx=ctx)
            if problem:
                problems.append(f"{name}: {problem}")
        if problems:
            result["status"], result["reason"] = "failed", "; ".join(problems)
        stats = summarize(latencies, ctx.batch_size)
        result.update(
            latency_p50_ms=stats.p50_ms,
            latency_p90_ms=stats.p90_ms,
            latency_p99_ms=stats.p99_ms,
            latency_mean_ms=stats.mean_ms,
            latency_std_ms=stats.std_ms,
            throughput_ips=stats.throughput_ips,
            iterations=stats.iterations,
            p50_ci_low_ms=stats.p50_ci_low_ms,
            p50_ci_high_ms=stats.p50_ci_high_ms,
            latencies_ms=latencies,
        )
        ctx.notes.extend(stats.notes)
        # what sets how far apart two processes' timings of this row can be (densebench_core.significance):
        # on CUDA who waits for whom, on the CPU how many threads run the step
        if ctx.is_cuda:
            result["launch_ms"] = launch_time_ms(step, ctx.synchronize)
            result["host_bound"] = result["launch_ms"] >= HOST_BOUND_SHARE * stats.p50_ms
        else:
            result["threads"] = torch.get_num_threads()
        if stats.cv > HIGH_SPREAD_CV:
            ctx.notes.append(f"high spread: std is {stats.cv:.0%} of the mean")

        # -- accuracy: the evaluation set through the backend, against the fp32 reference ----------------
        if reference is not None:
            set_phase("checking accuracy")
            outputs = accuracy.backend_outputs(
                lambda batch: bind(step_fn, model=model, inputs=prepare_inputs(batch.to(device)), ctx=ctx)(),
                eval_batches,
            )
            metrics = accuracy.compare(outputs, reference)
            kind = accuracy.arithmetic(ctx.precision, device.type)
            ok, why = accuracy.judge(metrics, kind)
            result.update(metrics, accuracy_ok=ok, accuracy_tolerance=kind)
            if why:
                ctx.notes.append(why)

        # -- export -------------------------------------------------------------------------------------
        if job.get("export") and not ctx.training and ctx.models_dir is not None:
            set_phase("exporting")
            export_fn = registry.last_impl(members, "export")
            if export_fn is not None:
                ctx.models_dir.mkdir(parents=True, exist_ok=True)
                path = export_fn(model=model, example_inputs=inputs, ctx=ctx, directory=ctx.models_dir)
                if path:
                    path = Path(path)
                    result["artifact_path"] = str(path)
                    result["artifact_mb"] = path.stat().st_size / 2**20

        # -- profiling: a separate short pass, after the timed loop -------------------------------------
        if job.get("profile_dir"):
            set_phase("profiling")
            from densebench_core import profiling

            result["profile"] = profiling.profile_step(step, ctx, Path(job["profile_dir"]))

    result["notes"] = ctx.notes
    return result


def _oom_types():
    import torch

    return (torch.cuda.OutOfMemoryError,)


def main(argv: list[str]) -> int:
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    set_phase = _phase_writer(result_path)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    try:
        result = run_job(job, set_phase)
    except Skip as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        kind = "out of memory" if isinstance(exc, _oom_types()) else type(exc).__name__
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        result = {"status": "failed", "reason": f"{kind}: {first_line}"}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
