"""``jit``: TorchScript for deployment: ``torch.jit.trace``, ``torch.jit.freeze``, ``torch.jit.optimize_for_inference``.

Inference only, CPU and CUDA. With ``--export`` it writes ``models/<run_id>/<backend>.pt``, loadable by
``torch.jit.load`` in Python and ``torch::jit::load`` in C++: one file per run, as the traced DenseNet runs at any
batch size.

Options (``--backend-option jit.KEY=VALUE``), see README.md for why the CUDA defaults are what they are:

* ``optimize``: ``true`` (default) or ``false``: run ``torch.jit.optimize_for_inference`` after freezing.
* ``fuser``: ``auto`` (default: ``none`` on CUDA, ``default`` on the CPU), ``none`` (no TorchScript fuser),
  ``nnc`` (the TensorExpr fuser on CPU and GPU), ``default`` (torch's own settings, as the process started).
* ``executor``: ``auto`` (default: ``simple`` on CUDA, ``profiling`` on the CPU), ``profiling`` (torch's
  default: profile the first call, specialize and fuse on the next), ``simple`` (the profiling executor with a
  fusion strategy of zero specializations: no profiling, nothing happens at the second call), ``legacy`` (the
  old executor).

The fuser and executor settings are process-wide and are applied in ``prepare_model``, before the first call
(an executor picks its plan on its first calls).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl
from densebench_core.options import Option

NAME = "jit"

FUSERS = ("none", "nnc", "default")
EXECUTORS = ("profiling", "simple", "legacy")
OPTIONS = {
    "optimize": Option(default=True, type=bool, help="run torch.jit.optimize_for_inference after freezing"),
    "fuser": Option(default=None, auto=True, choices=FUSERS,
                    help="TorchScript fuser; auto: none on CUDA, default on the CPU"),
    "executor": Option(default=None, auto=True, choices=EXECUTORS,
                       help="TorchScript executor; auto: simple on CUDA, profiling on the CPU"),
}


@dataclass(frozen=True)
class Options:
    optimize: bool
    fuser: str
    executor: str

    def describe(self) -> str:
        return f"optimize_for_inference={str(self.optimize).lower()}, fuser={self.fuser}, executor={self.executor}"


def resolve_options(ctx) -> Options:
    """The run's typed options, ``auto`` resolved for the device."""
    values = ctx.options[NAME]
    fuser = values["fuser"] or ("none" if ctx.is_cuda else "default")
    executor = values["executor"] or ("simple" if ctx.is_cuda else "profiling")
    return Options(optimize=values["optimize"], fuser=fuser, executor=executor)


# -- quiet TorchScript ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_torchscript(notes: list[str] | None = None):
    """Silence torch's FutureWarnings about TorchScript's deprecation (torch >= 2.10) around our own calls.

    Tracer warnings are real findings about the model (a Python value baked into the trace): they go to
    ``notes`` when given, else they are shown as usual.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = str(w.message)
        if issubclass(w.category, (FutureWarning, DeprecationWarning)) and "torch.jit" in text:
            continue
        if notes is not None and issubclass(w.category, torch.jit.TracerWarning):
            line = f"jit trace: {' '.join(text.split())[:200]}"
            if line not in notes:
                notes.append(line)
            continue
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


# -- runtime settings -----------------------------------------------------------------------------------------
def _try(setter, *args):
    try:
        return setter(*args)
    except (AttributeError, RuntimeError):  # removed or refused in this torch release: nothing to turn off
        return None


def _startup_settings() -> dict:
    c = torch._C
    strategy = None
    if hasattr(c, "_jit_set_fusion_strategy"):
        strategy = c._jit_set_fusion_strategy([("STATIC", 2), ("DYNAMIC", 10)])
        c._jit_set_fusion_strategy(strategy)  # the setter returns the previous strategy: put it back
    return {
        "texpr": _try(c._jit_texpr_fuser_enabled),
        "cpu": _try(c._jit_can_fuse_on_cpu),
        "gpu": _try(c._jit_can_fuse_on_gpu),
        "strategy": strategy,
    }


#: torch's own fuser settings, read when this module was imported (before this plugin changed anything)
STARTUP = _startup_settings()


#: the fusion strategy of the "simple" executor: no profiling-based specialization at all
NO_SPECIALIZATION = [("STATIC", 0), ("DYNAMIC", 0)]


def apply_runtime_settings(options: Options) -> None:
    """Set TorchScript's fuser and executor for the calls to come; every setting is set, none is left over.

    * fuser ``none``: the TensorExpr (NNC) fuser and the legacy CPU/GPU fusers off; ``nnc``: all on;
      ``default``: as torch had them when this module was imported.
    * executor ``simple``: the profiling executor with a fusion strategy of zero static and zero dynamic
      specializations. Its bailout depth is then 0 and it takes TorchScript's simple-executor path: the graph
      gets the profiling-insensitive optimizations once, on the first call, and runs as it is from then on (no
      profiling run, no second-call specialization or fusion: the step that hung on the H200).
      ``profiling``: torch's strategy (2 static, 10 dynamic specializations); ``legacy``: the old executor.
    * Graph-executor optimization (``torch._C._set_graph_executor_optimize``) always stays on: turning it off
      broke frozen BatchNorm on the H200 ("Couldn't find method: 'forward'", docs/perf-notes.md).
    """
    c = torch._C
    if options.fuser == "none":
        texpr, cpu, gpu = False, False, False
    elif options.fuser == "nnc":
        texpr, cpu, gpu = True, True, True
    else:
        texpr, cpu, gpu = STARTUP["texpr"], STARTUP["cpu"], STARTUP["gpu"]
    if texpr is not None:
        _try(c._jit_set_texpr_fuser_enabled, texpr)
    if cpu is not None:
        _try(c._jit_override_can_fuse_on_cpu, cpu)
    if gpu is not None:
        _try(c._jit_override_can_fuse_on_gpu, gpu)
    strategy = NO_SPECIALIZATION if options.executor == "simple" else STARTUP["strategy"]
    if strategy is not None and hasattr(c, "_jit_set_fusion_strategy"):
        _try(c._jit_set_fusion_strategy, strategy)
    _try(c._jit_set_profiling_executor, options.executor != "legacy")
    _try(c._set_graph_executor_optimize, True)


def current_settings() -> dict:
    c = torch._C
    strategy = None
    if hasattr(c, "_jit_set_fusion_strategy"):
        strategy = c._jit_set_fusion_strategy(NO_SPECIALIZATION)
        c._jit_set_fusion_strategy(strategy)
    return {
        "fusion_strategy": [tuple(s) for s in strategy] if strategy is not None else None,
        "texpr_fuser": _try(c._jit_texpr_fuser_enabled),
        "fuse_on_cpu": _try(c._jit_can_fuse_on_cpu),
        "fuse_on_gpu": _try(c._jit_can_fuse_on_gpu),
        "graph_executor_optimize": _try(c._get_graph_executor_optimize),
    }


# -- availability ---------------------------------------------------------------------------------------------
class _Probe(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, x):
        return torch.relu(self.linear(x))


@functools.lru_cache(maxsize=None)
def torchscript_problem() -> str | None:
    """Why this torch cannot trace, freeze and run a module with TorchScript, or None."""
    jit = getattr(torch, "jit", None)
    missing = [f for f in ("trace", "freeze", "optimize_for_inference", "save", "load") if not hasattr(jit, f)]
    if missing:
        return f"torch {torch.__version__} has no TorchScript (torch.jit.{missing[0]} is missing)"
    try:
        with quiet_torchscript(), torch.no_grad():
            x = torch.ones(1, 2)
            frozen = torch.jit.freeze(torch.jit.trace(_Probe().eval(), x, check_trace=False))
            frozen(x)
    except Exception as exc:  # noqa: BLE001 - any refusal means the backend cannot run here
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"torch {torch.__version__} refuses TorchScript: {type(exc).__name__}: {first}"
    return None


# -- hooks ----------------------------------------------------------------------------------------------------
@hookimpl
def backend_info():
    # a traced DenseNet runs at any batch size: one artifact per run
    return BackendInfo("TorchScript trace + freeze + optimize_for_inference; exports a .pt for torch.jit.load / C++",
                       stage="compiler", options=OPTIONS, artifact_per_batch_size=False)


@hookimpl
def check_available():
    return torchscript_problem()


@hookimpl
def prepare_model(model, example_inputs, ctx):
    options = resolve_options(ctx)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"jit traces a torch.nn.Module; an earlier recipe member returned {type(model).__name__}")
    apply_runtime_settings(options)  # before the first call: the executor plans on the first calls
    model.eval()  # freezing needs eval mode
    with quiet_torchscript(ctx.notes), torch.no_grad():
        traced = torch.jit.trace(model, example_inputs, check_trace=False)
        frozen = torch.jit.freeze(traced)
        scripted = torch.jit.optimize_for_inference(frozen) if options.optimize else frozen
    ctx.state[NAME] = {"options": options, "traced": traced, "settings": current_settings()}
    ctx.notes.append(f"jit: {options.describe()}")
    return scripted


@hookimpl
def warmup(step, ctx):
    """The profiling executor profiles on the first call and optimizes on the second: both before timing."""
    options = ctx.state.get(NAME, {}).get("options") or resolve_options(ctx)
    iterations = ctx.warmup if options.executor == "simple" else max(ctx.warmup, 2)
    for _ in range(iterations):
        step()
    ctx.synchronize()


@hookimpl
def export(model, ctx, directory):
    """Write the frozen TorchScript module as ``<backend>.pt`` (it runs at any batch size).

    What is written is the *frozen* module, not the ``optimize_for_inference`` one: that pass specializes the
    graph to this machine (on the CPU it bakes in MKLDNN weight layouts, which ``torch.jit.load`` then
    refuses: "required keyword attribute 'value' is undefined"), and it rewrites its input in place, so the
    frozen graph is made again from the trace here. Run ``torch.jit.optimize_for_inference`` after loading.
    """
    state = ctx.state.get(NAME, {})
    traced = state.get("traced")
    path = Path(directory) / f"{ctx.backend}.pt"
    with quiet_torchscript(), torch.no_grad():
        portable = torch.jit.freeze(traced) if traced is not None else model
        torch.jit.save(portable, str(path))
    return path


@hookimpl
def load_artifact(path, ctx):
    """``torch.jit.load`` of the frozen module, under the row's fuser and executor settings (as it was measured)."""
    apply_runtime_settings(resolve_options(ctx))
    with quiet_torchscript():
        return torch.jit.load(str(path), map_location=ctx.device).eval()
