"""With core and every plugin installed: the full quick run, exports, and recipes (nox session `all`)."""

import pytest
import torch

from densebench_core.testing import read_rows, run_densebench


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    out = tmp_path_factory.mktemp("all")
    proc = run_densebench("run", "--all", "--device", "cpu", "--quick", "--output-dir", str(out / "R"),
                          "--log-dir", str(out / "L"))
    return proc, read_rows(out / "R" / "benchmark_results.csv"), out / "R"


def test_every_backend_has_rows_and_trt_is_skipped_with_reason(quick_all):
    proc, rows, _ = quick_all
    assert proc.returncode == 0, proc.stderr + proc.stdout
    statuses = {}
    for row in rows:
        statuses.setdefault(row["backend"], set()).add(row["status"])
    for name in ("baseline", "channels_last", "fp16", "amp", "compile", "fused", "jit"):
        assert statuses.get(name) == {"ok"}, (name, [r["reason"] for r in rows if r["backend"] == name])
    assert statuses["trt"] == {"skipped"}
    trt_reasons = {r["reason"] for r in rows if r["backend"] == "trt"}
    assert all(("torch_tensorrt" in r or "CUDA" in r) for r in trt_reasons), trt_reasons


def test_models_folder_holds_loadable_jit_and_fp16_weights(quick_all):
    _, rows, results = quick_all
    jit_paths = {r["artifact_path"] for r in rows if r["backend"] == "jit"}
    assert len(jit_paths) == 1 and jit_paths.pop() == f"models/{rows[0]['run_id']}/jit.pt"  # one file, every bs
    loaded = torch.jit.load(str(results / "models" / rows[0]["run_id"] / "jit.pt"))
    size = int(rows[0]["image_size"])
    with torch.no_grad():
        for batch in sorted({int(r["batch_size"]) for r in rows if r["backend"] == "jit"}):
            assert loaded(torch.randn(batch, 3, size, size)).shape == (batch, 1000)
    fp16 = [r["artifact_path"] for r in rows if r["backend"] == "fp16"][0]
    assert fp16.startswith("models/")  # relative to the results folder
    state = torch.load(results / fp16, weights_only=True)
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}


def test_recipe_gives_one_ok_row_named_by_the_recipe(tmp_path):
    proc = run_densebench("run", "--backend", "channels_last+amp+compile", "--device", "cpu", "--quick",
                          "--batch-sizes", "1", "--output-dir", str(tmp_path / "r"), "--log-dir",
                          str(tmp_path / "l"))
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["backend"] == "channels_last+amp+compile" and row["status"] == "ok", row["reason"]
    assert row["precision"].startswith("amp")


def test_recipe_that_cannot_compose_is_bad_input(tmp_path):
    proc = run_densebench("run", "--backend", "jit+trt", "--device", "cpu", "--output-dir", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot compose" in proc.stderr


def test_option_the_backend_does_not_declare_is_bad_input(tmp_path):
    proc = run_densebench("run", "--backend", "compile", "--backend-option", "compile.mdoe=max-autotune",
                          "--device", "cpu", "--output-dir", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "has no option 'mdoe'" in proc.stderr
