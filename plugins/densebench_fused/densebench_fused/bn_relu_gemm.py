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

**FP8** (``fused.gemm=fp8``; ``a`` fp16 or bf16): e4m3 products, fp32 accumulation. The per-input-channel
activation scales ``s_a`` (calibrated, > 0) are folded into the prologue, ``relu(x*scale + shift) / s_a =
relu(x*(scale/s_a) + shift/s_a)``, so it yields values already in e4m3's range (clamped at its largest, 448, and
rounded to nearest even); the weights ``W[c, o] * s_a[c]`` are quantized per output column with ``s_w[o] =
amax_c |W[c, o] s_a[c]| / 448`` and stored [N, K] (K-major, as Hopper's fp8 ``wgmma`` takes its B operand); the
epilogue is ``relu(acc * s_w + bias)``. :func:`fp8_operands` makes the operands, :func:`reference_fp8` is the
torch oracle (``tests/test_fp8.py``).
"""

from __future__ import annotations

import torch

from densebench_fused.triton_support import dot_options, interpreting, tl, triton, triton_usable

BLOCK_N = 128  # DenseNet-121's bottleneck width (bn_size 4 x growth 32): one tile covers every output column
BLOCK_K = 64  # best at most DenseNet-121 layer shapes on the H200 (benchmarks/dense_kernel_tune.py)
E4M3_MAX = 448.0  # the largest finite float8_e4m3fn value
#: the smallest activation amax a scale is computed from: a channel that was zero on every calibration image still
#: gets a finite scale (fp16's smallest normal)
AMAX_FLOOR = 2.0**-14


def reference(a, scale, shift, w, bias):
    """The arithmetic of the kernel in torch ops: ``a`` [M, K], ``scale``/``shift`` [K] fp32, ``w`` [K, N], ``bias`` [N] fp32."""
    prologue = torch.relu(a.float() * scale + shift).to(a.dtype)
    return torch.relu(prologue @ w + bias.to(a.dtype))


def fp8_operands(scale, shift, w, act_scale):
    """The FP8 kernel's operands from the native ones: ``scale``/``shift`` [K] fp32, ``w`` [K, N] (any float
    dtype), ``act_scale`` [K] (``s_a``, > 0). Returns ``(scale / s_a, shift / s_a, wq, s_w)``: ``wq`` [N, K]
    float8_e4m3fn (contiguous: K-major), ``s_w`` [N] fp32."""
    w_folded = w.float() * act_scale[:, None]  # W'[c, o] = W[c, o] * s_a[c]
    amax = w_folded.abs().amax(dim=0)
    w_scale = torch.where(amax > 0, amax, 1.0) / E4M3_MAX  # an all-zero column stays zero at any scale
    wq = (w_folded / w_scale).clamp(-E4M3_MAX, E4M3_MAX).t().contiguous().to(torch.float8_e4m3fn)
    return (scale / act_scale).contiguous(), (shift / act_scale).contiguous(), wq, w_scale.contiguous()


def quantize_e4m3(x):
    """``x`` (fp32, >= 0) to e4m3 as the kernel does: clamped at 448 (the kernel's cast saturates, torch's would
    give NaN), rounded to nearest even."""
    return x.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn)


def reference_fp8(a, scale, shift, wq, w_scale, bias):
    """The FP8 kernel's arithmetic in torch ops, operands as :func:`fp8_operands` makes them: the prologue in fp32
    quantized to e4m3, products and sums in fp32, ``relu(acc * s_w + bias)`` in fp32, rounded to ``a``'s dtype."""
    activations = quantize_e4m3(torch.relu(a.float() * scale + shift))
    acc = activations.float() @ wq.float().t()
    return torch.relu(acc * w_scale + bias).to(a.dtype)


if triton is not None:

    @triton.jit
    def _round_to_e4m3(x):
        """``x`` (fp32, 0 <= x <= 448) rounded to the nearest e4m3 value (ties to even) in fp32 arithmetic, for the
        interpreter only (``ROUND_E4M3``; see :mod:`densebench_fused.triton_support`): adding ``2**(e + 20)`` to
        ``x`` of binade ``2**e`` leaves fp32 steps of ``2**(e - 3)``, e4m3's spacing there."""
        binade = tl.maximum((x.to(tl.int32, bitcast=True) >> 23) - 127, -6)  # subnormals: the spacing of 2**-6
        magic = ((binade + 127 + 20) << 23).to(tl.float32, bitcast=True)
        return (x + magic) - magic

    @triton.jit
    def _bn_relu_gemm_kernel(
        a_ptr, scale_ptr, shift_ptr, w_ptr, bias_ptr, w_scale_ptr, out_ptr,
        M, N, K, stride_am, stride_w, stride_om,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        PRECISION: tl.constexpr, WIDEN: tl.constexpr, FP8: tl.constexpr, ROUND_E4M3: tl.constexpr,
    ):  # fmt: skip
        # w: [K, N] in the dtype of the output, row stride stride_w; FP8: [N, K] e4m3 (K-major), with w_scale [N]
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
            if FP8:  # scale and shift hold 1/s_a: the prologue is in e4m3's range
                a = tl.minimum(tl.maximum(a.to(tl.float32) * scale[None, :] + shift[None, :], 0.0), 448.0)
                if ROUND_E4M3:
                    a = _round_to_e4m3(a)
                a = a.to(tl.float8e4nv)
                w = tl.load(w_ptr + cols[None, :] * stride_w + ks[:, None],
                            mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)  # fmt: skip
                # fp32 accumulation: on sm_90 the wgmma's own accumulator keeps fewer bits, so each BLOCK_K's
                # products are added into acc in fp32 (Triton's default would accumulate all of K in the wgmma)
                acc = tl.dot(a, w, acc, max_num_imprecise_acc=BLOCK_K)
            else:
                a = tl.maximum(a.to(tl.float32) * scale[None, :] + shift[None, :], 0.0).to(w_ptr.dtype.element_ty)
                w = tl.load(w_ptr + ks[:, None] * stride_w + cols[None, :],
                            mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)  # fmt: skip
                if WIDEN:  # the interpreter's bf16 product is wrong; widening a bf16 value to fp32 is exact
                    a, w = a.to(tl.float32), w.to(tl.float32)
                acc = tl.dot(a, w, acc, input_precision=PRECISION)
        bias = tl.load(bias_ptr + cols, mask=cols < N, other=0.0)
        if FP8:
            acc = acc * tl.load(w_scale_ptr + cols, mask=cols < N, other=0.0)[None, :]
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


def launch(a, scale, shift, w, bias, config: dict | None = None, w_scale=None):
    """Run the Triton kernel (on CUDA, or on the CPU under ``TRITON_INTERPRET=1``); returns [M, N] in ``a``'s dtype.

    ``config`` overrides the tile choice (keys ``BLOCK_M``, ``BLOCK_K``, ``num_warps``, ``num_stages``), for
    ``benchmarks/dense_kernel_tune.py``. With ``w_scale`` the FP8 kernel: ``scale``, ``shift``, ``w`` (e4m3, [N, K])
    and ``w_scale`` as :func:`fp8_operands` makes them.
    """
    fp8 = w_scale is not None
    if a.stride(1) != 1 or w.stride(1) != 1:
        raise ValueError("bn_relu_gemm needs row-major a and w (unit column stride)")
    if fp8 and (w.dtype != torch.float8_e4m3fn or a.dtype not in (torch.float16, torch.bfloat16)):
        raise ValueError(f"the fp8 GEMM takes float8_e4m3fn weights and fp16 or bf16 a, not {w.dtype} and {a.dtype}")
    rows, depth = a.shape
    width = w.shape[0] if fp8 else w.shape[1]
    out = torch.empty((rows, width), dtype=a.dtype, device=a.device)
    tile_m, warps = block_m(rows)
    chosen = {"BLOCK_M": tile_m, "BLOCK_K": BLOCK_K, "num_warps": warps, "num_stages": 3, **(config or {})}
    grid = (triton.cdiv(rows, chosen["BLOCK_M"]) * triton.cdiv(width, BLOCK_N),)
    _bn_relu_gemm_kernel[grid](
        a, scale, shift, w, bias, w_scale if fp8 else bias, out, rows, width, depth, a.stride(0), w.stride(0),
        out.stride(0), BLOCK_N=BLOCK_N, FP8=fp8, ROUND_E4M3=fp8 and interpreting(), **dot_options(a.dtype), **chosen,
    )  # fmt: skip
    return out


def bn_relu_gemm(a, scale, shift, w, bias, w_scale=None):
    """The fused kernel where Triton can run it (CUDA; fp16, bf16, fp32; FP8 with ``w_scale``), else the torch
    reference (:func:`reference`, :func:`reference_fp8`)."""
    if triton_usable(a):
        return launch(a, scale, shift, w, bias, w_scale=w_scale)
    if w_scale is not None:
        return reference_fp8(a, scale, shift, w, w_scale, bias)
    return reference(a, scale, shift, w, bias)
