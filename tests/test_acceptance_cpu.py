"""The core's acceptance run: `densebench run --all --device cpu --quick` on the built-in backends."""

import json
import shutil

import pytest

from densebench_core.testing import read_rows, run_densebench

pytestmark = pytest.mark.xdist_group("shared_runs")  # reads the session's quick run: one worker


@pytest.fixture(scope="module")
def quick_run(quick_all_run):
    """`densebench run --all --device cpu --quick`: run once per session (tests/conftest.py), also read by
    test_tensorboard.py. A test that writes into its folder works on a copy."""
    return quick_all_run


def test_quick_run_exits_0_with_ok_builtin_rows(quick_run):
    proc, rows, _ = quick_run
    assert proc.returncode == 0, proc.stderr
    by_backend = {}
    for row in rows:
        by_backend.setdefault(row["backend"], []).append(row)
    assert set(by_backend) == {"baseline", "channels_last", "fp16"}
    for row in rows:
        assert row["status"] == "ok", row["reason"]
        for column in ("latency_p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "throughput_ips", "max_abs_err",
                       "cosine_sim", "top1_agree", "rel_err", "eval_images"):
            assert row[column] != "", column
        assert float(row["p50_ci_low_ms"]) <= float(row["latency_p50_ms"]) <= float(row["p50_ci_high_ms"])
        assert row["accuracy_ok"] == "true", row
        assert int(row["iterations"]) >= 10 and row["latency_p90_ms"] != ""  # quick: enough for the median and p90
        assert row["latency_p99_ms"] == "" or int(row["iterations"]) >= 100
    assert {r["precision"] for r in by_backend["fp16"]} == {"fp16"}


def test_fp16_exports_its_weights_once_per_run(quick_run):
    _, rows, out = quick_run
    fp16 = [r for r in rows if r["backend"] == "fp16"]
    assert len(fp16) == 2 and len({r["artifact_path"] for r in fp16}) == 1  # both batch sizes, one file
    relative = fp16[0]["artifact_path"]
    assert relative == f"models/{fp16[0]['run_id']}/fp16_fp16_state_dict.pt"  # relative to the results folder
    models = out / "R" / "models" / fp16[0]["run_id"]
    assert [p.name for p in models.iterdir()] == ["fp16_fp16_state_dict.pt"]  # written once, not once per row
    logs = sorted((out / "R" / "runs" / fp16[0]["run_id"] / "work").glob("fp16_*.job.json"))
    assert [json.loads(p.read_text())["export"] for p in logs] == [True, False]
    import torch

    state = torch.load(out / "R" / relative, weights_only=True)
    assert all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())


def test_a_second_run_keeps_the_first_runs_artifacts(quick_run, tmp_path):
    _, rows, out = quick_run
    results = tmp_path / "R"
    shutil.copytree(out / "R", results)  # the quick run's folder as it left it, a copy of this test's own
    first = results / next(r["artifact_path"] for r in rows if r["backend"] == "fp16")
    before = first.read_bytes()
    proc = run_densebench("run", "--backend", "fp16", "--device", "cpu", "--batch-sizes", "1", "--image-size", "32",
                          "--warmup", "1", "--min-iters", "2", "--min-time", "0", "--eval-images", "4", "--no-profile",
                          "--output-dir", str(results), "--log-dir", str(tmp_path / "l"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [second] = read_rows(results / "benchmark_results.csv")
    assert second["artifact_path"] != str(first.relative_to(results))
    assert first.read_bytes() == before and (results / second["artifact_path"]).is_file()


def test_quantize_is_an_alias_of_fp16(tmp_path):
    proc = run_densebench("run", "--backend", "quantize", "--device", "cpu", "--batch-sizes", "1",
                          "--image-size", "32", "--warmup", "1", "--min-iters", "2", "--min-time", "0",
                          "--eval-images", "4", "--no-profile", "--no-export",
                          "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"))
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["backend"] == "fp16" and row["status"] == "ok"


def test_training_mode_runs_a_real_optimizer_step(training_run):
    proc, results, _ = training_run  # fp16 and baseline, --mode training (tests/conftest.py)
    assert proc.returncode == 0, proc.stderr
    rows = {r["backend"]: r for r in read_rows(results / "benchmark_results.csv")}
    assert rows["baseline"]["status"] == "ok" and rows["baseline"]["mode"] == "training"
    assert rows["fp16"]["status"] == "skipped" and "training" in rows["fp16"]["reason"]


def test_env_json_describes_the_machine():
    proc = run_densebench("env", "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    import torch

    assert info["torch"] == torch.__version__ and "cudnn" in info and "gpus" in info


def test_the_run_settings_name_what_all_meant(quick_run, tmp_path):
    _, rows, out = quick_run
    run = out / "R" / "runs" / rows[0]["run_id"]  # this run's own files
    config = json.loads((run / "results.json").read_text())["config"]
    assert config["all_backends"] is True and config["backends"] == ["baseline", "channels_last", "fp16"]
    from densebench_core.report import build_report

    copy = tmp_path / "R"
    copy.mkdir()
    (copy / "benchmark_results.csv").write_bytes((run / "benchmark_results.csv").read_bytes())
    (copy / "results.json").write_bytes((run / "results.json").read_bytes())
    settings = build_report(copy)["report_md"].read_text().split("### Run settings", 1)[1]
    assert "| backends | ['baseline', 'channels_last', 'fp16'] |" in settings
