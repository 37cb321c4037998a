"""Where rows run: the launcher interface, and the built-in ``local`` launcher with ``--devices``.

This machine has no GPU. ``DENSEBENCH_TEST_DEVICES=2`` (the documented test seam, docs/scaling.md) gives ``--devices``
two stand-in GPUs: everything else is real, the parallel slots, the child processes pinned with
``CUDA_VISIBLE_DEVICES``, the CSV, timeouts and Ctrl-C; the rows run on the CPU. The same code on two real GPUs was
run on the 2-GPU H200 machine (docs/perf-notes.md).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from conftest import TINY, pid_alive, start_hanging_run

from densebench_core import launchers
from densebench_core.testing import read_rows, run_densebench

TWO_GPUS = {"DENSEBENCH_TEST_DEVICES": "2"}


def run(tmp_path, *args, env=None):
    return run_densebench("run", *args, "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"),
                          env=env)  # fmt: skip


def started_and_ended(results_dir, run_id) -> dict[tuple[str, str], tuple[float, float]]:
    """Each row's worker lifetime, from the run's JSON: (started, ended) in seconds since the epoch."""
    rows = json.loads((results_dir / "runs" / run_id / "results.json").read_text())["rows"]
    spans = {}
    for row in rows:
        ended = time.mktime(time.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S%z"))
        spans[(row["backend"], str(row["batch_size"]))] = (ended - row["wall_s"], ended)
    return spans


def test_two_recipes_run_side_by_side_each_pinned_to_its_gpu(tmp_path, with_testplugins, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # as a user runs it (CI's test processes set one thread)
    env = {**with_testplugins, **TWO_GPUS, "DENSEBENCH_PLUGINS": "pinned_test"}
    proc = run(tmp_path, "--backend", "pinned_test", "--backend", "channels_last", *TINY, "--batch-sizes", "1,2",
               "--devices", "all", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert sorted((r["backend"], r["batch_size"]) for r in rows) == [
        ("channels_last", "1"), ("channels_last", "2"), ("pinned_test", "1"), ("pinned_test", "2")]
    assert {r["status"] for r in rows} == {"ok"} and {r["host"] for r in rows} == {socket.gethostname()}
    assert sorted({r["gpu_index"] for r in rows}) == ["0", "1"]  # both slots used
    share = max(1, (os.cpu_count() or 1) // 2)  # two slots: each row gets half the cores, not all of them
    for row in rows:
        if row["backend"] == "pinned_test":
            assert f"CUDA_VISIBLE_DEVICES={row['gpu_index']}" in row["notes"], row["notes"]
            assert f"threads={share}" in row["notes"], row["notes"]
    spans = started_and_ended(tmp_path / "r", rows[0]["run_id"])
    # pinned_test shares no artifact between its batch sizes, so they are rows of their own: side by side
    one, two = spans[("pinned_test", "1")], spans[("pinned_test", "2")]
    assert one[0] < two[1] and two[0] < one[1], spans  # they overlapped: in parallel


def test_one_row_at_a_time_without_devices_in_plan_order(tmp_path):
    proc = run(tmp_path, "--backend", "channels_last", "--backend", "baseline", *TINY, "--batch-sizes", "1,2")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert [(r["backend"], r["batch_size"]) for r in rows] == [
        ("channels_last", "1"), ("channels_last", "2"), ("baseline", "1"), ("baseline", "2")]
    spans = started_and_ended(tmp_path / "r", rows[0]["run_id"])
    ordered = [spans[(r["backend"], r["batch_size"])] for r in rows]
    assert all(before[1] <= after[0] + 1.0 for before, after in zip(ordered, ordered[1:]))  # one after another


def test_a_row_that_times_out_in_one_slot_leaves_the_other_slot_running(tmp_path, with_testplugins):
    env = {**with_testplugins, **TWO_GPUS, "DENSEBENCH_PLUGINS": "hang_test"}
    proc = run(tmp_path, "--backend", "hang_test", "--backend", "baseline", *TINY, "--devices", "0,1",
               "--timeout", "60", env=env)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    rows = {r["backend"]: r for r in read_rows(tmp_path / "r" / "benchmark_results.csv")}
    assert rows["baseline"]["status"] == "ok", rows["baseline"]["reason"]
    assert rows["hang_test"]["status"] == "timeout"
    assert "no result after 60 s (--timeout) while preparing" in rows["hang_test"]["reason"]
    assert {rows["baseline"]["gpu_index"], rows["hang_test"]["gpu_index"]} == {"0", "1"}


def test_ctrl_c_with_rows_on_two_gpus_keeps_completed_rows_and_kills_every_child(tmp_path, testplugins_path):
    proc, child = start_hanging_run(tmp_path, testplugins_path, "baseline", extra=("--devices", "all"),
                                    env=TWO_GPUS)  # fmt: skip
    deadline = time.monotonic() + 120  # the baseline row finishes on the other GPU while the hang goes on
    csv_path = tmp_path / "r" / "benchmark_results.csv"
    while time.monotonic() < deadline and not (csv_path.exists() and read_rows(csv_path)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "completed rows are kept" in err
    rows = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert [(r["backend"], r["status"]) for r in rows] == [("baseline", "ok")]
    time.sleep(0.5)
    assert not pid_alive(child), "the hanging child outlived the interrupted run"


@pytest.mark.parametrize("args, env, message", [
    (["--devices", "all"], {}, "--devices needs CUDA GPUs, and the run's device is cpu (leave --devices out)"),
    (["--devices", "0,2"], TWO_GPUS, "--devices 0,2: GPU 2 does not exist (this machine has 2: 0-1)"),
    (["--devices", "1,1"], TWO_GPUS, "--devices 1,1 names a GPU twice"),
    (["--devices", "first"], TWO_GPUS, "--devices takes all or GPU indices like 0,1, not 'first'"),
    (["--launcher", "slurm"], {}, "unknown launcher 'slurm'; available: local"),
    (["--launcher-option", "local.workers=2"], {}, "launcher 'local' has no option 'workers'; its options: none"),
    (["--launcher-option", "local"], {}, "--launcher-option takes LAUNCHER.KEY=VALUE, not 'local'"),
])  # fmt: skip
def test_bad_devices_and_launchers_are_bad_input_before_any_worker(tmp_path, args, env, message):
    proc = run(tmp_path, "--backend", "baseline", *TINY, *args, env={**os.environ, **env})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [f"densebench: error: {message}"], proc.stderr
    assert not (tmp_path / "r").exists()


def test_chains_keep_a_recipes_batch_sizes_together_in_plan_order():
    from densebench_core.job import Job

    def job(backend, mode, bs):
        return Job(backend=backend, members=[backend], mode=mode, batch_size=bs, device="cpu", image_size=32)

    jobs = [job("a", "inference", 1), job("a", "inference", 2), job("b", "inference", 1), job("a", "training", 1)]
    assert [[(j.backend, j.mode, j.batch_size) for j in chain] for chain in launchers.chains(jobs)] == [
        [("a", "inference", 1), ("a", "inference", 2)], [("b", "inference", 1)], [("a", "training", 1)]]
    assert launchers.names()[0] == "local" and "each row a child process" in launchers.info("local").description


def test_rows_side_by_side_share_the_cores_unless_the_caller_chose_a_thread_count(monkeypatch):
    from densebench_core.local_launcher import cpu_share

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert cpu_share(2) == {"OMP_NUM_THREADS": "16"} and cpu_share(64) == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_share(2) == {}


def test_side_by_side_only_rows_sharing_an_artifact_stay_chained_and_slow_chains_start_first():
    from densebench_core.job import Job

    def job(backend, bs):
        return Job(backend=backend, members=[backend], mode="inference", batch_size=bs, device="cpu", image_size=32)

    jobs = [job("eager", 1), job("eager", 2), job("jit", 1), job("jit", 2), job("compile", 1), job("compile", 2)]
    got = launchers.chains(jobs, slow=lambda j: j.backend == "compile", keep=lambda j: j.backend == "jit")
    assert [[(j.backend, j.batch_size) for j in chain] for chain in got] == [
        [("compile", 1)], [("compile", 2)], [("eager", 1)], [("eager", 2)], [("jit", 1), ("jit", 2)]]
