"""``fused.gemm=fp8``: the dense layers' 1x1 GEMMs with e4m3 products, on the CPU.

The FP8 kernel runs here under Triton's CPU interpreter (``TRITON_INTERPRET=1``, in a child process, all cases in
one child). The interpreter (Triton 3.8) multiplies e4m3 operands correctly but casts fp32 to e4m3 wrongly (ties
away from zero, a lost carry into the exponent in every other binade, truncated subnormals), so there the kernel
rounds its activations itself first (``ROUND_E4M3``, :mod:`densebench_fused.triton_support`); the first test checks
that rounding against torch's cast. The GPU's own cast, Hopper's fp8 ``wgmma`` and the speed are checked on the
GPU (``benchmarks/dense_kernel_tune.py --gemm fp8``). Outside the interpreter the torch oracle runs
(:func:`~densebench_fused.bn_relu_gemm.reference_fp8`); it is the same arithmetic as the kernel, and it really
quantizes: close to the native fp16 GEMM, not equal to it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from densebench_fused import bn_relu_gemm as k
from densebench_fused import plugin
from densebench_fused.dense_fusion import FusedDenseBlock, calibrate

from densebench_core.options import OptionError
from densebench_core.testing import (
    densenet_with_bn_statistics,
    make_context,
    refuses_options,
    run_densebench,
    run_with_options,
)

PLUGIN_ROOT = Path(__file__).resolve().parents[1]  # the child imports densebench_fused from here
needs_triton = pytest.mark.skipif(k.triton is None, reason="Triton is not installed (it ships with torch's CUDA builds)")
#: the interpreter's tests share one child process (the fixture ``interpreted``), so one pytest-xdist worker runs them
one_child = pytest.mark.xdist_group("fp8_interpreter")
#: one rounding of the output, relative to the largest output (bf16: the interpreter rounds toward zero)
ULP = {"torch.float16": 2**-9, "torch.bfloat16": 2**-6}
#: the FP8 GEMM against the native fp16 one, ||difference|| / ||native||: e4m3 keeps 3 mantissa bits, so each
#: operand is rounded by up to 2**-4 of itself (measured on these operands: 0.031 to 0.038)
E4M3_GEMM_TOLERANCE = 2**-4
#: an FP8 GEMM further than this from the native one than fp16's own roundings: it really quantized
QUANTIZED = 2**-7


def operands(dtype, rows, width, depth, seed=0):
    """Native operands (a column slice of a wider buffer, as in a block) and their FP8 form, with activation scales
    calibrated on ``a`` itself (as the plugin calibrates on seeded images)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, width, generator=g).to(dtype)[:, :depth]
    scale, shift = torch.rand(depth, generator=g) + 0.5, torch.randn(depth, generator=g) * 0.3
    w = (torch.randn(depth, 128, generator=g) / depth**0.5).to(dtype)
    bias = torch.randn(128, generator=g) * 0.1
    act_scale = torch.relu(a.float() * scale + shift).amax(0).clamp_min(k.AMAX_FLOOR) / k.E4M3_MAX
    return (a, scale, shift, w, bias), k.fp8_operands(scale, shift, w, act_scale)


#: (rows, buffer width, K read from it): a batch-1 block-4 layer (rows not a tile multiple), a small block-1-like
#: layer, K smaller than one BLOCK_K
SHAPES = [(49, 1024, 992), (200, 256, 96), (33, 64, 32)]

INTERPRETER_CHECK = """
    import json, torch
    from densebench_fused import bn_relu_gemm as k
    from densebench_fused.triton_support import tl, triton
    from test_fp8 import SHAPES, operands

    @triton.jit
    def round_and_cast(x_ptr, y_ptr, n, BLOCK: tl.constexpr, ROUND: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + i, mask=i < n)
        if ROUND:
            x = k._round_to_e4m3(x)
        tl.store(y_ptr + i, x.to(tl.float8e4nv).to(tl.float32), mask=i < n)

    # every e4m3 value from 0 to 448, the ties between neighbours, just either side of them, and random values
    values = torch.arange(127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    ties = (values[1:] + values[:-1]) / 2
    x = torch.cat([values, ties, ties * (1 - 1e-6), ties * (1 + 1e-6),
                   torch.rand(20000, generator=torch.Generator().manual_seed(0)) ** 4 * 448])
    expected = x.to(torch.float8_e4m3fn).float()
    cast = {}
    for rounded in (False, True):
        y = torch.empty_like(x)
        round_and_cast[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), 1024, rounded)
        cast[str(rounded)] = int((y != expected).sum())

    gemms = []
    for dtype in (torch.float16, torch.bfloat16):
        for rows, width, depth in SHAPES:
            (a, _, _, _, bias), (scale, shift, wq, w_scale) = operands(dtype, rows, width, depth)
            out = k.launch(a, scale, shift, wq, bias, w_scale=w_scale)
            ref = k.reference_fp8(a, scale, shift, wq, w_scale, bias)
            gemms.append({"dtype": str(dtype), "shape": list(out.shape), "out_dtype": str(out.dtype),
                          "err": (out.float() - ref.float()).abs().max().item(),
                          "scale": ref.float().abs().max().item(), "negative": int((out < 0).sum())})

    # the whole rewritten DenseNet-121 in fp16 with fp8 GEMMs: its 58 GEMMs by the kernel, then by the torch oracle
    from densebench_core.model import make_inputs
    from densebench_core.testing import densenet_with_bn_statistics
    from densebench_fused.dense_fusion import calibrate, fuse_dense_blocks
    model = densenet_with_bn_statistics().half().to(memory_format=torch.channels_last)
    x = make_inputs(2, 32, 0).half().contiguous(memory_format=torch.channels_last)
    fuse_dense_blocks(model, act_scales=calibrate(model, make_inputs(4, 32, 0, stream="calibration").half()))
    launches, launch = [], k.launch
    k.launch = lambda *args, **kw: launches.append(kw["w_scale"] is not None) or launch(*args, **kw)
    with torch.no_grad():
        by_kernel = model(x).float()
        k.triton_usable = lambda tensor: False
        by_torch = model(x).float()
    network = {"fp8_launches": sum(launches), "launches": len(launches),
               "rel": ((by_kernel - by_torch).norm() / by_torch.norm()).item()}
    print(json.dumps({"cast_mismatches": cast, "gemms": gemms, "network": network}))
"""


@pytest.fixture(scope="module")
def interpreted():
    path = os.pathsep.join(filter(None, [str(PLUGIN_ROOT), str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(INTERPRETER_CHECK)], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_triton
@one_child
def test_interpreter_rounds_to_e4m3_as_torch_casts(interpreted):
    """With ``ROUND_E4M3`` the interpreter's cast gives torch's (round to nearest even) e4m3 value for every input:
    the kernel's activations there are what :func:`reference_fp8` quantizes to. (Without it, 807 of these 21,000
    values differ in Triton 3.8.)"""
    assert interpreted["cast_mismatches"]["True"] == 0, interpreted["cast_mismatches"]


@needs_triton
@one_child
def test_fp8_kernel_matches_its_reference_under_the_interpreter(interpreted):
    results = interpreted["gemms"]
    assert [r["shape"] for r in results] == [[49, 128], [200, 128], [33, 128]] * 2
    for r in results:
        assert r["out_dtype"] == r["dtype"]
        assert r["negative"] == 0  # the ReLU epilogue
        assert r["scale"] > 0.5, r
        assert r["err"] <= ULP[r["dtype"]] * r["scale"], r  # the same arithmetic, up to the output's rounding


@needs_triton
@one_child
def test_rewritten_network_runs_its_fp8_gemms_by_the_kernel_as_the_oracle_does(interpreted):
    """DenseNet-121 rewritten in fp16 with FP8 GEMMs: its 58 GEMMs by the interpreted kernel give the outputs they
    give by :func:`reference_fp8` (the path the CPU rows take)."""
    network = interpreted["network"]
    assert network["fp8_launches"] == network["launches"] == 58, network
    assert network["rel"] <= 2**-9, network  # fp16 outputs; the GEMMs agree to their last bit (above)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fp8_reference_quantizes_close_to_the_native_gemm_but_not_equal(dtype):
    for rows, width, depth in SHAPES:
        native, fp8 = operands(dtype, rows, width, depth)
        a, _, _, _, bias = native
        expected = k.reference(*native).float()
        actual = k.reference_fp8(a, *fp8[:3], fp8[3], bias).float()
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        rel = ((actual - expected).norm() / expected.norm()).item()
        assert QUANTIZED < rel <= E4M3_GEMM_TOLERANCE, (rows, depth, rel)


def test_fp8_operands_use_e4m3s_whole_range():
    """On the activations the scales came from, each channel's largest activation is e4m3's largest value, 448, and
    so is each output column's largest weight; the weights are K-major, [N, K]."""
    (a, _, _, w, _), (scale, shift, wq, w_scale) = operands(torch.float16, 200, 256, 96)
    activations = k.quantize_e4m3(torch.relu(a.float() * scale + shift)).float()
    assert torch.equal(activations.amax(0), torch.full((96,), 448.0))
    assert wq.dtype == torch.float8_e4m3fn and wq.shape == (128, 96) and wq.is_contiguous()
    assert torch.equal(wq.float().abs().amax(1), torch.full((128,), 448.0))
    assert w_scale.shape == (128,) and bool((w_scale > 0).all())
    # above the calibrated range the cast saturates at 448 (torch's cast alone would give NaN)
    assert k.quantize_e4m3(torch.tensor([1e4])).float().item() == 448.0


def test_calibration_measures_each_layers_relu_norm1():
    """``s_a`` of a dense layer is the amax of its conv1's input, relu(norm1(x)), over the images, / 448."""
    model = densenet_with_bn_statistics()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    scales = calibrate(model, images)
    layers = [layer for name, block in model.features.named_children() if name.startswith("denseblock")
              for layer in block.children()]  # fmt: skip
    assert list(scales) == layers and len(layers) == 58
    first = model.features.denseblock1.denselayer1
    with torch.no_grad():
        x = model.features[:4](images)  # conv0, norm0, relu0, pool0: the first dense layer's input
        expected = torch.relu(first.norm1(x)).amax(dim=(0, 2, 3)) / 448
    torch.testing.assert_close(scales[first], expected)
    assert not any(hook for layer in layers for hook in layer.conv1._forward_hooks.values())  # hooks removed


def test_fp8_needs_fp16_or_bf16_blocks():
    assert plugin.block_dtype("amp-bf16", "fp8") == torch.bfloat16
    with pytest.raises(ValueError, match="fused.gemm=fp8 needs fp16 or bf16 dense blocks, and precision 'tf32'"):
        plugin.block_dtype("tf32", "fp8")
    with pytest.raises(ValueError, match="fp8 GEMMs need fp16 or bf16 dense blocks, not torch.float32"):
        FusedDenseBlock(densenet_with_bn_statistics().features.denseblock4, torch.float32, act_scales=[None] * 16)


def test_prepare_calibrates_on_seeded_images_and_says_so():
    """The plugin calibrates on the row's seeded images: the same seed gives the same FP8 weights, another seed
    other ones; the notes say what ran."""

    def prepared(seed):
        ctx = make_context("fused", {"gemm": "fp8"}, image_size=32)
        ctx.job = ctx.job.replace(seed=seed)
        ctx.precision = "fp16"
        model = densenet_with_bn_statistics().half()
        plugin.prepare_model(model, torch.empty(1, 3, 32, 32, dtype=torch.float16), ctx)
        return model.features.denseblock1.layers[0], ctx.notes

    layer, notes = prepared(0)
    assert notes[-1] == ("fused: fp8 e4m3 GEMMs (fp32 accumulation), per-channel activation scales from "
                         f"{plugin.CALIBRATION_IMAGES} seeded images")  # fmt: skip
    assert layer.weight1.dtype == torch.float8_e4m3fn and layer.w_scale.shape == (128,)
    again, other = prepared(0)[0], prepared(5)[0]
    assert torch.equal(again.scale, layer.scale) and torch.equal(again.weight1.float(), layer.weight1.float())
    assert not torch.equal(other.scale, layer.scale)


test_a_bad_gemm_value_is_refused_while_parsing = refuses_options("fused", [
    ({"gemm": "int4"}, "fused.gemm must be one of native, fp8, not 'int4'"),
])  # fmt: skip


def test_fp8_without_a_precision_stage_is_refused_while_parsing():
    make_context("fused", {"gemm": "fp8"}, members=["channels_last", "fp16", "fused"])  # fine
    with pytest.raises(OptionError, match="recipe channels_last[+]fused: fused.gemm=fp8 needs fp16 or bf16 dense"):
        make_context("fused", {"gemm": "fp8"}, members=["channels_last", "fused"])


@pytest.mark.parametrize("recipe, option", [("channels_last+fused", "fused.gemm=fp8"),
                                            ("channels_last+fp16+fused", "fused.gemm=e4m3")])  # fmt: skip
def test_refused_through_the_cli_as_bad_input(tmp_path, recipe, option):
    """A recipe that runs fp32 blocks, and a value fused.gemm does not take: exit 2, one line, nothing written. (On
    tiny settings, so that a run not refused fails in seconds.)"""
    proc = run_densebench("run", "--backend", recipe, "--backend-option", option, "--device", "cpu", "--quick",
                          "--batch-sizes", "1", "--image-size", "32", "--no-profile",
                          "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"))  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ("fused.gemm=fp8 needs fp16 or bf16" if option.endswith("fp8") else "fused.gemm must be one of") in lines[0]
    assert not (tmp_path / "r").exists()


def test_fp8_row_runs_through_the_cli(tmp_path):
    """``channels_last+fp16+fused`` with fp8 GEMMs: the row is ok, in fp16, its notes say fp8 ran, and its accuracy
    is judged (against the fp16 tolerance: the core has no fp8 one). On the stand-in weights at 32 px its rel_err is
    0.73 (fp16 rows: 0.02): e4m3's 3 mantissa bits, amplified by random features; the README says what to expect.
    Below 1: the answers still follow the reference's (a wrong scale gives far more)."""
    proc, (row,) = run_with_options("channels_last+fp16+fused", tmp_path, "fused.gemm=fp8")
    assert proc.returncode == 0, proc.stderr
    assert row["status"] == "ok", row["reason"]
    assert row["precision"] == "fp16"
    assert "fused: fp8 e4m3 GEMMs (fp32 accumulation), per-channel activation scales from 16 seeded images" in (
        row["notes"])
    rel_err = float(row["rel_err"] or "nan")  # empty where the outputs were not finite
    assert math.isfinite(rel_err) and 0.05 < rel_err < 1.0, (row["rel_err"], row["notes"])
    assert row["accuracy_ok"] == "false" and "outside the fp16 accuracy tolerance" in row["notes"]
