"""Shared fixtures: the misbehaving test plugins, installed for real with pip into a private folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from densebench_core.testing import read_rows, run_densebench

FIXTURES = Path(__file__).parent / "fixtures"

#: small, fast measurement settings for CPU tests
TINY = ["--device", "cpu", "--batch-sizes", "1", "--image-size", "32", "--warmup", "1",
        "--min-iters", "3", "--min-time", "0", "--eval-images", "8", "--no-profile"]  # fmt: skip


def _pip_install_fixture(name: str, tmp_path_factory) -> Path:
    """``pip install --target`` of tests/fixtures/NAME: on PYTHONPATH means installed."""
    target = tmp_path_factory.mktemp(f"{name}-site")
    source = tmp_path_factory.mktemp(f"{name}-build") / name
    subprocess.run(["cp", "-r", str(FIXTURES / name), str(source)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def _on_pythonpath(*paths: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (*map(str, paths), os.environ.get("PYTHONPATH", "")) if p)}


@pytest.fixture(scope="session")
def testplugins_path(tmp_path_factory) -> Path:
    """The misbehaving backends (hangs, crashes, wrong answers), installed."""
    return _pip_install_fixture("testplugins", tmp_path_factory)


@pytest.fixture(scope="session")
def apiplugins_path(tmp_path_factory) -> Path:
    """The backends that misuse the plugin API one way each (tests/fixtures/apiplugins), installed."""
    return _pip_install_fixture("apiplugins", tmp_path_factory)


@pytest.fixture
def with_apiplugins(apiplugins_path):
    """Environment for a child process in which the API-misusing plugins are installed."""
    return _on_pythonpath(apiplugins_path)


@pytest.fixture
def with_testplugins(testplugins_path):
    """Environment for a child process in which the test plugins are installed."""
    return _on_pythonpath(testplugins_path)


# -- real runs shared by the tests that only read what they wrote (a test that adds to a folder works on a copy)
@pytest.fixture(scope="session")
def quick_all_run(tmp_path_factory):
    """The core's acceptance run, ``densebench run --all --device cpu --quick``, on the built-in backends
    (DENSEBENCH_PLUGINS=""): (process, its rows as read right after it, folder holding R (--output-dir) and L
    (--log-dir)). --quick profiles every row: tests/test_tensorboard.py reads its scalars and profiler traces."""
    out = tmp_path_factory.mktemp("quick")
    proc = run_densebench("run", "--all", "--device", "cpu", "--quick", "--output-dir", str(out / "R"),
                          "--log-dir", str(out / "L"), env={"DENSEBENCH_PLUGINS": ""})  # fmt: skip
    csv_path = out / "R" / "benchmark_results.csv"
    return proc, read_rows(csv_path) if csv_path.exists() else [], out


@pytest.fixture(scope="session")
def training_run(tmp_path_factory):
    """fp16 then baseline in training mode at batch size 2, 32 px: fp16 does not train (a skipped row), baseline
    takes real optimizer steps (an ok row). (process, results dir, log dir)."""
    out = tmp_path_factory.mktemp("training")
    proc = run_densebench("run", "--backend", "fp16", "--backend", "baseline", "--mode", "training",
                          "--device", "cpu", "--batch-sizes", "2", "--image-size", "32", "--warmup", "1",
                          "--min-iters", "3", "--min-time", "0", "--no-profile", "--no-export",
                          "--output-dir", str(out / "results"), "--log-dir", str(out / "logs"),
                          timeout=600)  # fmt: skip
    return proc, out / "results", out / "logs"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_hanging_run(tmp_path, testplugins_path, *backends, extra=(), env=None):
    """``densebench run`` of ``backends`` ending with the hanging test backend, once that backend's worker hangs:
    (the densebench process, the hanging worker's pid). ``extra``: more arguments; ``env``: more variables."""
    pidfile = tmp_path / "hang.pid"
    env = {**os.environ, "PYTHONPATH": str(testplugins_path), "DENSEBENCH_PLUGINS": "hang_test",
           "DENSEBENCH_TEST_PIDFILE": str(pidfile), **(env or {})}
    args = [a for backend in (*backends, "hang_test") for a in ("--backend", backend)]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from densebench_core.cli import main; main()", "run", *args, *TINY, *extra,
         "--timeout", "600", "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: Ctrl-C's signal handled (a shell's background job would inherit it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not pidfile.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert pidfile.exists(), "the hanging backend never started"
    return proc, int(pidfile.read_text().split()[0])
