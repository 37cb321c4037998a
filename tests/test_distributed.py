"""Data-parallel training rows (``--nproc-per-node``): a real torchrun group of two processes on the CPU (gloo).

The same code runs with NCCL, one GPU per process, on the 2-GPU H200 machine (docs/perf-notes.md); here the point
is the protocol: two ranks that stay in step, rank 0 writing the row with the global throughput.
"""

from __future__ import annotations

import json

import pytest
from conftest import TINY

from densebench_core.testing import read_rows, run_densebench


def run(tmp_path, *args):
    return run_densebench("run", *args, "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"))


def test_a_training_row_on_two_processes_reports_the_global_throughput(tmp_path):
    proc = run(tmp_path, "--backend", "baseline", "--mode", "training", "--nproc-per-node", "2", *TINY,
               "--batch-sizes", "2", "--min-time", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["status"] == "ok", row["reason"]
    assert row["world_size"] == "2" and row["batch_size"] == "2"
    assert "DistributedDataParallel over 2 processes (gloo)" in row["notes"]
    # global: both processes' images per step, over the step time rank 0 measured
    assert float(row["throughput_ips"]) == pytest.approx(2 * 2 * 1000.0 / float(row["latency_mean_ms"]), rel=1e-3)
    work = tmp_path / "r" / "runs" / row["run_id"] / "work"
    other = json.loads((work / "baseline_training_bs2_np2.result.rank1.json").read_text())  # the second rank ran too
    assert other["status"] == "ok" and other["world_size"] == 2
    assert other["iterations"] == int(row["iterations"])  # in step: the same number of timed steps


@pytest.mark.parametrize("args, message", [
    (["--nproc-per-node", "2"], "--nproc-per-node runs data-parallel training: use it with --mode training"),
    (["--mode", "training", "--nproc-per-node", "0"], "--nproc-per-node must be at least 1, not 0"),
])  # fmt: skip
def test_bad_process_counts_are_bad_input(tmp_path, args, message):
    proc = run(tmp_path, "--backend", "baseline", *TINY, *args)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"densebench: error: {message}"], proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_distributed_row_is_profiled_with_its_all_reduce(tmp_path):
    """Rank 0 profiles while the other rank runs the same steps, so the profile holds the gradients' all-reduce
    (the cost that two processes add to a step) and neither rank waits forever for the other."""
    proc = run(tmp_path, "--backend", "baseline", "--mode", "training", "--nproc-per-node", "2", *TINY,
               "--batch-sizes", "2", "--profile")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads((tmp_path / "r" / "benchmark_results.json").read_text())["rows"]
    assert row["status"] == "ok", row["reason"]
    profile = row["profile"]
    assert profile["collective_calls_per_step"] >= 1 and profile["collective_ms_per_step"] > 0, profile
    assert profile["traces"], "rank 0 wrote no trace"
