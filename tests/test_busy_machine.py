"""The baseline and the baseline under another name (``identity_test``) are tied at every batch size: on a quiet
machine, and with CPU hogs running, where the report also warns that the machine was busy."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from densebench_core.machine_load import busy_threshold
from densebench_core.testing import run_densebench

pytestmark = pytest.mark.serial  # judges timings: alone on the machine in CI (noxfile.py)

SIZES = (1, 2)


def fastest_cells(report: str) -> dict[int, list[str]]:
    """Batch size -> the backends the "Fastest backend per batch size" table names for it."""
    table = report.split("### Fastest backend per batch size", 1)[1].split("\n\n", 2)[1]
    cells = {}
    for line in table.splitlines()[2:]:
        columns = [c.strip() for c in line.strip("|").split("|")]
        cells[int(columns[1])] = re.findall(r"`([^`]+)`", columns[2])
    return cells


def run_pair(tmp_path, testplugins_path, extra_env=None):
    proc = run_densebench(
        "run", "--backend", "baseline", "--backend", "identity_test", "--device", "cpu",
        "--batch-sizes", ",".join(map(str, SIZES)), "--image-size", "32", "--warmup", "10", "--min-iters", "30",
        "--min-time", "1", "--eval-images", "8", "--no-profile", "--no-export",
        "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"),
        env={"PYTHONPATH": str(testplugins_path), "DENSEBENCH_PLUGINS": "identity_test", **(extra_env or {})},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "r" / "benchmark_results.json").read_text())
    return (tmp_path / "r" / "report.md").read_text(), document["rows"]


@pytest.mark.slow
def test_the_same_backend_under_two_names_is_tied_on_a_quiet_machine(tmp_path, testplugins_path):
    report, rows = run_pair(tmp_path, testplugins_path)
    if any(r["load"]["other_cpu_cores"] >= busy_threshold(r["load"]["cpu_count"]) for r in rows):
        pytest.skip("another program was busy on this machine: the quiet case cannot be shown now")
    assert "the machine was busy" not in report
    cells = fastest_cells(report)
    assert {size: sorted(names) for size, names in cells.items()} == {s: ["baseline", "identity_test"] for s in SIZES}


@pytest.mark.slow
def test_the_same_backend_under_two_names_is_tied_with_cpu_hogs_running(tmp_path, testplugins_path):
    # one busy loop per CPU: the rows are timed while other programs compete for every core. The worker runs
    # torch on one thread here (OMP_NUM_THREADS=1) to keep the test's time bounded: with torch's default of one
    # thread per core, OpenMP barriers waiting on descheduled threads made one 8 ms step take 2.5 s.
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        report, rows = run_pair(tmp_path, testplugins_path, {"OMP_NUM_THREADS": "1"})
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert all(r["load"]["other_cpu_cores"] >= busy_threshold(r["load"]["cpu_count"]) for r in rows), \
        [r["load"] for r in rows]  # the machine really was busy while every row was timed
    assert "**Warning: the machine was busy.**" in report
    cells = fastest_cells(report)
    assert set(cells) == set(SIZES)
    assert all(sorted(names) == ["baseline", "identity_test"] for names in cells.values()), cells
    summary = report.split("## Summary", 1)[1].split("## ", 1)[0]
    alias = [line for line in summary.splitlines() if line.startswith("| `identity_test`")]
    assert len(alias) == len(SIZES) and all("≈" in line for line in alias)
