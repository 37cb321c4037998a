"""``relu(relu(a * scale + shift) @ w + bias)`` in one pass over ``a``: the GEMM of a DenseNet layer's 1x1 conv.

A dense layer runs ``norm1 -> relu -> conv1 (1x1) -> norm2 -> relu`` on the concatenation of its block's earlier
features. Inductor and cuDNN run that as separate passes: the BN+ReLU of the whole concatenation is written
out, then read again by the convolution, and ``norm2`` + ReLU is another pass over the conv's output. Here the
first BN+ReLU is applied while the GEMM loads its ``a`` tiles (a prologue), and ``norm2`` (folded into ``w``
and ``bias``) + ReLU while it stores its result (an epilogue), so ``a`` is read once and nothing else is
written. ``a`` may be a column slice of a wider row-major matrix (the block's feature buffer, NHWC).

:func:`bn_relu_gemm` runs the Triton kernel on CUDA (fp16, bf16, fp32: TF32 when torch allows it for matmuls)
and :func:`reference` (torch ops, the same rounding: BN+ReLU in fp32, rounded to the input dtype before the
product) elsewhere. The kernel is checked against :func:`reference` on the CPU with Triton's interpreter in every
dtype (``tests/test_fused_kernels.py``; what the interpreter cannot check: :mod:`densebench_fused.triton_support`).
"""

from __future__ import annotations

import torch

from densebench_fused.triton_support import dot_options, tl, triton, triton_usable

BLOCK_N = 128  # DenseNet-121's bottleneck width (bn_size 4 x growth 32): one tile covers every output column
BLOCK_K = 64  # best at most DenseNet-121 layer shapes on the H200 (benchmarks/dense_kernel_tune.py)


def reference(a, scale, shift, w, bias):
    """The arithmetic of the kernel in torch ops: ``a`` [M, K], ``scale``/``shift`` [K] fp32, ``w`` [K, N], ``bias`` [N] fp32."""
    prologue = torch.relu(a.float() * scale + shift).to(a.dtype)
    return torch.relu(prologue @ w + bias.to(a.dtype))


if triton is not None:

    @triton.jit
    def _bn_relu_gemm_kernel(
        a_ptr, scale_ptr, shift_ptr, w_ptr, bias_ptr, out_ptr,
        M, N, K, stride_am, stride_wk, stride_om,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr, WIDEN: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        tiles_n = tl.cdiv(N, BLOCK_N)
        rows = (pid // tiles_n) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = (pid % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(a_ptr + rows[:, None] * stride_am + ks[None, :],
                        mask=(rows[:, None] < M) & (ks[None, :] < K), other=0.0)  # fmt: skip
            scale = tl.load(scale_ptr + ks, mask=ks < K, other=0.0)
            shift = tl.load(shift_ptr + ks, mask=ks < K, other=0.0)
            a = tl.maximum(a.to(tl.float32) * scale[None, :] + shift[None, :], 0.0).to(w_ptr.dtype.element_ty)
            w = tl.load(w_ptr + ks[:, None] * stride_wk + cols[None, :],
                        mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)  # fmt: skip
            if WIDEN:  # the interpreter's bf16 product is wrong; widening a bf16 value to fp32 is exact
                a, w = a.to(tl.float32), w.to(tl.float32)
            acc = tl.dot(a, w, acc, input_precision=PRECISION)
        bias = tl.load(bias_ptr + cols, mask=cols < N, other=0.0)
        out = tl.maximum(acc + bias[None, :], 0.0)
        tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=(rows[:, None] < M) & (cols[None, :] < N))  # fmt: skip


def block_m(rows: int) -> tuple[int, int]:
    """(BLOCK_M, num_warps) for ``rows`` rows: large tiles for large batches, small ones so that a batch-1
    layer (49 to 3,136 rows) still spreads over many of the GPU's multiprocessors. Chosen from the H200 sweep in
    docs/perf-notes.md (session 3): 4 warps won at every batch-256 shape."""
    if rows >= 128 * 1024:
        return 128, 4
    if rows >= 64 * 64:
        return 64, 4
    return 32, 4


def launch(a, scale, shift, w, bias, config: dict | None = None):
    """Run the Triton kernel (on CUDA, or on the CPU under ``TRITON_INTERPRET=1``); returns [M, N] in ``a``'s dtype.

    ``config`` overrides the tile choice (keys ``BLOCK_M``, ``BLOCK_K``, ``num_warps``, ``num_stages``), for
    ``benchmarks/dense_kernel_tune.py``.
    """
    if a.stride(1) != 1 or w.stride(1) != 1:
        raise ValueError("bn_relu_gemm needs row-major a and w (unit column stride)")
    rows, depth = a.shape
    width = w.shape[1]
    out = torch.empty((rows, width), dtype=a.dtype, device=a.device)
    tile_m, warps = block_m(rows)
    chosen = {"BLOCK_M": tile_m, "BLOCK_K": BLOCK_K, "num_warps": warps, "num_stages": 3, **(config or {})}
    grid = (triton.cdiv(rows, chosen["BLOCK_M"]) * triton.cdiv(width, BLOCK_N),)
    _bn_relu_gemm_kernel[grid](
        a, scale, shift, w, bias, out, rows, width, depth, a.stride(0), w.stride(0), out.stride(0),
        BLOCK_N=BLOCK_N, **dot_options(a.dtype), **chosen,
    )  # fmt: skip
    return out


def bn_relu_gemm(a, scale, shift, w, bias):
    """The fused kernel where Triton can run it (CUDA; fp16, bf16, fp32), else :func:`reference`."""
    if triton_usable(a):
        return launch(a, scale, shift, w, bias)
    return reference(a, scale, shift, w, bias)
