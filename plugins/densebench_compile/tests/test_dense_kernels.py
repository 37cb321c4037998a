"""``compile.dense_kernels=triton``: the dense-block rewrite and its fused BN+ReLU+GEMM kernel.

Real DenseNet-121 (torchvision) and real ``torch.compile`` on the CPU, where the op runs its torch-ops path. The
Triton kernel itself runs here under Triton's CPU interpreter (``TRITON_INTERPRET=1``, in a child process since
the variable is read when the kernel is defined); its speed was measured on the H200 (docs/perf-notes.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from copy import deepcopy

import pytest
import torch
from densebench_compile import bn_relu_gemm, plugin
from densebench_compile.dense_fusion import FusedDenseBlock, dense_block, fuse_dense_blocks

from densebench_core.model import build_model, make_inputs
from densebench_core.testing import densenet_with_bn_statistics, make_context, run_with_options


@pytest.fixture(scope="module")
def models():
    """(original, rewritten) DenseNet-121 with the same weights, and a 48 px batch of 2."""
    original = densenet_with_bn_statistics().to(memory_format=torch.channels_last)
    rewritten = densenet_with_bn_statistics().to(memory_format=torch.channels_last)
    counts = fuse_dense_blocks(rewritten)
    inputs = make_inputs(2, 48, 0).contiguous(memory_format=torch.channels_last)
    return original, rewritten, counts, inputs


def test_rewrite_covers_densenet121_and_keeps_its_outputs(models):
    original, rewritten, counts, inputs = models
    assert counts == {"blocks": 4, "layers": 58, "transitions": 3}
    assert not any(type(m).__name__ == "_DenseLayer" for m in rewritten.modules())
    with torch.no_grad():
        expected, actual = original(inputs), rewritten(inputs)
    assert actual.shape == expected.shape == (2, 1000)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_compiled_graph_takes_each_block_by_key_not_its_weights(models):
    """The regression behind the 2.15 ms batch-1 row: weights as op arguments became ~317 graph inputs that
    CUDA graph trees copied on every replay. Now the graph's inputs are the image and the stem, transition and
    classifier weights only."""
    _, rewritten, _, inputs = models
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append((len(example_inputs), gm.code.count("densebench.dense_block")))
        return gm

    torch._dynamo.reset()
    with torch.no_grad():
        out = torch.compile(rewritten, backend=counting_backend)(inputs)
        expected = rewritten(inputs)
    assert graphs == [(graphs[0][0], 4)]
    assert graphs[0][0] < 40, graphs  # 27: the image plus 26 weights outside the dense blocks
    torch.testing.assert_close(out, expected)


def test_inductor_compiles_around_the_op(models):
    """Real Inductor on the CPU (freezing on, as the plugin does for inference) gives the eager outputs."""
    _, rewritten, _, inputs = models
    ctx = make_context("compile", {"dense_kernels": "inductor"}, device="cpu", mode="inference", batch_size=2)
    with torch.no_grad():
        compiled = plugin.prepare_model(model=rewritten, example_inputs=inputs, ctx=ctx)
        torch.testing.assert_close(compiled(inputs), rewritten(inputs), rtol=1e-4, atol=1e-4)


def test_a_copy_runs_its_own_weights(models):
    """The op finds its block by key: a deep copy must get its own key, not run the original's weights."""
    _, rewritten, _, inputs = models
    copy = deepcopy(rewritten)
    blocks = [m for m in rewritten.modules() if isinstance(m, FusedDenseBlock)]
    copied = [m for m in copy.modules() if isinstance(m, FusedDenseBlock)]
    assert len(copied) == 4 and {m.key for m in copied}.isdisjoint(m.key for m in blocks)
    with torch.no_grad():
        before = rewritten(inputs)
        copied[0].layers[0].weight1.mul_(2.0)
        torch.testing.assert_close(rewritten(inputs), before)  # the original is untouched
        assert not torch.allclose(copy(inputs), before)  # and the copy runs its own (changed) weights


def test_op_with_an_unknown_block_fails_clearly():
    with pytest.raises(RuntimeError, match="no live FusedDenseBlock with key 123456789"):
        dense_block(torch.randn(1, 64, 4, 4), 123456789, 96)


def test_rewrite_refuses_training_mode_and_models_without_dense_blocks():
    with pytest.raises(ValueError, match="for inference"):
        fuse_dense_blocks(build_model("random", 0, 32).train())
    with pytest.raises(ValueError, match="no DenseNet dense block"):
        fuse_dense_blocks(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).eval())


KERNEL_CHECK = textwrap.dedent(
    """
    import json, torch
    from densebench_compile import bn_relu_gemm as k
    g = torch.Generator().manual_seed(0)
    results = []
    # (rows, buffer width, K read from it): a batch-1 block-4 layer (K 992 of 1024; rows not a tile multiple),
    # a small block-1-like layer (K 96 of 256), K smaller than one BLOCK_K
    for rows, width, depth in [(49, 1024, 992), (200, 256, 96), (33, 64, 32)]:
        buffer = torch.randn(rows, width, generator=g).half()
        a = buffer[:, :depth]
        scale, shift = torch.rand(depth, generator=g) + 0.5, torch.randn(depth, generator=g) * 0.3
        w = (torch.randn(depth, 128, generator=g) / depth**0.5).half()
        bias = torch.randn(128, generator=g) * 0.1
        out, ref = k.launch(a, scale, shift, w, bias), k.reference(a, scale, shift, w, bias)
        results.append({"shape": list(out.shape), "err": (out.float() - ref.float()).abs().max().item(),
                         "scale": ref.float().abs().max().item(), "negative": int((out < 0).sum())})
    print(json.dumps(results))
    """
)


@pytest.mark.skipif(bn_relu_gemm.triton is None, reason="Triton is not installed (it ships with torch's CUDA builds)")
def test_triton_kernel_matches_the_reference_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", KERNEL_CHECK], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["shape"] for r in results] == [[49, 128], [200, 128], [33, 128]]
    for r in results:
        assert r["negative"] == 0  # the ReLU epilogue
        assert r["err"] <= 2 ** -9 * max(r["scale"], 1.0), r  # about one fp16 rounding of the largest output


def test_tiles_follow_the_rows():
    assert bn_relu_gemm.block_m(49) == (32, 4)  # batch 1, block 4
    assert bn_relu_gemm.block_m(256 * 14 * 14) == (64, 4)
    assert bn_relu_gemm.block_m(256 * 56 * 56) == (128, 4)


def test_option_in_the_description_and_ignored_for_training():
    options = plugin.resolve_options(make_context("compile", {"dense_kernels": "triton"}, device="cpu"))
    assert options.dense_kernels == "triton" and "dense_kernels=triton" in plugin.describe(options)
    ctx = make_context("compile", {"dense_kernels": "triton", "backend": "eager"}, device="cpu", mode="training")
    plugin.prepare_model(model=torch.nn.Linear(4, 4).train(), example_inputs=torch.randn(2, 4), ctx=ctx)
    assert "compile.dense_kernels=triton ignored: it rewrites inference only" in ctx.notes


def test_the_option_through_the_cli_on_densenet(tmp_path):
    """Through the CLI on the real DenseNet-121: the row is ok, accurate, and its notes say what was rewritten."""
    proc, (row,) = run_with_options("channels_last+fp16+compile", tmp_path, "compile.dense_kernels=triton",
                                    "compile.backend=aot_eager")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert row["status"] == "ok", row["reason"]
    assert "dense_kernels=triton: 58 dense layers in 4 blocks as fused GEMMs, 3 transitions pool-first" in row["notes"]
    assert row["accuracy_ok"] == "true", (row["rel_err"], row["top1_agree"])
