"""A compiled recipe under DDP: ``torch.compile`` of the DDP-wrapped model (Dynamo's DDPOptimizer), two processes."""

from densebench_core.testing import read_rows, run_densebench


def test_compile_with_amp_trains_on_two_processes(tmp_path):
    proc = run_densebench("run", "--backend", "channels_last+amp+compile", "--backend-option", "compile.backend=aot_eager",
                          "--mode", "training", "--nproc-per-node", "2", "--device", "cpu", "--batch-sizes", "2",
                          "--image-size", "32", "--warmup", "1", "--min-iters", "3", "--min-time", "0",
                          "--no-profile", "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["status"] == "ok", row["reason"]
    assert row["world_size"] == "2" and "DistributedDataParallel over 2 processes" in row["notes"]
    assert "torch.compile(backend=aot_eager" in row["notes"]
