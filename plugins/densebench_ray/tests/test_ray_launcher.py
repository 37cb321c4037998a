"""The ray launcher with a real Ray on this machine's CPU, through the real CLI: the same rows as the local
launcher, a crashing row, a Ray worker killed mid-row, Ctrl-C, an unreachable cluster and bad options.

This machine has no GPU: ``num_gpus`` is 0 here, and the GPU placement (``num_gpus=1``, ``CUDA_VISIBLE_DEVICES``
from Ray, ``gpu_index``) is not exercised (README.md says so).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from conftest import (
    TINY,
    descendants,
    hanging_row,
    parent_of,
    pid_alive,
    ray_worker_of,
    run,
    start_hanging_run,
    wait_until,
)

from densebench_core import launchers
from densebench_core.testing import read_rows

BACKENDS = ["--backend", "baseline", "--backend", "channels_last", "--backend", "abort_test"]


@pytest.fixture(scope="module")
def both(tmp_path_factory, ray_env):
    """The same run with the local launcher and with ray (a local Ray instance): (process, rows) for each."""
    runs = {}
    for launcher in ("local", "ray"):
        folder = tmp_path_factory.mktemp(launcher)
        started = time.monotonic()
        proc = run(folder, *BACKENDS, *TINY, "--batch-sizes", "1,2", "--launcher", launcher, env=ray_env)
        print(f"{launcher}: {time.monotonic() - started:.1f} s")
        runs[launcher] = proc, folder / "r" / "benchmark_results.csv"
    return runs


def test_ray_gives_the_rows_the_local_launcher_gives(both):
    (local, local_csv), (ray, ray_csv) = both["local"], both["ray"]
    assert local.returncode == ray.returncode == 1, ray.stderr  # abort_test failed in both
    assert ray.stderr == "", ray.stderr  # nothing from Ray on the user's stderr
    with open(local_csv) as a, open(ray_csv) as b:
        assert a.readline() == b.readline()  # the same columns in the same order
    local_rows, ray_rows = read_rows(local_csv), read_rows(ray_csv)

    def key(row):
        return row["backend"], row["mode"], row["batch_size"], row["status"]

    assert sorted(map(key, ray_rows)) == sorted(map(key, local_rows))
    assert len(ray_rows) == 6
    assert {r["host"] for r in ray_rows} == {socket.gethostname()}
    assert {r["gpu_index"] for r in ray_rows} == {""}  # the CPU: no GPU
    assert {r["world_size"] for r in ray_rows} == {"1"}
    for row in ray_rows:
        if row["status"] == "ok":
            assert float(row["throughput_ips"]) > 0 and row["accuracy_ok"] == "true", row


def test_a_row_whose_worker_crashes_is_failed_and_the_others_run(both):
    ray, ray_csv = both["ray"]
    rows = {(r["backend"], r["batch_size"]): r for r in read_rows(ray_csv)}
    for bs in ("1", "2"):
        crashed = rows[("abort_test", bs)]
        assert crashed["status"] == "failed"
        assert "worker process killed by signal SIGABRT" in crashed["reason"], crashed["reason"]
        assert "(worker log: runs/" in crashed["reason"]
        assert rows[("baseline", bs)]["status"] == rows[("channels_last", bs)]["status"] == "ok"


def test_a_ray_worker_killed_mid_row_fails_that_row_and_the_run_goes_on(tmp_path, ray_env, ray_cluster):
    """On a cluster started apart (ray.address=HOST:PORT): the test kills the Ray worker process running the
    hanging row, as a node losing it would; the row is failed naming Ray, the other rows run (hang_test's other batch
    size, a row of its own, hangs beside it), and the row's own worker process does not outlive its task."""
    proc, _ = start_hanging_run(tmp_path, ray_env, "--backend", "hang_test", "--backend", "baseline",
                                "--batch-sizes", "1,2", "--launcher", "ray",
                                "--launcher-option", f"ray.address={ray_cluster}")  # fmt: skip
    pidfile = tmp_path / "hang.pid"
    assert wait_until(lambda: hanging_row(pidfile, "hang_test_inference_bs1")), pidfile.read_text()
    hung = hanging_row(pidfile, "hang_test_inference_bs1")
    row_process = parent_of(hung)
    worker = ray_worker_of(tmp_path / "r", "hang_test_inference_bs1")
    assert row_process != worker and parent_of(row_process) != worker  # detached from the Ray worker
    os.kill(worker, signal.SIGKILL)
    csv_path = tmp_path / "r" / "benchmark_results.csv"
    work = next((tmp_path / "r" / "runs").glob("*/work"))
    try:
        # the other hang_test row hangs too (the pid file's other line), and the baseline rows end
        assert wait_until(lambda: len(pidfile.read_text().split()) == 2 and csv_path.exists()
                          and len(read_rows(csv_path)) == 3), pidfile.read_text()  # fmt: skip
        assert wait_until(lambda: not pid_alive(hung) and not pid_alive(row_process), 10), \
            "the row's processes outlived its killed Ray task"
        assert wait_until(lambda: (work / "ray_messages.log").exists(), 30)  # Ray's word on the dead worker
        rows = {(r["backend"], r["batch_size"]): r for r in read_rows(csv_path)}
        lost = rows[("hang_test", "1")]
        assert lost["status"] == "failed" and lost["reason"].startswith(
            f"ray: the Ray worker process running the row on {socket.gethostname()} died (WorkerCrashedError)"), lost
        assert lost["host"] == socket.gethostname()
        assert rows[("baseline", "1")]["status"] == rows[("baseline", "2")]["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)  # the second hang_test row: Ctrl-C ends the run
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "(raylet)" not in out + err and "A worker died" in (work / "ray_messages.log").read_text()
    (second,) = [pid for pid in map(int, pidfile.read_text().split()) if pid != hung]
    assert wait_until(lambda: not pid_alive(second), 10), "the second hanging row outlived the run"


def test_ctrl_c_cancels_outstanding_tasks_keeps_completed_rows_and_leaves_no_process(tmp_path, ray_env):
    proc, hung = start_hanging_run(tmp_path, ray_env, "--backend", "baseline", "--backend", "hang_test",
                                   "--launcher", "ray")  # fmt: skip
    csv_path = tmp_path / "r" / "benchmark_results.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (csv_path.exists() and read_rows(csv_path)):
        time.sleep(0.2)
    row_process = parent_of(hung)
    worker = ray_worker_of(tmp_path / "r", "hang_test_inference_bs1")
    ray_processes = descendants(proc.pid)  # the local Ray instance: GCS, raylet, workers
    assert worker in ray_processes and len(ray_processes) >= 3, ray_processes
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "completed rows are kept" in err
    assert [(r["backend"], r["status"]) for r in read_rows(csv_path)] == [("baseline", "ok")]
    processes = (hung, row_process, *ray_processes)
    wait_until(lambda: not any(map(pid_alive, processes)), 10)
    assert not [pid for pid in processes if pid_alive(pid)], "processes outlived the interrupted run"


class _Silent:
    """A TCP port that accepts connections and never answers (a wrong port: not Ray's)."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self.sock.close()


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "ray.address=127.0.0.1:1: cannot reach the Ray cluster: 127.0.0.1:1: Connection refused"),
    ("silent", "no Ray cluster answered within 3 s (ray.connect_timeout)"),
])  # fmt: skip
def test_an_unreachable_cluster_is_bad_input_in_one_line_and_nothing_is_written(tmp_path, ray_env, address,
                                                                                message):  # fmt: skip
    started = time.monotonic()
    with _Silent() as silent:
        address = silent if address == "silent" else address
        proc = run(tmp_path, "--backend", "baseline", *TINY, "--launcher", "ray", "--launcher-option",
                   f"ray.address={address}", "--launcher-option", "ray.connect_timeout=3", env=ray_env)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("densebench: error: "), proc.stderr
    assert message in lines[0]
    assert not (tmp_path / "r").exists()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("args, env, message", [
    (["ray.num_gpus=-1"], {}, "--launcher-option ray.num_gpus must be auto or a number >= 0, not '-1'"),
    (["ray.num_gpus=1.5"], {}, "--launcher-option ray: num_gpus above 1 must be a whole number (Ray shares a GPU "
                               "only below 1), not 1.5"),
    (["ray.num_cpus=many"], {}, "--launcher-option ray.num_cpus must be a number >= 0, not 'many'"),
    (["ray.gpus=1"], {}, "launcher 'ray' has no option 'gpus'; its options: accelerator_type, address, "
                         "connect_timeout, num_cpus, num_gpus"),
    (["ray.connect_timeout=0"], {}, "--launcher-option ray.connect_timeout must be a number >= 1, not '0'"),
    (["--devices", "all"], {"DENSEBENCH_TEST_DEVICES": "2"}, "--devices picks GPUs of this machine for the local "
                                                             "launcher; with --launcher ray, Ray places the rows"),
])  # fmt: skip
def test_bad_options_are_bad_input_before_ray_starts(tmp_path, ray_env, args, env, message):
    options = [a for arg in args for a in (["--launcher-option", arg] if "=" in arg else [arg])]
    proc = run(tmp_path, "--backend", "baseline", *TINY, "--launcher", "ray", *options, env={**ray_env, **env})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_run_no_node_can_take_is_bad_input(tmp_path, ray_env, ray_cluster):
    proc = run(tmp_path, "--backend", "baseline", *TINY, "--launcher", "ray", "--launcher-option",
               f"ray.address={ray_cluster}", "--launcher-option", "ray.accelerator_type=H200", env=ray_env)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [
        "densebench: error: ray: no node of the Ray cluster can run a row (num_cpus=1, num_gpus=0, "
        "accelerator_type=H200); its nodes have: 2 CPUs, 0 GPUs"], proc.stderr
    assert not (tmp_path / "r").exists()


def test_the_launcher_is_found_and_describes_its_options(installed, monkeypatch):
    for path in installed:
        monkeypatch.syspath_prepend(str(path))
    assert "ray" in launchers.names()
    info = launchers.info("ray")
    assert info.description.startswith("each row a Ray task")
    assert {key: option.schema()["default"] for key, option in info.options.items()} == {
        "address": "local", "num_gpus": "auto", "num_cpus": 1.0, "accelerator_type": "auto", "connect_timeout": 30.0}
    assert json.dumps({key: option.schema() for key, option in info.options.items()})  # what plugins --json shows


def test_closing_the_generator_cancels_its_tasks_and_running_rows_tell_their_phase(tmp_path, installed, ray_env,
                                                                                    monkeypatch):  # fmt: skip
    """In this process, as the core drives a launcher: rows stream back as they finish while ``on_wait`` hears
    the running rows' phases, and closing the generator (what the core does when it stops) cancels the rest."""
    from densebench_core.job import Job

    for key, value in {**ray_env, "DENSEBENCH_TEST_PIDFILE": str(tmp_path / "hang.pid")}.items():
        monkeypatch.setenv(key, value)
    for path in installed:
        monkeypatch.syspath_prepend(str(path))
    settings = dict(mode="inference", batch_size=1, device="cpu", image_size=32, warmup=1, min_iters=3,
                    eval_images=8, timeout=600)  # fmt: skip
    hang = Job(backend="hang_test", members=["hang_test"], **settings)
    baseline = Job(backend="baseline", members=["baseline"], **settings)
    heard = []
    launcher = launchers.make("ray", {}, launchers.Placement("cpu"))
    rows = launcher.run([[hang], [baseline]], tmp_path / "work", lambda job, phase, s: heard.append((job.slug, phase)))
    job, result = next(rows)
    assert job == baseline and result["status"] == "ok", result
    assert result["host"] == socket.gethostname() and result["gpu_index"] is None
    assert ("hang_test_inference_bs1", "preparing") in heard, heard
    hung = int((tmp_path / "hang.pid").read_text().split()[0])
    row_process = parent_of(hung)
    rows.close()
    assert wait_until(lambda: not pid_alive(hung) and not pid_alive(row_process), 10)
    import ray

    assert not ray.is_initialized()  # the local instance went with the run


def test_gpus_per_row_follow_the_rows_processes_and_a_row_no_node_can_take_is_named(installed, monkeypatch):
    """Without Ray: what a row reserves on CUDA (one GPU per process of a --nproc-per-node row, unless
    ray.num_gpus says), and the reason when no node has that."""
    for path in installed:
        monkeypatch.syspath_prepend(str(path))
    from densebench_ray.launcher import OPTIONS, RayLauncher

    from densebench_core.job import Job

    defaults = {key: option.default for key, option in OPTIONS.items()}
    one = Job(backend="baseline", members=["baseline"], mode="training", batch_size=8, device="cuda")
    two = one.replace(nproc=2)
    cuda = RayLauncher(defaults, launchers.Placement("cuda"))
    assert (cuda._gpus(one), cuda._gpus(two)) == (1.0, 2.0)
    assert RayLauncher({**defaults, "num_gpus": 0.5}, launchers.Placement("cuda"))._gpus(two) == 0.5
    assert RayLauncher(defaults, launchers.Placement("cpu"))._gpus(two) == 0.0
    cuda._nodes = [{"CPU": 16.0, "GPU": 1.0, "accelerator_type:H100": 1.0}, {"CPU": 8.0}]
    assert cuda._no_room(1.0) is None
    assert cuda._no_room(2.0) == ("no node of the Ray cluster can run a row (num_cpus=1, num_gpus=2); its nodes "
                                  "have: 16 CPUs, 1 GPUs (H100); 8 CPUs, 0 GPUs")  # fmt: skip
