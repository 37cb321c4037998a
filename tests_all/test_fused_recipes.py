"""The ``fused`` rewrite with the other stages: amp under a compiler runs correctly, jit is refused up front."""

import json

from densebench_core.testing import read_rows, run_densebench


def test_plugins_list_fused_as_the_rewrite_stage_and_compile_stays_generic():
    """The DenseNet kernels are the ``fused`` plugin's, in its own stage; ``compile`` has no DenseNet option."""
    proc = run_densebench("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)}
    assert plugins["fused"]["stage"] == "rewrite" and plugins["fused"]["status"] == "ok"
    assert set(plugins["fused"]["options"]) == {"conv3x3", "gemm"}
    compile_options = plugins["compile"]["options"]
    assert plugins["compile"]["stage"] == "compiler"
    assert not [name for name in compile_options if "dense" in name or name in plugins["fused"]["options"]]
    assert "dense" not in json.dumps(compile_options).lower(), compile_options


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
