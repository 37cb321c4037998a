"""``compile``: ``torch.compile`` (TorchInductor by default), inference and training.

Options (``--backend-option compile.KEY=VALUE``), declared typed in :data:`OPTIONS` (see README.md):

* ``mode``: ``default``, ``reduce-overhead`` (CUDA graphs), ``max-autotune``, ``max-autotune-no-cudagraphs``.
* ``freezing``: ``auto`` (on for inference, off for training), ``true``, ``false``: Inductor freezing (weights
  become constants, conv+bn folded, weights prepacked). Training never freezes.
* ``dynamic``: ``false`` (default: static shapes, a shape change is a recompilation), ``true``, ``auto``
  (torch's default: static first, dynamic after a recompilation).
* ``fullgraph``: ``false`` (default) or ``true`` (a graph break is an error).
* ``backend``: ``inductor`` (default) or another ``torch.compile`` backend (``aot_eager``, ``eager``, ...);
  ``mode`` and ``freezing`` apply to Inductor only.
* ``recompile_limit``: Dynamo's per-function recompilation limit (default 8). Reaching it raises instead of
  silently falling back to eager.

Timing: compilation is lazy, so it happens in the first call, which the core times as part of ``prepare_s``.
For CUDA-graph modes on CUDA, ``prepare_model`` makes two more inference calls so that the graphs are recorded
inside ``prepare_s`` too, and ``warmup`` runs at least three steps.

Recompilation: ``warmup`` (the last thing before the timed loop) snapshots Dynamo's counters; ``after_measure``
compares. Any new frame compilation or graph during the timed loop fails the row with the guard failure that
caused it: its timings include compile time and must not be reported as steady state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl
from densebench_core.options import Option

NAME = "compile"

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
OPTIONS = {
    "mode": Option(default="default", choices=MODES, help="torch.compile mode (reduce-overhead: CUDA graphs)"),
    "freezing": Option(default=None, type=bool, auto=True,
                       help="Inductor freezing; auto: on for inference, off for training (never in training)"),
    "dynamic": Option(default=False, type=bool, auto=True,
                      help="dynamic shapes; auto: torch's default (static first, dynamic after a recompilation)"),
    "fullgraph": Option(default=False, type=bool, help="a graph break is an error"),
    "backend": Option(default="inductor", help="the torch.compile backend (inductor, aot_eager, eager, ...)"),
    "recompile_limit": Option(default=8, type=int, minimum=1,
                              help="Dynamo's recompilation limit; reaching it is an error, not an eager fallback"),
}


def check_options(values: dict[str, Any]) -> str | None:
    """Values that do not go together (checked in the parent, before any worker starts)."""
    if values["backend"] != "inductor" and values["mode"] != "default":
        return f"mode={values['mode']} needs backend=inductor, not {values['backend']!r}"
    return None


@dataclass(frozen=True)
class Options:
    mode: str
    freezing: bool
    dynamic: bool | None
    fullgraph: bool
    backend: str
    recompile_limit: int
    freezing_requested: bool | None  # what the user asked for (None: auto)

    @property
    def inductor(self) -> bool:
        return self.backend == "inductor"

    def uses_cudagraphs(self, ctx) -> bool:
        return self.inductor and self.mode in CUDAGRAPH_MODES and ctx.is_cuda


def resolve_options(ctx) -> Options:
    """The run's typed options, ``auto`` freezing decided for the mode."""
    values = ctx.options[NAME]
    requested = values["freezing"]
    freezing = (not ctx.training) if requested is None else (requested and not ctx.training)
    return Options(
        mode=values["mode"],
        freezing=freezing and values["backend"] == "inductor",
        dynamic=values["dynamic"],
        fullgraph=values["fullgraph"],
        backend=values["backend"],
        recompile_limit=values["recompile_limit"],
        freezing_requested=requested,
    )


def compile_kwargs(options: Options) -> dict[str, Any]:
    """The keyword arguments for ``torch.compile``.

    ``mode`` is passed as its Inductor options (``torch._inductor.list_mode_options``), which is exactly what
    ``torch.compile`` does with it, so that ``freezing`` can be set for this compilation alone rather than in
    the process-wide ``torch._inductor.config`` (torch.compile refuses ``mode`` and ``options`` together).
    """
    kwargs: dict[str, Any] = {
        "backend": options.backend,
        "dynamic": options.dynamic,
        "fullgraph": options.fullgraph,
    }
    if options.inductor:
        from torch._inductor import list_mode_options

        inductor_options = dict(list_mode_options(options.mode, options.dynamic)) if options.mode != "default" else {}
        inductor_options["freezing"] = options.freezing
        kwargs["options"] = inductor_options
    return kwargs


def describe(options: Options) -> str:
    parts = [f"backend={options.backend}"]
    if options.inductor:
        parts += [f"mode={options.mode}", f"freezing={str(options.freezing).lower()}"]
    dynamic = "auto" if options.dynamic is None else str(options.dynamic).lower()
    parts += [f"dynamic={dynamic}", f"fullgraph={str(options.fullgraph).lower()}"]
    return "torch.compile(" + ", ".join(parts) + ")"


def configure_dynamo(limit: int) -> None:
    """Set the recompilation limit, and make reaching it an error rather than a silent eager fallback."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, limit)
    if hasattr(config, "fail_on_recompile_limit_hit"):
        config.fail_on_recompile_limit_hit = True


# -- recompilation detection ----------------------------------------------------------------------------------
def compile_counters() -> dict[str, int]:
    """Dynamo's running totals: frames converted (compiles and recompiles), graphs made, guard failures."""
    from torch._dynamo import utils

    counters = utils.counters
    failures = getattr(utils, "guard_failures", {})
    return {
        "frames": int(counters["frames"]["total"]),
        "graphs": int(counters["stats"]["unique_graphs"]),
        "guard_failures": sum(len(reasons) for reasons in failures.values()),
    }


def last_guard_failure() -> str:
    from torch._dynamo import utils

    failures = getattr(utils, "guard_failures", {})
    reasons = [reason for per_code in failures.values() for reason in per_code]
    if not reasons:
        return ""
    return " ".join(str(reasons[-1]).split())[:300]


def recompilation_reason(before: dict[str, int], after: dict[str, int]) -> str | None:
    """A reason when the counters moved between ``before`` and ``after``, else None."""
    frames = after["frames"] - before["frames"]
    graphs = after["graphs"] - before["graphs"]
    if frames <= 0 and graphs <= 0:
        return None
    reason = (
        f"recompiled during the timed loop ({frames} new Dynamo frame compilation(s), {graphs} new graph(s)); "
        "the timings include compilation"
    )
    why = last_guard_failure() if after["guard_failures"] > before["guard_failures"] else ""
    return reason + (f"; guard failure: {why}" if why else "")


# -- hooks ----------------------------------------------------------------------------------------------------
@hookimpl
def backend_info():
    return BackendInfo(
        "torch.compile (Inductor; mode, freezing for inference); recompilation while timing fails the row",
        modes=("inference", "training"), stage="compiler", options=OPTIONS, check_options=check_options)


@hookimpl
def check_available(ctx):
    options = resolve_options(ctx)
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if not options.inductor:
        return None
    if ctx.is_cuda:
        try:
            from torch.utils._triton import has_triton
        except ImportError:
            return None
        if not has_triton():
            return "Inductor on CUDA needs triton, which is not installed or does not support this GPU"
        return None
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 - InvalidCxxCompiler and friends
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"Inductor on the CPU needs a C++ compiler (g++ or $CXX): {type(exc).__name__}: {first}"
    return None


@hookimpl
def prepare_model(model, example_inputs, ctx):
    options = resolve_options(ctx)
    torch._dynamo.reset()  # a clean Dynamo state: no earlier compilation's cache entries or counters count here
    configure_dynamo(options.recompile_limit)
    state = ctx.state.setdefault(NAME, {})
    compiled = torch.compile(model, **compile_kwargs(options))
    state.update(options=options, description=describe(options))
    ctx.notes.append(describe(options))
    if options.freezing_requested and ctx.training:
        ctx.notes.append("compile.freezing=true ignored: freezing is for inference only")
    if options.uses_cudagraphs(ctx) and not ctx.training:
        # CUDA graph trees record on the first calls after compilation: do that here, inside prepare_s
        for _ in range(2):
            compiled(example_inputs)
    return compiled


@hookimpl
def warmup(step, ctx):
    options = ctx.state.get(NAME, {}).get("options") or resolve_options(ctx)
    iterations = max(ctx.warmup, 3) if options.uses_cudagraphs(ctx) else ctx.warmup
    for _ in range(iterations):
        step()
    ctx.synchronize()


@hookimpl
def before_measure(ctx):
    ctx.state.setdefault(NAME, {})["counters"] = compile_counters()


@hookimpl
def after_measure(ctx):
    before = ctx.state.get(NAME, {}).get("counters")
    if before is None:
        return "no compilation counters were recorded before the timed loop (before_measure hook not called)"
    return recompilation_reason(before, compile_counters())
