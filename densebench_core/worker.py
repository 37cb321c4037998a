"""The child process: one (backend or recipe, mode, batch size) measured end to end.

``python -m densebench_core.worker JOB.json RESULT.json`` reads its :class:`~densebench_core.job.Job`, loads the
recipe's plugins, builds the model and inputs, prepares the backend (timed as ``prepare_s``, first step
included), warms up, measures, then runs the phases after the measurement: the accuracy check against the fp32
eager reference, the export and the profile (after, never inside, the timed loop).

Once the measurement is taken it is written to RESULT.json before each later phase, with the phase about to
run under ``pending``: a phase that fails, hangs or crashes the process costs that phase (a note), never the
measurement. Every hook's return value is checked where it arrives (:mod:`densebench_core.hook_checks`).
A crash dumps the Python stacks into the worker log (``faulthandler``; SIGUSR1 does so on demand, which the
parent sends before killing a child that ran out of time).
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import json
import os
import resource
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

from densebench_core import accuracy, hook_checks
from densebench_core.context import RunContext
from densebench_core.distributed import Ranks
from densebench_core.job import Job
from densebench_core.machine_load import Window, loadavg
from densebench_core.measure import MAX_ITERATIONS, launch_time_ms, measure_latency
from densebench_core.model import NUM_CLASSES, build_model, make_inputs, make_targets
from densebench_core.plugins import PluginRegistry, build_registry, missing_requirements
from densebench_core.significance import HOST_BOUND_SHARE
from densebench_core.stats import summarize

HIGH_SPREAD_CV = 0.10
#: the phases after the measurement: each has its own time limit (``--phase-timeout``) and costs only itself
AFTER_MEASUREMENT = ("checking accuracy", "exporting", "cold start", "profiling")
ARTIFACT_KEYS = ("artifact_path", "artifact_mb")


class Skip(Exception):
    """The backend cannot run here; the message is the reason."""


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
    """A zero-argument call of a hook implementation with only the arguments it accepts."""
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


class Worker:
    """One job's measurement; ``publish`` writes what is known so far where the parent reads it."""

    def __init__(self, job: Job, set_phase: Callable[[str], None], publish: Callable[[dict], None],
                 ranks: Ranks | None = None) -> None:
        import torch

        self.job, self.set_phase, self.publish, self.ranks = job, set_phase, publish, ranks
        self.registry: PluginRegistry | None = None
        self.exported: tuple[str, Path] | None = None  # (member, artifact) once the export phase wrote one
        device = ranks.start(torch.device(job.device).type) if ranks else torch.device(job.device)
        self.ctx = RunContext(job=job, device=device)
        self.result: dict[str, Any] = {"status": "ok", "reason": "", "notes": self.ctx.notes,
                                       "precision": self.ctx.precision, "world_size": ranks.world_size if ranks else 1}

    # -- the phases, in order --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.set_phase("loading plugins")
        self.registry = build_registry(only=set(self.job.members))
        self.set_phase("checking availability")
        self.check_available()
        self.set_phase("building model")
        model, inputs, reference, eval_batches = self.build()
        grad_mode = contextlib.nullcontext() if self.ctx.training else _no_grad()
        with grad_mode:
            self.set_phase("preparing")
            model, inputs, step, checked_step = self.prepare(model, inputs)
            before = _parameters_copy(model) if self.ctx.training else None
            self.set_phase("warming up")
            self.warm_up(step, model, inputs)
            self.set_phase("measuring")
            self.measure(step, model)
            if before is not None and not _parameters_changed(before, model):
                self.fail("the training step left every weight unchanged: no optimizer update happened in warm-up "
                          "and measurement")
            if self.ranks:  # accuracy, export and cold start are one process's work; the profile needs every rank
                self.after_measurement("profiling", lambda: self.profile(step))
                return self.result
            for phase, run in (("checking accuracy", lambda: self.check_accuracy(checked_step, reference,
                                                                                 eval_batches)),
                               ("exporting", lambda: self.export(model, inputs)),
                               ("cold start", lambda: self.cold_start(reference)),
                               ("profiling", lambda: self.profile(step))):
                self.after_measurement(phase, run)
        return self.result

    def check_available(self) -> None:
        for name in self.job.members:
            entry = self.registry.entries.get(name)
            if entry is None or entry.status != "ok":
                raise Skip(f"{name}: plugin not loaded ({entry.reason if entry else 'not installed'})")
            why = missing_requirements(entry.info, self.ctx.device.type, self.ctx.mode)
            if why is None:
                _, answer = self.registry.call(name, "check_available", ctx=self.ctx)
                why = hook_checks.reason(name, "check_available", answer)
            if why:
                raise Skip(f"{name}: {why}")

    def build(self):
        """The model, the timed batch, and (inference) the evaluation set with its fp32 reference outputs."""
        import torch

        job, ctx = self.job, self.ctx
        model = build_model(job.weights, job.seed, job.image_size, job.cache_dir)
        inputs = make_inputs(job.batch_size, job.image_size, job.seed).to(ctx.device)
        reference = eval_batches = None
        if ctx.training:
            model.train()
            ctx.targets = make_targets(job.batch_size, job.seed).to(ctx.device)
            ctx.loss_fn = torch.nn.CrossEntropyLoss()
        else:
            self.set_phase("computing the fp32 reference")
            eval_batches = accuracy.evaluation_batches(job.eval_images, job.batch_size, job.image_size, job.seed)
            reference = accuracy.reference_outputs(model, eval_batches, ctx.device)
        return model.to(ctx.device), inputs, reference, eval_batches

    def prepare(self, model, inputs):
        """Each member's ``prepare_inputs`` then ``prepare_model`` (stage order), and the first step, timed."""
        import torch

        ctx, members = self.ctx, self.job.members
        if ctx.is_cuda:
            torch.cuda.synchronize(ctx.device)
            # peak memory counts from here: CUDA-graph backends allocate their graphs' memory pool while
            # preparing, so a reset just before the timed loop would leave that memory out
            torch.cuda.reset_peak_memory_stats(ctx.device)
        t0 = time.perf_counter()
        inputs = self.prepare_inputs(inputs)
        made_by = ("the core", "default model")
        for name in members:
            if self.ranks and not _is_ddp(model) and self.registry.entries[name].info.stage == "compiler":
                model = self.ranks.wrap(model, ctx.device)  # compiled as a DDP model (DDPOptimizer)
            found, new_model = self.registry.call(name, "prepare_model", model=model, example_inputs=inputs, ctx=ctx)
            if found:
                model, made_by = hook_checks.model(name, new_model), (name, "prepare_model")
        if self.ranks and not _is_ddp(model):
            model = self.ranks.wrap(model, ctx.device)
        if self.ranks:
            ctx.notes.append(f"DistributedDataParallel over {self.ranks.world_size} processes "
                             f"({'NCCL' if ctx.is_cuda else 'gloo'}), wrapped before the compiler stage")
        if ctx.training:
            ctx.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        implemented = self.registry.last_impl(members, "run_step")
        step_fn = implemented[1] if implemented else default_step
        source = (implemented[0], "run_step") if implemented else made_by

        def checked(batch):
            out = bind(step_fn, model=model, inputs=batch, ctx=ctx)()
            return hook_checks.output(source, out, batch.shape[0], NUM_CLASSES, ctx.precision)

        checked(inputs)  # the first step: lazy compilers compile here; its output is held to the contract
        ctx.synchronize()
        self.result["prepare_s"] = time.perf_counter() - t0
        self.result["precision"] = ctx.precision
        step = bind(step_fn, model=model, inputs=inputs, ctx=ctx)  # the timed loop calls the implementation bare
        return model, inputs, step, checked

    def prepare_inputs(self, batch):
        return prepare_inputs(self.registry, self.job.members, batch, self.ctx)

    def warm_up(self, step, model, inputs) -> None:
        """Every member's ``warmup`` in stage order (the core's loop when none has one), then ``before_measure``."""
        ctx = self.ctx
        warmups = self.registry.impls(self.job.members, "warmup")
        for _, fn in warmups:
            fn(step=step, model=model, inputs=inputs, ctx=ctx)
        if not warmups:
            for _ in range(ctx.warmup):
                step()
        ctx.synchronize()
        for _, fn in self.registry.impls(self.job.members, "before_measure"):
            fn(model=model, ctx=ctx)

    def measure(self, step, model) -> None:
        import torch

        job, ctx = self.job, self.ctx
        load = {"cpu_count": os.cpu_count(), "loadavg_before": loadavg()}
        window = Window.start()
        if self.ranks:  # every rank runs the same number of steps (see densebench_core.distributed)
            fixed = self.ranks.agree_iterations(step, ctx.synchronize, job.min_iters, job.min_time, MAX_ITERATIONS)
            bounds = {"min_iters": fixed, "min_time_s": 0.0, "max_iters": fixed}
        else:
            bounds = {"min_iters": job.min_iters, "min_time_s": job.min_time, "max_time_s": job.max_time,
                      "target_rel_ci": job.ci_target}  # fmt: skip
        latencies = measure_latency(step, cuda_device=ctx.device if ctx.is_cuda else None, **bounds)
        load.update(loadavg_after=loadavg(), other_cpu_cores=window.other_cores())
        stats = summarize(latencies, job.batch_size * (self.ranks.world_size if self.ranks else 1))
        self.result.update(
            load=load, peak_mem_mb=_peak_memory_mb(ctx), latency_p50_ms=stats.p50_ms, latency_p90_ms=stats.p90_ms,
            latency_p99_ms=stats.p99_ms, latency_mean_ms=stats.mean_ms, latency_std_ms=stats.std_ms,
            throughput_ips=stats.throughput_ips, iterations=stats.iterations, p50_ci_low_ms=stats.p50_ci_low_ms,
            p50_ci_high_ms=stats.p50_ci_high_ms, latencies_ms=latencies,
        )  # fmt: skip
        ctx.notes.extend(stats.notes)
        for name, fn in self.registry.impls(job.members, "after_measure"):
            problem = hook_checks.reason(name, "after_measure", fn(model=model, ctx=ctx))
            if problem:
                self.fail(f"{name}: {problem}")
        # what sets how far apart two processes' timings of this row can be (densebench_core.significance):
        # on CUDA who waits for whom, on the CPU how many threads run the step
        if ctx.is_cuda:
            self.result["launch_ms"] = launch_time_ms(step, ctx.synchronize)
            self.result["host_bound"] = self.result["launch_ms"] >= HOST_BOUND_SHARE * stats.p50_ms
        else:
            self.result["threads"] = torch.get_num_threads()
        if stats.cv > HIGH_SPREAD_CV:
            ctx.notes.append(f"high spread: std is {stats.cv:.0%} of the mean")

    def after_measurement(self, phase: str, run: Callable[[], None]) -> None:
        """Run one phase after the measurement; the measurement is published first and survives the phase."""
        self.publish({**self.result, "pending": phase})
        self.set_phase(phase)
        try:
            run()
        except Exception as exc:  # noqa: BLE001 - the phase fails, the measurement stands
            traceback.print_exc()
            self.ctx.notes.append(f"{phase} failed: {_one_line(exc)}")
            if phase == "exporting":
                self.exported = None
                for key in ARTIFACT_KEYS:
                    self.result.pop(key, None)

    def check_accuracy(self, checked, reference, eval_batches) -> None:
        """The evaluation set through the backend (each output held to the contract), against the fp32 reference."""
        if reference is None:
            return
        outputs = accuracy.backend_outputs(lambda batch: checked(self.prepare_inputs(batch.to(self.ctx.device))),
                                           eval_batches)
        metrics = accuracy.compare(outputs, reference)
        kind = accuracy.arithmetic(self.ctx.precision, self.ctx.device.type)
        ok, why = accuracy.judge(metrics, kind)
        self.result.update(metrics, accuracy_ok=ok, accuracy_tolerance=kind)
        if why:
            self.ctx.notes.append(why)

    def export(self, model, inputs) -> None:
        ctx = self.ctx
        if not self.job.export or ctx.training or ctx.models_dir is None:
            return
        implemented = self.registry.last_impl(self.job.members, "export")
        if implemented is None:
            return
        name, fn = implemented
        ctx.models_dir.mkdir(parents=True, exist_ok=True)
        path = hook_checks.artifact(name, fn(model=model, example_inputs=inputs, ctx=ctx, directory=ctx.models_dir),
                                    ctx.models_dir)
        if path is not None:
            self.result.update(artifact_path=str(path), artifact_mb=path.stat().st_size / 2**20)
            self.exported = (name, path)

    def cold_start(self, reference) -> None:
        """A fresh process loads the exported artifact and answers (:mod:`densebench_core.cold_start`)."""
        import tempfile

        from densebench_core import cold_start

        if self.exported is None or reference is None:
            return
        name, path = self.exported
        if self.registry.find_impl(name, "load_artifact") is None:
            return
        later = self.job.members[self.job.members.index(name) + 1:]
        changing = [m for m in later if self.registry.find_impl(m, "prepare_model") is not None]
        if changing:
            self.ctx.notes.append(f"cold start: not run: {path.name} does not hold what {', '.join(changing)} did to "
                                  f"the model, so a new replica prepares again (prepare_s)")
            return
        with tempfile.TemporaryDirectory(prefix="densebench-cold-") as tmp:
            job_path = Path(tmp) / "job.json"
            job_path.write_text(self.job.to_json())
            answer = cold_start.measure(job_path, path, name, max(1.0, self.job.phase_timeout - 5))
        metrics = accuracy.compare(answer["outputs"], reference)
        ok, why = accuracy.judge(metrics, accuracy.arithmetic(self.ctx.precision, self.ctx.device.type))
        if not ok:
            raise cold_start.ColdStartError(f"the artifact loaded in a fresh process does not give the measured "
                                            f"model's answers: {why}")
        self.result["cold_start_s"] = answer["cold_start_s"]
        self.ctx.notes.append(f"cold start: a fresh process loaded {path.name} and answered in "
                              f"{answer['cold_start_s']:.2f} s ({answer['process_s']:.1f} s from its start, imports "
                              f"included); rel_err {metrics['rel_err']:.2g} against the fp32 reference")

    def profile(self, step) -> None:
        """A short profiler pass; in a distributed row rank 0 profiles while the other ranks run the same steps
        unprofiled (each step's all-reduce needs every rank), so the profile shows the communication too."""
        if self.job.profile_dir:
            from densebench_core import profiling

            if self.ranks and not self.ranks.leader:
                profiling.step_along(step, self.ctx)
                return
            self.result["profile"] = profiling.profile_step(step, self.ctx, Path(self.job.profile_dir))

    def fail(self, reason: str) -> None:
        self.result["status"] = "failed"
        self.result["reason"] = "; ".join(r for r in (self.result["reason"], reason) if r)


def prepare_inputs(registry: PluginRegistry, members: list[str], batch, ctx):
    """Every recipe member's ``prepare_inputs`` in stage order, each result held to the contract."""
    for name in members:
        found, new_batch = registry.call(name, "prepare_inputs", inputs=batch, ctx=ctx)
        if found:
            batch = hook_checks.inputs(name, new_batch)
    return batch


def _no_grad():
    import torch

    return torch.no_grad()


def _parameters_copy(model) -> list:
    """The weights as they are now, copied to host memory (so the row's peak device memory is not inflated)."""
    return [p.detach().to("cpu", copy=True) for p in model.parameters()] if hasattr(model, "parameters") else []


def _parameters_changed(before: list, model) -> bool:
    import torch

    after = list(model.parameters()) if hasattr(model, "parameters") else []
    return not before or any(not torch.equal(a, b.detach().cpu()) for a, b in zip(before, after))


def _is_ddp(model) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def _first_line(exc: BaseException) -> str:
    """The first line of the exception's message, at most 300 characters."""
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _one_line(exc: BaseException) -> str:
    first = _first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _oom_types():
    import torch

    return (torch.cuda.OutOfMemoryError,)


def main(argv: list[str]) -> int:
    faulthandler.enable()  # a crash (SIGSEGV, abort) leaves every thread's stack in the worker log
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks for them before a timeout kill
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = Job.from_json(job_path.read_text())
    ranks = Ranks.from_env()
    if ranks and not ranks.leader:  # rank 0 speaks for the row; the others write beside it, unread
        result_path = result_path.with_name(f"{result_path.stem}.rank{ranks.rank}{result_path.suffix}")
    phase_file = result_path.with_suffix(".phase")
    phase = ["starting"]
    phase_s: dict[str, float] = {}  # seconds per phase, kept in the JSON: where a row's wall time went
    clock = [time.monotonic()]

    def set_phase(name: str) -> None:
        now = time.monotonic()
        phase_s[phase[0]] = round(phase_s.get(phase[0], 0.0) + now - clock[0], 3)
        phase[0], clock[0] = name, now
        phase_file.write_text(name)

    def publish(result: dict) -> None:
        result = {**result, "phase_s": {**phase_s, phase[0]: round(time.monotonic() - clock[0], 3)}}
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, default=str))
        os.replace(tmp, result_path)

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    try:
        result = Worker(job, set_phase, publish, ranks).run()
        if ranks:
            ranks.stop()
            result["notes"].append(f"{ranks.world_size} processes (torchrun), batch {job.batch_size} each: "
                                   "throughput_ips is the global figure")
    except Skip as exc:
        result = {"status": "skipped", "reason": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        kind = "out of memory" if isinstance(exc, _oom_types()) else type(exc).__name__
        result = {"status": "failed", "reason": f"{kind}: {_first_line(exc)}", "phase": phase[0]}
    publish(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
