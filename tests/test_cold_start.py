"""The cold start of an exported artifact (``cold_start_s``): a fresh process loads it and answers, and its answers
are held to the fp32 reference; a corrupt artifact or one of another model fails the phase, never the measurement.

Real runs of the CLI on the CPU: the built-in ``fp16`` (its fp16 state dict, loaded into eager DenseNet-121) and the
test backend ``artifact_test`` (tests/fixtures/testplugins), whose export can be damaged on purpose.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import TINY

from densebench_core.testing import read_rows, run_densebench


def _run(tmp_path, env, *args):
    out = tmp_path / "r"
    proc = run_densebench("run", *args, *TINY, "--output-dir", str(out), "--log-dir", str(tmp_path / "l"), env=env)
    rows = {row["backend"]: row for row in read_rows(out / "benchmark_results.csv")}
    details = {row["backend"]: row for row in json.loads((out / "benchmark_results.json").read_text())["rows"]}
    return proc, rows, details


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, testplugins_path):
    """One run: fp16 and artifact_test (a good artifact) export and get a cold start; baseline exports nothing."""
    tmp_path = tmp_path_factory.mktemp("cold-start")
    env = {"PYTHONPATH": str(testplugins_path), "DENSEBENCH_PLUGINS": "artifact_test"}
    return _run(tmp_path, env, "--backend", "baseline", "--backend", "fp16", "--backend", "artifact_test")


@pytest.mark.parametrize("backend", ["fp16", "artifact_test"])
def test_an_exported_artifact_gets_a_cold_start_checked_against_the_reference(good_run, backend):
    proc, rows, details = good_run
    assert proc.returncode == 0, proc.stderr
    row = rows[backend]
    assert row["status"] == "ok" and row["artifact_path"], row
    assert float(row["cold_start_s"]) > 0, row
    notes = details[backend]["notes"]
    assert any(n.startswith(f"cold start: a fresh process loaded {row['artifact_path'].rsplit('/', 1)[-1]} and "
                            "answered in") and "against the fp32 reference" in n for n in notes), notes  # fmt: skip
    assert "cold start" in details[backend]["phase_s"]


def test_no_artifact_no_cold_start(good_run):
    _, rows, details = good_run
    assert rows["baseline"]["status"] == "ok" and rows["baseline"]["artifact_path"] == ""
    assert rows["baseline"]["cold_start_s"] == ""
    assert not any(n.startswith("cold start") for n in details["baseline"]["notes"])


def test_cold_start_is_the_last_column(good_run):
    _, rows, _ = good_run
    columns = list(rows["fp16"])
    assert columns[-4:] == ["world_size", "host", "gpu_index", "cold_start_s"]


def test_without_export_there_is_no_cold_start(tmp_path):
    proc, rows, _ = _run(tmp_path, None, "--backend", "fp16", "--no-export")
    assert proc.returncode == 0, proc.stderr
    assert rows["fp16"]["status"] == "ok" and rows["fp16"]["cold_start_s"] == ""


def test_one_evaluation_batch_is_enough_for_a_cold_start(tmp_path):
    # as bs 256 with the default 256 evaluation images on the GPU: the fresh process answers a single batch
    out = tmp_path / "r"
    proc = run_densebench("run", "--backend", "fp16", *TINY, "--batch-sizes", "2", "--eval-images", "2",
                          "--output-dir", str(out), "--log-dir", str(tmp_path / "l"))  # fmt: skip
    row = read_rows(out / "benchmark_results.csv")[0]
    assert proc.returncode == 0 and row["status"] == "ok", proc.stdout + proc.stderr
    assert float(row["cold_start_s"]) > 0, row["notes"]


def test_an_artifact_that_lacks_a_later_members_change_gets_no_cold_start_and_still_loads(tmp_path, testplugins_path):
    # fp16 exports its weights; a compiler after it (here wrap_test, wrapping as torch.compile does) changes the
    # model the row measured, so a fresh process loading those weights would not be what was measured
    import torch
    from torchvision.models import densenet121

    env = {"PYTHONPATH": str(testplugins_path), "DENSEBENCH_PLUGINS": "wrap_test"}
    proc, rows, details = _run(tmp_path, env, "--backend", "fp16+wrap_test")
    row = rows["fp16+wrap_test"]
    assert proc.returncode == 0 and row["status"] == "ok", proc.stdout + proc.stderr
    assert row["cold_start_s"] == "" and row["artifact_path"]
    assert any(n.startswith("cold start: not run:") and "wrap_test" in n for n in details["fp16+wrap_test"]["notes"])
    weights = torch.load(tmp_path / "r" / row["artifact_path"], weights_only=True)
    densenet121(weights=None).load_state_dict(weights)  # the model's own keys, not the wrapper's (_orig_mod.)


@pytest.mark.parametrize("damage, why", [
    ("truncate", r"cold start failed: ColdStartError: .*(zip archive|central directory|PytorchStreamReader)"),
    ("scale", r"cold start failed: ColdStartError: the artifact loaded in a fresh process does not give the "
              r"measured model's answers: outside the fp32 accuracy tolerance: rel_err"),
])  # fmt: skip
def test_a_bad_artifact_fails_the_cold_start_and_keeps_the_measurement(tmp_path, testplugins_path, damage, why):
    env = {"PYTHONPATH": str(testplugins_path), "DENSEBENCH_PLUGINS": "artifact_test"}
    proc, rows, details = _run(tmp_path, env, "--backend", "artifact_test",
                               "--backend-option", f"artifact_test.damage={damage}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # a phase after the measurement costs only itself
    row = rows["artifact_test"]
    assert row["status"] == "ok" and float(row["latency_p50_ms"]) > 0 and row["accuracy_ok"] == "true", row
    assert row["cold_start_s"] == "" and row["artifact_path"], row
    failed = [n for n in details["artifact_test"]["notes"] if n.startswith("cold start")]
    assert len(failed) == 1 and re.match(why, failed[0]), failed


def _serving_row(backend, p50, cold=None, prepare=0.1):
    return {"run_id": "r", "backend": backend, "mode": "inference", "device": "cuda", "batch_size": 1,
            "image_size": 224, "status": "ok", "latency_p50_ms": p50, "latency_mean_ms": p50,
            "latency_std_ms": 0.01 * p50, "throughput_ips": 1000 / p50, "iterations": 200, "prepare_s": prepare,
            "cold_start_s": cold, "rel_err": 1e-4, "top1_agree": 1.0, "accuracy_ok": "true", "peak_mem_mb": 100}


def _latency_pick(tmp_path, rows):
    from densebench_core.report.build import build_report
    from densebench_core.testing import write_rows

    write_rows(tmp_path / "benchmark_results.csv", rows)
    build_report(tmp_path)
    return next(line for line in (tmp_path / "report.md").read_text().splitlines() if "Latency-bound" in line)


def test_which_to_choose_weighs_the_cold_start_for_serving(tmp_path):
    """A pick that exports nothing loadable: a new replica pays its prepare again, and the fastest row with a
    loadable artifact is named with its cold start. A pick with an artifact: its own cold start."""
    line = _latency_pick(tmp_path, [_serving_row("baseline", 10), _serving_row("compile", 2, prepare=40),
                                    _serving_row("jit", 5, cold=0.3, prepare=3)])  # fmt: skip
    assert "**`compile`**" in line and "a new replica pays its 40.0 s again" in line, line
    assert "the fastest row with a loadable artifact is `jit` (p50 5.00 ms, cold start 0.300 s)" in line, line
    line = _latency_pick(tmp_path, [_serving_row("baseline", 10), _serving_row("jit", 5, cold=0.3, prepare=3)])
    assert "**`jit`**" in line and "A new replica answers 0.300 s after loading its exported artifact" in line, line
