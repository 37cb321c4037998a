"""Tests of the ``fused`` backend: the kit's contract suite, its dtypes, and what it refuses.

The plugin's own nox session installs the core and this plugin alone, so the recipes here use the core's
``channels_last`` and ``fp16``; recipes with ``amp``, ``compile`` and ``jit`` are tested with every plugin
installed (``tests_all/test_fused_recipes.py``).
"""

from __future__ import annotations

import pytest
import torch
from densebench_fused import plugin

from densebench_core.options import OptionError
from densebench_core.testing import (
    BackendContractSuite,
    make_context,
    refuses_options,
    run_densebench,
    run_with_options,
)


class TestFused(BackendContractSuite):
    backend = "fused"


def test_a_rewrite_stage_for_inference_only():
    info = plugin.backend_info()
    assert info.stage == "rewrite" and info.modes == ("inference",)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("tf32", torch.float32),
                                              ("fp16", torch.float16), ("amp-fp16", torch.float16),
                                              ("bf16", torch.bfloat16), ("amp-bf16", torch.bfloat16)])  # fmt: skip
def test_blocks_follow_the_precision_the_earlier_stages_chose(precision, dtype):
    assert plugin.block_dtype(precision) == dtype


def test_a_precision_without_kernels_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="fused has no kernels for precision 'int8'"):
        plugin.block_dtype("int8")


test_bad_options_are_refused_while_parsing = refuses_options("fused", [
    ({"conv3x3": "winograd"}, "fused.conv3x3 must be one of triton, cudnn, not 'winograd'"),
])


def test_a_recipe_with_jit_is_refused_while_parsing():
    assert plugin.check_recipe(["channels_last", "fused"], {}) is None
    with pytest.raises(OptionError, match="recipe fused[+]jit: fused does not go with jit: a traced model"):
        make_context("fused", members=["fused", "jit"])


def test_training_is_skipped_with_the_reason_before_any_worker(tmp_path):
    proc = run_densebench("run", "--backend", "fused", "--mode", "training", "--device", "cpu", "--quick",
                          "--batch-sizes", "2", "--image-size", "32", "--output-dir", str(tmp_path / "r"),
                          "--log-dir", str(tmp_path / "l"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "fused: does not support training" in (tmp_path / "r" / "benchmark_results.csv").read_text()


@pytest.mark.parametrize("recipe, dtype", [("fused", "float32"), ("channels_last+fp16+fused", "float16")])
def test_runs_eagerly_through_the_cli_and_says_what_it_rewrote(tmp_path, recipe, dtype):
    """Without a compiler the rewritten model runs eagerly; the row is ok and accurate, its notes say what ran."""
    proc, (row,) = run_with_options(recipe, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert row["status"] == "ok", row["reason"]
    assert (f"fused: 58 dense layers in 4 blocks as fused GEMMs, 3x3 convs by triton ({dtype}, torch ops (no Triton "
            "kernels on this device)), 3 transitions pool-first") in row["notes"]  # fmt: skip
    assert row["accuracy_ok"] == "true", (row["rel_err"], row["top1_agree"])
