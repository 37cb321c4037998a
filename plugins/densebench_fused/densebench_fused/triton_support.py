"""What both fused kernels need from Triton: whether it can run on a tensor, and how ``tl.dot`` is to multiply.

Triton ships with torch's CUDA builds; without it only the torch-ops paths exist. Under Triton's CPU interpreter
(``TRITON_INTERPRET=1``, read when a kernel is defined; the tests) the kernels run on CPU tensors too. The
interpreter (Triton 3.8) computes ``tl.dot`` of bf16 operands wrongly, so there, and only there, bf16 operands are
widened to fp32 before the product (``WIDEN``): exact, so the interpreter still checks indexing, masks, prologue,
epilogue and the store's rounding, but not the bf16 product itself, which the GPU checks (docs/perf-notes.md). The
interpreter also rounds fp32 to bf16 toward zero where the GPU rounds to nearest.

FP8 (``fused.gemm=fp8``): the interpreter (Triton 3.8) multiplies ``tl.float8e4nv`` operands correctly (exactly
widened, fp32 sums), but its fp32 -> e4m3 cast is wrong: it rounds ties away from zero, loses the carry into the
exponent in every other binade (31.7 becomes 16, not 32) and truncates subnormals. So there, and only there, the
GEMM rounds its activations to e4m3 values in fp32 arithmetic first (``ROUND_E4M3``), which the cast then keeps
exactly. Not checked on the CPU: the GPU's own cast, Hopper's fp8 ``wgmma`` and its accumulation, and speed.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_usable(tensor) -> bool:
    """Whether the Triton kernels run on ``tensor``: on CUDA, or on the CPU under the interpreter."""
    return triton is not None and (tensor.is_cuda or interpreting()) and tensor.dtype in TRITON_DTYPES


def dot_options(dtype) -> dict:
    """A kernel's ``PRECISION`` (``tl.dot``'s ``input_precision``: TF32 for fp32 operands only where torch allows
    TF32 matmuls, as cuBLAS would; 16-bit operands ignore it) and ``WIDEN`` (see the module docstring)."""
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 and not interpreting()
    return {"PRECISION": "tf32" if tf32 else "ieee", "WIDEN": interpreting() and dtype == torch.bfloat16}
