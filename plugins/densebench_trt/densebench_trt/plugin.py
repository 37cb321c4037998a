"""``trt``: DenseNet-121 compiled ahead of time by Torch-TensorRT's Dynamo path, in fp16 (default) or fp32.

Options (``--backend-option trt.KEY=VALUE``):

* ``precision``: ``fp16`` (default) or ``fp32``. With fp16 the plugin casts the inputs (``prepare_inputs``) and
  the model (``prepare_model``) to half before compiling, so both torch-tensorrt API generations build an
  fp16 engine from an fp16 graph (see :mod:`densebench_trt.compat`).
* ``format``: ``ep`` (default; ``torch.export`` ExportedProgram, loadable with ``torch_tensorrt.load`` or
  ``torch.export.load``) or ``ts`` (TorchScript, loadable with ``torch.jit.load`` once torch_tensorrt is
  imported).

Recipes: ``trt`` is the ``compiler`` stage. ``channels_last+trt`` compiles an NHWC model; ``fp16+trt`` is the
same as ``trt`` with its default ``precision=fp16`` (the built-in fp16 backend casts first, trt finds the
dtypes already right); ``fp16+trt`` with ``trt.precision=fp32`` contradicts itself and fails with that reason.

Importing this module never imports torch_tensorrt: ``densebench plugins`` lists ``trt`` on any machine.
"""

from __future__ import annotations

from pathlib import Path

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl
from densebench_trt import compat

NAME = compat.NAME


@hookimpl
def backend_info():
    return BackendInfo(
        description="Torch-TensorRT, Dynamo path, fp16 (default) or fp32 engine (option trt.precision)",
        modes=("inference",),
        requires_cuda=True,
        requires_packages=("torch_tensorrt",),
        stage="compiler",
        composable=True,
        options=compat.OPTIONS,
    )


@hookimpl
def check_available(ctx):
    module, reason = compat.load_torch_tensorrt()
    if reason:
        return reason
    version = str(module.__version__)
    mismatch = compat.torch_mismatch(version, torch.__version__)
    if mismatch:
        ctx.notes.append(mismatch)
    trt_version = compat.tensorrt_version()
    ctx.state[NAME] = {
        "torch_tensorrt": version,
        "tensorrt": trt_version,
        "api": compat.api_generation(version),
    }
    return None


@hookimpl
def prepare_inputs(inputs, ctx):
    options = compat.resolve_options(ctx.options)
    dtype = compat.torch_dtype(options.precision)
    if not inputs.is_floating_point() or inputs.dtype == dtype:
        return inputs
    if options.precision == "fp32" and inputs.dtype != torch.float32:
        raise compat.OptionError(
            f"trt.precision=fp32, but an earlier recipe member already made the inputs {inputs.dtype}; "
            "drop trt.precision=fp32 or the other precision backend"
        )
    return inputs.to(dtype)


@hookimpl
def prepare_model(model, example_inputs, ctx):
    options = compat.resolve_options(ctx.options)
    module, reason = compat.load_torch_tensorrt()
    if reason:  # check_available said the same; reached only when a caller skipped it
        raise RuntimeError(reason)
    dtype = compat.torch_dtype(options.precision)
    if isinstance(model, torch.nn.Module):
        floating = [p.dtype for p in model.parameters() if p.is_floating_point()]
        if options.precision == "fp32" and any(d != torch.float32 for d in floating):
            raise compat.OptionError(
                f"trt.precision=fp32, but an earlier recipe member already cast the model to {floating[0]}"
            )
        model = model.to(dtype).eval()
    if example_inputs.is_floating_point() and example_inputs.dtype != dtype:
        example_inputs = example_inputs.to(dtype)
    version = str(module.__version__)
    kwargs = compat.compile_kwargs(version, options.precision)
    compiled = module.compile(model, ir="dynamo", inputs=[example_inputs], **kwargs)
    ctx.precision = options.precision
    info = ctx.state.setdefault(NAME, {})
    info.update(
        torch_tensorrt=version, api=compat.api_generation(version), compile_kwargs=compat.describe_kwargs(kwargs)
    )
    ctx.notes.append(
        f"torch_tensorrt {version} ({info['api']} API"
        + (f", TensorRT {info['tensorrt']}" if info.get("tensorrt") else "")
        + f"): {info['compile_kwargs']}"
    )
    return compiled


@hookimpl
def export(model, example_inputs, ctx, directory):
    options = compat.resolve_options(ctx.options)
    module, reason = compat.load_torch_tensorrt()
    if reason:
        raise RuntimeError(reason)
    path = compat.artifact_path(directory, ctx.backend, ctx.batch_size, options.format)
    output_format = compat.FORMATS[options.format][0]
    module.save(model, str(path), output_format=output_format, inputs=[example_inputs])
    return path


@hookimpl
def load_artifact(path, ctx):
    """The saved program, as a deployment loads it: torch_tensorrt imported first (it registers the TensorRT
    runtime ops the program calls), then ``torch.export.load(...).module()`` (``.ep``) or ``torch.jit.load`` (``.ts``).
    Not verified against a real TensorRT: it cannot be installed where this was written (README.md)."""
    _, reason = compat.load_torch_tensorrt()
    if reason:
        raise RuntimeError(reason)
    if Path(path).suffix == compat.FORMATS["ts"][1]:
        return torch.jit.load(str(path), map_location=ctx.device).eval()
    return torch.export.load(str(path)).module()
