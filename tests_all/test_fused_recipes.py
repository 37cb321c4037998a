"""The ``fused`` rewrite with the other stages: amp under a compiler runs correctly, jit is refused up front."""

from densebench_core.testing import read_rows, run_densebench


def test_amp_fused_compile_runs_in_the_autocast_dtype_and_agrees_with_fp32(tmp_path):
    """The combination that failed with a dtype mismatch when the kernels were a compile option: the blocks now
    run in the autocast dtype (fp16 as on a GPU; Dynamo and AOTAutograd trace through autocast and the op)."""
    proc = run_densebench("run", "--backend", "channels_last+amp+fused+compile", "--backend-option", "amp.dtype=fp16",
                          "--backend-option", "compile.backend=aot_eager", "--device", "cpu", "--quick",
                          "--batch-sizes", "2", "--image-size", "32", "--no-profile",
                          "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["status"] == "ok", row["reason"]
    assert row["precision"] == "amp-fp16"
    assert "fused: 58 dense layers in 4 blocks as fused GEMMs, 3x3 convs by triton (float16" in row["notes"], row["notes"]
    assert row["accuracy_ok"] == "true", (row["rel_err"], row["top1_agree"])


def test_fused_with_jit_is_bad_input_before_any_worker(tmp_path):
    proc = run_densebench("run", "--backend", "channels_last+fp16+fused+jit", "--device", "cpu",
                          "--output-dir", str(tmp_path / "r"))  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "recipe channels_last+fp16+fused+jit: fused does not go with jit" in lines[0]
    assert not (tmp_path / "r").exists()
