"""The dense layer's 3x3 conv as an implicit-GEMM Triton kernel that writes into a column slice of the block's buffer.

The kernel runs here under Triton's CPU interpreter (``TRITON_INTERPRET=1``, in a child process since the
variable is read when the kernel is defined), all cases in one child; what the interpreter cannot check (the bf16
product) is said in :mod:`densebench_fused.triton_support`, and ``benchmarks/conv3x3_tune.py`` checks every output
it times on the GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from densebench_fused import conv3x3

PLUGIN_ROOT = Path(__file__).resolve().parents[1]  # the child imports densebench_fused from here
TOLERANCE = {  # of the largest |output|: one rounding of a half type; fp32 differs only in summation order
    "float16": torch.finfo(torch.float16).eps,
    "bfloat16": torch.finfo(torch.bfloat16).eps,
    "float32": 2.0**-16,
}

KERNEL_CHECK = textwrap.dedent(
    """
    import json, torch
    from densebench_fused import conv3x3 as k
    g = torch.Generator().manual_seed(0)
    results = []
    # (N, H, W, C, buffer width, first output column, config): batch 2 at 7x7 (98 pixels, 4 tiles of 32, the
    # last partial), 5x5 (25 pixels, less than one tile), 9x9 (81, not a tile multiple); the slice in the middle,
    # at the start and at the end of a wider buffer; other tiles and a narrower bottleneck through config
    cases = [
        (2, 7, 7, 128, 96, 32, None),
        (1, 5, 5, 128, 64, 0, None),
        (1, 9, 9, 128, 160, 128, None),
        (2, 6, 5, 128, 96, 48, {"BLOCK_M": 64, "BLOCK_K": 64}),
        (1, 9, 9, 64, 96, 32, {"BLOCK_M": 16, "BLOCK_K": 16}),
    ]
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for n, h, w, c, width, first, config in cases:
            rows = n * h * w
            bottleneck = torch.randn(rows, c, generator=g).to(dtype)
            weight = (torch.randn(32, c, 3, 3, generator=g) / (9 * c) ** 0.5).to(dtype)
            buffer = torch.randn(rows, width, generator=g).to(dtype)
            before = buffer.clone()
            out = buffer[:, first : first + 32]
            returned = k.conv3x3_into(bottleneck, k.pack_weight(weight), out, n, h, w, config)
            ref = k.reference(bottleneck, weight, n, h, w)
            outside = torch.cat([buffer[:, :first], buffer[:, first + 32 :]], 1)
            expected_outside = torch.cat([before[:, :first], before[:, first + 32 :]], 1)
            results.append({
                "dtype": str(dtype).removeprefix("torch."), "case": [n, h, w, c, width, first],
                "same_storage": returned.data_ptr() == buffer[:, first:].data_ptr(),
                "err": (out.float() - ref.float()).abs().max().item(), "scale": ref.float().abs().max().item(),
                "outside_untouched": torch.equal(outside, expected_outside),
            })
    print(json.dumps(results))
    """
)


@pytest.mark.skipif(conv3x3.triton is None, reason="Triton is not installed (it ships with torch's CUDA builds)")
def test_triton_kernel_matches_the_reference_under_the_interpreter():
    path = os.pathsep.join(filter(None, [str(PLUGIN_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", KERNEL_CHECK], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 15 and {r["dtype"] for r in results} == set(TOLERANCE)
    for r in results:
        assert r["same_storage"] and r["outside_untouched"], r  # in place, and only in its 32 columns
        assert r["scale"] > 0.5, r
        assert r["err"] <= TOLERANCE[r["dtype"]] * r["scale"], r


def _operands(dtype, n, h, w, c=128, width=96, first=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    bottleneck = torch.randn(n * h * w, c, generator=g).to(dtype)
    weight = (torch.randn(32, c, 3, 3, generator=g) / (9 * c) ** 0.5).to(dtype)
    buffer = torch.randn(n * h * w, width, generator=g).to(dtype)
    return bottleneck, weight, buffer, buffer[:, first : first + 32]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_dispatcher_on_the_cpu_writes_the_reference_into_the_slice(dtype):
    n, h, w = 2, 5, 4
    bottleneck, weight, buffer, out = _operands(dtype, n, h, w)
    before = buffer.clone()
    returned = conv3x3.conv3x3(bottleneck, conv3x3.pack_weight(weight), out, n, h, w)
    assert returned.data_ptr() == out.data_ptr()
    assert torch.equal(out, conv3x3.reference(bottleneck, weight, n, h, w))
    assert torch.equal(buffer[:, :32], before[:, :32]) and torch.equal(buffer[:, 64:], before[:, 64:])


def test_reference_is_the_conv_of_the_nchw_view():
    """``reference`` on NHWC rows equals ``F.conv2d`` on the ordinary NCHW tensor, with either weight form."""
    n, h, w = 2, 4, 3
    bottleneck, weight, _, _ = _operands(torch.float32, n, h, w)
    nchw = bottleneck.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()
    expected = torch.nn.functional.conv2d(nchw, weight, padding=1).permute(0, 2, 3, 1).reshape(n * h * w, 32)
    torch.testing.assert_close(conv3x3.reference(bottleneck, weight, n, h, w), expected)
    torch.testing.assert_close(conv3x3.reference(bottleneck, conv3x3.pack_weight(weight), n, h, w), expected)


def test_packed_weight_is_tap_major():
    weight = torch.randn(32, 128, 3, 3)
    packed = conv3x3.pack_weight(weight)
    assert packed.shape == (9 * 128, 32) and packed.is_contiguous()
    for o, c, kh, kw in [(0, 0, 0, 0), (5, 17, 1, 2), (31, 127, 2, 2), (7, 64, 2, 0)]:
        assert packed[(kh * 3 + kw) * 128 + c, o] == weight[o, c, kh, kw]
    assert torch.equal(conv3x3.unpack_weight(packed), weight)


def test_bad_operands_fail_clearly():
    n, h, w = 1, 3, 3
    bottleneck, weight, _, out = _operands(torch.float32, n, h, w)
    packed = conv3x3.pack_weight(weight)
    with pytest.raises(ValueError, match="pack_weight's"):
        conv3x3.conv3x3_into(bottleneck, weight, out, n, h, w)  # the OIHW weight, not packed
    with pytest.raises(ValueError, match="expected N\\*H\\*W"):
        conv3x3.conv3x3_into(bottleneck, packed, out, n, h, w + 1)
    with pytest.raises(ValueError, match="unit column stride"):
        conv3x3.conv3x3_into(bottleneck, packed, out.t().contiguous().t(), n, h, w)
    with pytest.raises(ValueError, match="must be >= 16 and divide"):
        conv3x3.conv3x3_into(bottleneck, packed, out, n, h, w, {"BLOCK_K": 48})
    with pytest.raises(ValueError, match="unknown config keys"):
        conv3x3.conv3x3_into(bottleneck, packed, out, n, h, w, {"BLOCK_N": 64})
    with pytest.raises(ValueError, match="packed weight is torch.float16"):
        conv3x3.conv3x3_into(bottleneck, packed.half(), out, n, h, w)


def test_tiles_follow_the_rows():
    assert conv3x3.tiles(49)["BLOCK_M"] == 32  # batch 1, block 4
    assert conv3x3.tiles(56 * 56)["BLOCK_M"] == 32  # batch 1, block 1
    assert conv3x3.tiles(256 * 14 * 14)["BLOCK_M"] == 64
    assert conv3x3.tiles(256 * 56 * 56)["BLOCK_M"] == 128
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for rows in (49, 256 * 49, 256 * 3136):
            chosen = conv3x3.tiles(rows, dtype)
            assert set(chosen) == set(conv3x3.CONFIG_KEYS) and 128 % chosen["BLOCK_K"] == 0
