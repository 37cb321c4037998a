"""``fused``: DenseNet's dense layers as fused Triton kernels; recipe stage ``rewrite``, inference.

Applied after the layout and precision stages and before a compiler (``channels_last+fp16+fused+compile``); alone
(``fused``, ``channels_last+fp16+fused``) the rewritten model runs eagerly. What it does to the model is in
:mod:`densebench_fused.dense_fusion`; the kernel in :mod:`densebench_fused.bn_relu_gemm`.

Arithmetic: the dense blocks run in the precision the earlier stages chose (``ctx.precision``): fp32 (TF32 where
torch allows it), fp16, bf16, and under ``amp`` in the autocast dtype (the blocks' weights are converted once;
autocast would convert them on every call). The Triton kernels run on CUDA; elsewhere the same rewrite runs its
torch-ops path, with the same rounding.

Refused, with the reason: training (BatchNorm must use running statistics; the row is skipped before any worker
starts), a recipe with ``jit`` (before any worker: a traced model calls the fused op by a key that only exists in
the process that made it, so its ``.pt`` could not be loaded anywhere else), a precision it has no kernel for,
and a model without dense blocks (the row fails with that reason).

Option ``fused.conv3x3``: ``triton`` (default; :mod:`densebench_fused.conv3x3` writes each layer's 32 channels
straight into the block buffer) or ``cudnn`` (cuDNN's conv, then a copy into the buffer: the kernels before
session 6, kept to measure the difference).
"""

from __future__ import annotations

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl
from densebench_core.options import Option

NAME = "fused"
OPTIONS = {
    "conv3x3": Option(default="triton", choices=("triton", "cudnn"),
                      help="the dense layers' 3x3 convs: triton (written straight into the block buffer) or cudnn "
                           "(then copied into it)"),
}

#: ctx.precision -> the dense blocks' dtype
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
          "amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}  # fmt: skip
#: recipe members it cannot go with, and why (checked in the parent, before any worker)
REFUSED_WITH = {
    "jit": "a traced model calls the fused op by a key that exists only in the process that made it, so the "
    "exported .pt could not be loaded anywhere else (use compile)",
}


def check_recipe(members: list[str], options: dict) -> str | None:
    for member in members:
        if member in REFUSED_WITH:
            return f"fused does not go with {member}: {REFUSED_WITH[member]}"
    return None


def block_dtype(precision: str) -> torch.dtype:
    if precision not in DTYPES:
        raise ValueError(f"fused has no kernels for precision {precision!r} (it runs {', '.join(DTYPES)})")
    return DTYPES[precision]


@hookimpl
def backend_info():
    return BackendInfo(
        "DenseNet dense layers as fused Triton kernels over one NHWC block buffer (BN+ReLU, 1x1 conv, BN+ReLU in "
        "one GEMM); transitions pool-first",
        modes=("inference",), stage="rewrite", options=OPTIONS, check_recipe=check_recipe)


@hookimpl
def prepare_model(model, ctx):
    from densebench_fused.dense_fusion import fuse_dense_blocks
    from densebench_fused.triton_support import triton_usable

    dtype = block_dtype(ctx.precision)
    conv = ctx.option(NAME, "conv3x3")
    counts = fuse_dense_blocks(model, dtype, conv)
    probe = torch.empty(0, dtype=dtype, device=ctx.device)
    kernels = "Triton kernels" if triton_usable(probe) else "torch ops (no Triton kernels on this device)"
    ctx.notes.append(
        f"fused: {counts['layers']} dense layers in {counts['blocks']} blocks as fused GEMMs, 3x3 convs by {conv} "
        f"({str(dtype).removeprefix('torch.')}, {kernels}), {counts['transitions']} transitions pool-first"
    )
    return model
