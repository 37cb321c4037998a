"""``amp``: automatic mixed precision with ``torch.autocast``, for inference and training.

Options (``--backend-option amp.KEY=VALUE``):

* ``dtype``: ``auto`` (default: ``fp16`` on CUDA, ``bf16`` elsewhere), ``fp16`` or ``bf16``.
* ``init_scale``: the fp16 ``GradScaler``'s initial loss scale (default ``65536``, torch's own default).

How it composes: ``amp`` is the recipe's ``precision`` stage. ``prepare_model`` wraps the model in
:class:`AutocastModule`, an ``nn.Module`` whose ``forward`` runs the wrapped model under ``torch.autocast``. A
later stage therefore receives a model that carries its own autocast region: ``torch.compile`` traces through
it (Dynamo understands ``torch.autocast``), ``torch.jit.trace`` records the casts it makes. The inputs stay
fp32; autocast casts inside the region.

Training: ``run_step`` does the forward pass (under the wrapper's autocast), the loss in fp32, and the backward
pass and optimizer step through a ``torch.amp.GradScaler``, enabled for fp16 (whose small range needs loss
scaling) and a pass-through for bf16. Inference: ``run_step`` is just ``model(inputs)``, as the core's default.
"""

from __future__ import annotations

import functools
import math

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl
from densebench_core.options import Option

NAME = "amp"

#: option value -> torch dtype
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
OPTIONS = {
    "dtype": Option(default=None, auto=True, choices=tuple(DTYPES),
                    aliases={"float16": "fp16", "half": "fp16", "bfloat16": "bf16"},
                    help="autocast dtype; auto: fp16 on CUDA, bf16 elsewhere"),
    "init_scale": Option(default=65536.0, type=float, minimum=1.0,
                         help="the fp16 GradScaler's initial loss scale (training)"),
}


def resolve_dtype(ctx) -> str:
    """The autocast dtype this run uses, ``fp16`` or ``bf16`` (``auto`` resolved for the device)."""
    chosen = ctx.option(NAME, "dtype")
    if chosen is None:
        return "fp16" if ctx.is_cuda else "bf16"
    return chosen


# -- the autocast wrapper -------------------------------------------------------------------------------------
class AutocastModule(torch.nn.Module):
    """Runs ``module`` under ``torch.autocast(device_type, dtype)``; otherwise transparent.

    ``cache_enabled=False``: autocast's weight-cast cache only pays when a weight is used twice in one region
    (never in DenseNet), and it must be off for ``torch.jit.trace`` to record the casts.
    """

    def __init__(self, module: torch.nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.device_type = device_type
        self.dtype = dtype
        self.training = module.training  # not .train(): that would also reset every submodule's mode

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False):
            return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"device_type={self.device_type!r}, dtype={self.dtype}"


def wrap(model, device_type: str, dtype: torch.dtype):
    """An autocast version of ``model``: an :class:`AutocastModule` for a module, a function otherwise."""
    if isinstance(model, torch.nn.Module):
        return AutocastModule(model, device_type, dtype)

    @functools.wraps(model)
    def autocast_call(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype, cache_enabled=False):
            return model(*args, **kwargs)

    return autocast_call


@functools.lru_cache(maxsize=None)
def autocast_problem(device_type: str, option: str) -> str | None:
    """Why autocast to ``option`` cannot work on ``device_type`` in this torch, or None.

    torch.autocast only *warns* and runs in fp32 when a dtype is not supported on a device; a benchmark must
    not label that row as mixed precision, so a tiny matmul checks that the cast really happens.
    """
    dtype = DTYPES[option]
    is_available = getattr(getattr(torch.amp, "autocast_mode", None), "is_autocast_available", None)
    if is_available is not None and not is_available(device_type):
        return f"torch {torch.__version__} has no autocast for {device_type} devices"
    if device_type == "cuda" and option == "bf16" and not torch.cuda.is_bf16_supported():
        return f"this GPU ({torch.cuda.get_device_name()}) does not support bf16"
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = torch.ones(8, 8, device=device_type)
            with torch.autocast(device_type, dtype=dtype):
                result_dtype = (a @ a).dtype
    except Exception as exc:  # noqa: BLE001 - any failure means: not usable here
        return f"autocast to {option} failed on {device_type}: {type(exc).__name__}: {exc}"
    if result_dtype != dtype:
        return f"torch {torch.__version__} does not autocast to {option} on {device_type} (matmul stayed {result_dtype})"
    return None


def make_scaler(device_type: str, enabled: bool, init_scale: float):
    """A GradScaler for ``device_type`` (``torch.amp`` where it exists, ``torch.cuda.amp`` before 2.3)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device_type, init_scale=init_scale, enabled=enabled)
    return torch.cuda.amp.GradScaler(init_scale=init_scale, enabled=enabled and device_type == "cuda")


# -- hooks ----------------------------------------------------------------------------------------------------
@hookimpl
def backend_info():
    return BackendInfo("torch.autocast mixed precision: fp16 + GradScaler (CUDA default) or bf16 (CPU default)",
                       modes=("inference", "training"), stage="precision", options=OPTIONS)


@hookimpl
def check_available(ctx):
    return autocast_problem(ctx.device.type, resolve_dtype(ctx))


@hookimpl
def prepare_model(model, ctx):
    option = resolve_dtype(ctx)
    dtype = DTYPES[option]
    device_type = ctx.device.type
    ctx.precision = f"amp-{option}"
    state = ctx.state.setdefault(NAME, {})
    state.update(dtype=option, steps=0)
    if ctx.training:
        init_scale = ctx.option(NAME, "init_scale")
        state["scaler"] = make_scaler(device_type, enabled=(option == "fp16"), init_scale=init_scale)
        state["init_scale"] = init_scale
    return wrap(model, device_type, dtype)


@hookimpl
def run_step(model, inputs, ctx):
    if not ctx.training:
        return model(inputs)
    state = ctx.state[NAME]
    scaler = state["scaler"]
    optimizer = ctx.optimizer
    optimizer.zero_grad(set_to_none=True)
    output = model(inputs)  # the wrapper's autocast region covers the forward pass only
    loss = ctx.loss_fn(output.float(), ctx.targets)
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # skips the update when the scaled gradients hold inf/NaN
    scaler.update()
    state["steps"] += 1
    return output


@hookimpl
def after_measure(ctx):
    """Note (not fail) fp16 training steps the GradScaler skipped: those steps did no optimizer update."""
    state = ctx.state.get(NAME, {})
    scaler = state.get("scaler")
    if scaler is None or not scaler.is_enabled() or not state.get("steps"):
        return None
    scale = float(scaler.get_scale())
    init_scale = state["init_scale"]
    if 0 < scale < init_scale:
        skipped = round(math.log2(init_scale / scale))
        ctx.notes.append(
            f"amp: the GradScaler skipped about {skipped} of {state['steps']} optimizer steps on inf/NaN "
            f"gradients (loss scale {init_scale:g} -> {scale:g}); raise --warmup so warm-up absorbs them, "
            "or lower amp.init_scale"
        )
    return None
