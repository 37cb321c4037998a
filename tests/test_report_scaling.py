"""The report's "Scaling and devices" (issue 14): the scaling efficiency of data-parallel rows next to their
one-process rows (``--nproc-per-node 1,2``), and devices side by side when a run holds several device models;
rows of different process counts or device models are never ranked against each other."""

from __future__ import annotations

import pytest
from conftest import TINY

from densebench_core.compare import compare_results
from densebench_core.report.build import build_report
from densebench_core.schema import COLUMNS
from densebench_core.testing import read_rows, run_densebench, write_rows


def _row(backend, ips, world_size=1, device_name="NVIDIA H200", mode="training", batch=128):
    p50 = 1000.0 * batch * world_size / ips
    return {"run_id": "r1", "backend": backend, "mode": mode, "device": "cuda", "batch_size": batch,
            "image_size": 224, "status": "ok", "throughput_ips": ips, "latency_p50_ms": p50, "latency_mean_ms": p50,
            "latency_std_ms": 0.01 * p50, "iterations": 50, "world_size": world_size, "device_name": device_name,
            "peak_mem_mb": 1000}  # fmt: skip


def _report(tmp_path, rows):
    write_rows(tmp_path / "benchmark_results.csv", rows)
    result = build_report(tmp_path)
    return result, (tmp_path / "report.md").read_text()


def test_scaling_efficiency_of_each_recipe_with_both_rows(tmp_path):
    rows = [_row("baseline", 1000), _row("baseline", 1900, 2), _row("channels_last+amp", 2000),
            _row("channels_last+amp", 3000, 2), _row("amp", 1500, 2)]  # amp: no one-process row
    result, md = _report(tmp_path, rows)
    got = {(e["backend"], e["world_size"]): (e["speedup"], e["efficiency"]) for e in result["scaling"]}
    assert got == {("baseline", 2): (pytest.approx(1.9), pytest.approx(0.95)),
                   ("channels_last+amp", 2): (pytest.approx(1.5), pytest.approx(0.75))}  # fmt: skip
    assert "### Scaling across processes" in md
    assert "| `baseline` | training | 128 | 2 | 1,000 | 1,900 | 1.90× | 95% |" in md
    assert "| `channels_last+amp` | training | 128 | 2 | 2,000 | 3,000 | 1.50× | 75% |" in md
    # one process and two are separate scenarios: never ranked against each other
    labels = {(f["backend"], f["throughput_ips"]) for f in result["fastest"]}
    assert labels == {("channels_last+amp", 2000), ("channels_last+amp", 3000)}
    assert "training, 2 processes" in md


def test_no_scaling_section_without_rows_at_several_counts(tmp_path):
    result, md = _report(tmp_path, [_row("baseline", 1000), _row("amp", 1500)])
    assert result["scaling"] == [] and result["devices"] == []
    assert "Scaling and devices" not in md


def test_devices_side_by_side_when_a_run_holds_several_models(tmp_path):
    rows = [_row("baseline", 1000, mode="inference", batch=32), _row("fp16", 3000, mode="inference", batch=32),
            _row("baseline", 400, mode="inference", batch=32, device_name="NVIDIA A100"),
            _row("fp16", 700, mode="inference", batch=32, device_name="NVIDIA A100"),
            _row("jit", 900, mode="inference", batch=32, device_name="NVIDIA A100")]  # fmt: skip
    result, md = _report(tmp_path, rows)
    assert {(d["device_name"], d["backend"], d["throughput_ips"]) for d in result["devices"]} == {
        ("NVIDIA H200", "fp16", 3000), ("NVIDIA A100", "jit", 900)}
    assert "### Devices side by side" in md
    assert "| inference, 224 px | 32 | 1 | NVIDIA A100 | `jit` | 900.0 | 35.6 |" in md
    # each device model is ranked on its own: the A100's winner is not compared with the H200's rows
    assert {(f["backend"], f["throughput_ips"]) for f in result["fastest"]} == {("fp16", 3000), ("jit", 900)}


def test_a_file_without_world_size_holds_one_process_rows(tmp_path):
    """CSVs written before the column existed compare with new ones: a missing world_size reads as 1."""
    old = tmp_path / "old.csv"
    columns = [c for c in COLUMNS if c != "world_size"]
    lines = [",".join(columns)]
    for r in (_row("baseline", 1000, mode="inference", batch=1), _row("fp16", 2000, mode="inference", batch=1)):
        lines.append(",".join("" if r.get(c) is None else str(r.get(c)) for c in columns))
    old.write_text("\n".join(lines) + "\n")
    new = write_rows(tmp_path / "new.csv", [_row("baseline", 1000, mode="inference", batch=1),
                                            _row("fp16", 2000, mode="inference", batch=1, world_size=1)])
    result = compare_results(old, new)
    assert sorted(r.backend for r in result.rows) == ["baseline", "fp16"] and not result.only_in_new


def test_nproc_per_node_one_and_two_gives_both_rows_and_the_scaling_table(tmp_path):
    """A real run: each training row at one process and at two (torchrun, gloo on the CPU)."""
    out = tmp_path / "r"
    proc = run_densebench("run", "--backend", "baseline", "--mode", "training", "--nproc-per-node", "1,2", *TINY,
                          "--batch-sizes", "2", "--min-time", "0.5", "--output-dir", str(out),
                          "--log-dir", str(tmp_path / "l"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(out / "benchmark_results.csv")
    assert [(r["backend"], r["world_size"], r["status"]) for r in rows] == [("baseline", "1", "ok"),
                                                                            ("baseline", "2", "ok")]
    md = (out / "report.md").read_text()
    assert "### Scaling across processes" in md and "| `baseline` | training | 2 | 2 |" in md


@pytest.mark.parametrize("value, message", [
    ("1,x", "--nproc-per-node takes whole numbers separated by commas, not 1,x"),
    ("1,0", "--nproc-per-node must be at least 1, not 1,0"),
])  # fmt: skip
def test_bad_process_counts_are_bad_input(tmp_path, value, message):
    proc = run_densebench("run", "--backend", "baseline", "--mode", "training", "--nproc-per-node", value, *TINY,
                          "--output-dir", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr.strip() == f"densebench: error: {message}", proc.stderr
