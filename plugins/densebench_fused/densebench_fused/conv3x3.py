"""A dense layer's 3x3 conv (``conv2``, padding 1, no bias) as an implicit GEMM that writes into the block's buffer.

The dense-block rewrite keeps a block's features in one NHWC buffer, viewed as the row-major matrix
``rows = features.permute(0, 2, 3, 1).reshape(N*H*W, C_total)``. Each layer's 1x1 GEMM
(:mod:`densebench_fused.bn_relu_gemm`) gives its bottleneck as an [M, 128] row-major matrix (M = N*H*W, pixels
in NHWC order); the 3x3 conv turns that into the layer's 32 new channels, ``rows[:, c:c + 32]``. cuDNN writes
its result to a fresh tensor that must then be copied into the buffer's column slice (a pass over the output,
~0.95 ms per batch-256 forward on the H200, and 58 more kernels at batch 1). :func:`conv3x3_into` stores
straight into the slice.

The kernel is an implicit GEMM: ``out[m, :] = sum over taps t, channels c of x[neighbour(m, t), c] *
packed[t*C + c, :]``. A program computes ``BLOCK_M`` output pixels x all 32 output channels, looping over the
9 taps x C input channels in ``BLOCK_K`` chunks (one flat loop over K = 9*C, so Triton pipelines it); for each
tap it loads the rows of the shifted neighbour pixels, masked to zero where the neighbour falls outside the
image (the zero padding; since a neighbour inside the image is in the same image, this also keeps taps from
reading across batch boundaries), and accumulates ``tl.dot`` in fp32. The weight is packed once by
:func:`pack_weight` into the GEMM's B matrix [9*C, 32] (tap-major, ``K = (kh*3 + kw)*C + c``).

Precision: fp16 and bf16 operands go to ``tl.dot`` as they are (fp32 accumulation, one rounding to the output
dtype); fp32 operands as :func:`~densebench_fused.triton_support.dot_options` says (TF32 only where torch allows
it), as in the 1x1 kernel; what Triton's CPU interpreter cannot check is said there.

:func:`conv3x3` runs the kernel on CUDA (fp16, bf16, fp32) and :func:`reference` (torch ops: ``F.conv2d`` on the
NCHW view, output in the input dtype) elsewhere. ``tests/test_conv3x3.py`` checks the kernel against
:func:`reference` under the interpreter; ``benchmarks/conv3x3_tune.py`` times it against cuDNN + copy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from densebench_fused.triton_support import dot_options, tl, triton, triton_usable

TAPS = 9  # 3x3
CONFIG_KEYS = ("BLOCK_M", "BLOCK_K", "num_warps", "num_stages")


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """``conv2``'s weight [C_out, C, 3, 3] (OIHW, as torch holds it) as the kernel's B matrix [9*C, C_out].

    Row ``(kh*3 + kw)*C + c`` holds the weights of input channel ``c`` at tap ``(kh, kw)``; contiguous, same
    dtype. Done once per layer, not per call.
    """
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"pack_weight needs a [C_out, C, 3, 3] weight, got {tuple(weight.shape)}")
    c_out, c_in = weight.shape[:2]
    return weight.permute(2, 3, 1, 0).reshape(TAPS * c_in, c_out).contiguous()


def unpack_weight(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack_weight`: [9*C, C_out] -> [C_out, C, 3, 3] (a view, not contiguous)."""
    depth, c_out = packed.shape
    return packed.view(3, 3, depth // TAPS, c_out).permute(3, 2, 0, 1)


def reference(bottleneck, weight, n: int, h: int, w: int):
    """The conv in torch ops: ``F.conv2d`` (padding 1) on the NCHW view of ``bottleneck`` [N*H*W, C] (NHWC rows).

    ``weight`` is either the OIHW [C_out, C, 3, 3] tensor or its :func:`pack_weight` form [9*C, C_out]. Returns
    [N*H*W, C_out] in ``bottleneck``'s dtype (cuDNN and the CPU accumulate fp16/bf16 in fp32 and round once).
    """
    if weight.dim() == 2:
        weight = unpack_weight(weight)
    channels = bottleneck.shape[1]
    nchw = bottleneck.reshape(n, h, w, channels).permute(0, 3, 1, 2)  # NCHW shape, NHWC memory
    out = F.conv2d(nchw, weight.to(bottleneck.dtype), padding=1)
    return out.permute(0, 2, 3, 1).reshape(n * h * w, weight.shape[0])


if triton is not None:

    @triton.jit
    def _conv3x3_kernel(
        x_ptr, w_ptr, out_ptr,
        M, H, W, stride_xm, stride_wk, stride_om,
        C: tl.constexpr, C_OUT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr, WIDEN: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        pixels = pid * BLOCK_M + tl.arange(0, BLOCK_M)  # output rows (NHWC pixel order)
        in_range = pixels < M
        within = pixels % (H * W)
        y = within // W
        x = within % W
        cols = tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, 9 * C, BLOCK_K):  # C % BLOCK_K == 0: a chunk never straddles two taps
            tap = k0 // C
            dy = tap // 3 - 1
            dx = tap % 3 - 1
            ny = y + dy
            nx = x + dx
            # a neighbour inside the image is in the same image: the padding mask is also the batch-boundary mask
            valid = in_range & (ny >= 0) & (ny < H) & (nx >= 0) & (nx < W)
            source = pixels + dy * W + dx
            ks = (k0 - tap * C) + tl.arange(0, BLOCK_K)
            a = tl.load(x_ptr + source[:, None] * stride_xm + ks[None, :], mask=valid[:, None], other=0.0)
            b = tl.load(w_ptr + (k0 + tl.arange(0, BLOCK_K))[:, None] * stride_wk + cols[None, :],
                        mask=cols[None, :] < C_OUT, other=0.0)  # fmt: skip
            if WIDEN:  # only under the interpreter, whose bf16 product is wrong (triton_support)
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        tl.store(out_ptr + pixels[:, None] * stride_om + cols[None, :], acc.to(out_ptr.dtype.element_ty),
                 mask=in_range[:, None] & (cols[None, :] < C_OUT))  # fmt: skip


def tiles(rows: int, dtype: torch.dtype = torch.float16) -> dict:
    """The default tiles for ``rows`` output pixels of ``dtype``: large tiles for large batches, small ones so that
    a batch-1 layer (49 to 3,136 pixels) still spreads over many multiprocessors.

    From one H200 sweep of ``benchmarks/conv3x3_tune.py`` (22 configs, DenseNet-121's four 3x3 shapes at batch 1
    and 256, Triton 3.6): for fp16 and bf16 each pick is within 3% of the best (geometric mean) at batch 256;
    batch 1 is launch-bound (~8.5 us for every good config, with BLOCK_K 128 clearly ahead of 32, and its
    timings noisy). fp32 (IEEE products) prefers other tiles.
    """
    if dtype == torch.float32:
        if rows >= 32 * 1024:
            return {"BLOCK_M": 128, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3}
        return {"BLOCK_M": 32, "BLOCK_K": 64, "num_warps": 4, "num_stages": 3}
    if rows >= 128 * 1024:
        return {"BLOCK_M": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}
    if rows >= 64 * 64:
        return {"BLOCK_M": 64, "BLOCK_K": 128, "num_warps": 4, "num_stages": 3}
    return {"BLOCK_M": 32, "BLOCK_K": 128, "num_warps": 4, "num_stages": 3}


def conv3x3_into(bottleneck, packed, out, n: int, h: int, w: int, config: dict | None = None):
    """Run the Triton kernel (on CUDA, or on the CPU under ``TRITON_INTERPRET=1``): ``out = conv3x3(bottleneck)``.

    ``bottleneck`` [N*H*W, C] with unit column stride (NHWC pixel rows; fp16, bf16 or fp32); ``packed`` the
    :func:`pack_weight` form [9*C, C_out] of the OIHW weight (not the OIHW tensor itself); ``out`` [N*H*W, C_out]
    with unit column stride, typically a column slice ``rows[:, c:c + C_out]`` of the block's buffer matrix, written
    in place (its other columns are not touched; nothing is allocated). ``config`` overrides :func:`tiles` (keys
    ``BLOCK_M``, ``BLOCK_K``, ``num_warps``, ``num_stages``), for ``benchmarks/conv3x3_tune.py``. Returns ``out``.
    """
    if packed.dim() != 2:
        raise ValueError(f"conv3x3: weight must be pack_weight's [9*C, C_out] matrix, got {tuple(packed.shape)}")
    rows, channels = bottleneck.shape
    depth, c_out = packed.shape
    if rows != n * h * w:
        raise ValueError(f"conv3x3: bottleneck has {rows} rows, expected N*H*W = {n * h * w}")
    if depth != TAPS * channels:
        raise ValueError(f"conv3x3: packed weight has {depth} rows, expected 9*C = {TAPS * channels} (pack_weight)")
    if tuple(out.shape) != (rows, c_out):
        raise ValueError(f"conv3x3: out is {tuple(out.shape)}, expected {(rows, c_out)}")
    if bottleneck.stride(1) != 1 or packed.stride(1) != 1 or out.stride(1) != 1:
        raise ValueError("conv3x3 needs bottleneck, packed and out with unit column stride (row-major)")
    if packed.dtype != bottleneck.dtype:
        raise ValueError(f"conv3x3: packed weight is {packed.dtype}, bottleneck {bottleneck.dtype}")
    if max(rows * bottleneck.stride(0), rows * out.stride(0)) >= 2**31:
        raise ValueError("conv3x3: offsets past 2**31 elements are not supported (int32 indexing)")
    chosen = {**tiles(rows, bottleneck.dtype), **(config or {})}
    unknown = set(chosen) - set(CONFIG_KEYS)
    if unknown:
        raise ValueError(f"conv3x3: unknown config keys {sorted(unknown)}")
    chosen["BLOCK_K"] = min(chosen["BLOCK_K"], channels)
    if channels % chosen["BLOCK_K"] or chosen["BLOCK_K"] < 16:
        raise ValueError(f"conv3x3: BLOCK_K {chosen['BLOCK_K']} must be >= 16 and divide C = {channels}")
    grid = (triton.cdiv(rows, chosen["BLOCK_M"]),)
    _conv3x3_kernel[grid](
        bottleneck, packed, out, rows, h, w, bottleneck.stride(0), packed.stride(0), out.stride(0),
        C=channels, C_OUT=c_out, BLOCK_N=max(16, triton.next_power_of_2(c_out)),
        **dot_options(bottleneck.dtype), **chosen,
    )  # fmt: skip
    return out


def conv3x3(bottleneck, packed, out, n: int, h: int, w: int):
    """:func:`conv3x3_into` where Triton can run it (CUDA; fp16, bf16, fp32), else :func:`reference` copied into
    ``out``. Same arguments as :func:`conv3x3_into` (``packed`` from :func:`pack_weight`); returns ``out``."""
    if triton_usable(bottleneck):
        return conv3x3_into(bottleneck, packed, out, n, h, w)
    return out.copy_(reference(bottleneck, packed, n, h, w))
