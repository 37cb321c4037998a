"""The core's acceptance run: `densebench run --all --device cpu --quick` on the built-in backends."""

import json

import pytest

from densebench_core.testing import read_rows, run_densebench


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    proc = run_densebench("run", "--all", "--device", "cpu", "--quick", "--output-dir", str(out / "R"),
                          "--log-dir", str(out / "L"), env={"DENSEBENCH_PLUGINS": ""})
    return proc, read_rows(out / "R" / "benchmark_results.csv"), out


def test_quick_run_exits_0_with_ok_builtin_rows(quick_run):
    proc, rows, _ = quick_run
    assert proc.returncode == 0, proc.stderr
    by_backend = {}
    for row in rows:
        by_backend.setdefault(row["backend"], []).append(row)
    assert set(by_backend) == {"baseline", "channels_last", "fp16"}
    for row in rows:
        assert row["status"] == "ok", row["reason"]
        for column in ("latency_p50_ms", "throughput_ips", "max_abs_err", "cosine_sim", "top1_agree"):
            assert row[column] != "", column
    for row in by_backend["channels_last"]:
        assert float(row["cosine_sim"]) > 0.999
    assert {r["precision"] for r in by_backend["fp16"]} == {"fp16"}


def test_fp16_exports_its_weights(quick_run):
    _, rows, out = quick_run
    artifacts = {r["artifact_path"] for r in rows if r["backend"] == "fp16"}
    assert len(artifacts) == 1
    path = artifacts.pop()
    assert path.startswith(str(out / "R" / "models"))
    import torch

    state = torch.load(path, weights_only=True)
    assert all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())


def test_quantize_is_an_alias_of_fp16(tmp_path):
    proc = run_densebench("run", "--backend", "quantize", "--device", "cpu", "--batch-sizes", "1",
                          "--image-size", "32", "--min-iters", "2", "--min-time", "0", "--no-profile",
                          "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"))
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["backend"] == "fp16" and row["status"] == "ok"


def test_training_mode_runs_a_real_optimizer_step(tmp_path):
    proc = run_densebench("run", "--backend", "baseline", "--backend", "fp16", "--mode", "training",
                          "--device", "cpu", "--batch-sizes", "2", "--image-size", "32", "--min-iters", "2",
                          "--min-time", "0", "--no-profile", "--output-dir", str(tmp_path / "r"),
                          "--log-dir", str(tmp_path / "l"))
    assert proc.returncode == 0, proc.stderr
    rows = {r["backend"]: r for r in read_rows(tmp_path / "r" / "benchmark_results.csv")}
    assert rows["baseline"]["status"] == "ok" and rows["baseline"]["mode"] == "training"
    assert rows["fp16"]["status"] == "skipped" and "training" in rows["fp16"]["reason"]


def test_env_json_describes_the_machine():
    proc = run_densebench("env", "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    import torch

    assert info["torch"] == torch.__version__ and "cudnn" in info and "gpus" in info
