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

Option ``fused.gemm``: ``native`` (default: the 1x1 GEMMs in the blocks' dtype) or ``fp8`` (e4m3 products, fp32
accumulation, with per-channel activation scales calibrated on :data:`CALIBRATION_IMAGES` seeded images before the
rewrite). fp8 needs fp16 or bf16 blocks: a recipe without a precision stage is refused while parsing, and a row
whose blocks would be fp32 otherwise fails with that reason.
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
    "gemm": Option(default="native", choices=("native", "fp8"),
                   help="the dense layers' 1x1 GEMMs: native (the blocks' dtype) or fp8 (e4m3 products, fp32 "
                        "accumulation, per-channel scales calibrated on seeded images; fp16 or bf16 blocks only)"),
}
#: seeded images (the core's calibration stream, at the row's image size) the fp8 activation scales are measured on
CALIBRATION_IMAGES = 16
FP8_NEEDS = "fused.gemm=fp8 needs fp16 or bf16 dense blocks"

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
    if options.get(NAME, {}).get("gemm") == "fp8" and not _precision_stages(members):
        return f"{FP8_NEEDS}, and without a precision stage (fp16, amp) they run fp32"
    return None


def _precision_stages(members: list[str]) -> list[str]:
    """The recipe's members of stage ``precision``: without one, the blocks run fp32."""
    from densebench_core.plugins import build_registry

    infos = build_registry(only=set(members)).infos()
    return [member for member in members if member in infos and infos[member].stage == "precision"]


def block_dtype(precision: str, gemm: str = "native") -> torch.dtype:
    if precision not in DTYPES:
        raise ValueError(f"fused has no kernels for precision {precision!r} (it runs {', '.join(DTYPES)})")
    if gemm == "fp8" and DTYPES[precision] not in (torch.float16, torch.bfloat16):
        raise ValueError(f"{FP8_NEEDS}, and precision {precision!r} runs them in fp32 (add fp16 or amp to the recipe)")
    return DTYPES[precision]


@hookimpl
def backend_info():
    return BackendInfo(
        "DenseNet dense layers as fused Triton kernels over one NHWC block buffer (BN+ReLU, 1x1 conv, BN+ReLU in "
        "one GEMM); transitions pool-first",
        modes=("inference",), stage="rewrite", options=OPTIONS, check_recipe=check_recipe)


@hookimpl
def prepare_model(model, example_inputs, ctx):
    from densebench_fused.dense_fusion import calibrate, fuse_dense_blocks
    from densebench_fused.triton_support import triton_usable

    gemm = ctx.option(NAME, "gemm")
    dtype = block_dtype(ctx.precision, gemm)
    conv = ctx.option(NAME, "conv3x3")
    act_scales = None
    if gemm == "fp8":  # calibrated on the unfused model, in the dtype and on the device the row runs
        from densebench_core.model import make_inputs

        images = make_inputs(CALIBRATION_IMAGES, ctx.image_size, ctx.seed, stream="calibration")
        act_scales = calibrate(model, images.to(example_inputs.device, example_inputs.dtype))
    counts = fuse_dense_blocks(model, dtype, conv, act_scales)
    probe = torch.empty(0, dtype=dtype, device=ctx.device)
    kernels = "Triton kernels" if triton_usable(probe) else "torch ops (no Triton kernels on this device)"
    ctx.notes.append(
        f"fused: {counts['layers']} dense layers in {counts['blocks']} blocks as fused GEMMs, 3x3 convs by {conv} "
        f"({str(dtype).removeprefix('torch.')}, {kernels}), {counts['transitions']} transitions pool-first"
    )
    if gemm == "fp8":
        ctx.notes.append(f"fused: fp8 e4m3 GEMMs (fp32 accumulation), per-channel activation scales from "
                         f"{CALIBRATION_IMAGES} seeded images")
    return model
