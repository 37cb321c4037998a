"""Fixtures for the ray launcher's tests: a real Ray on this machine's CPU, driven through the real CLI.

Every run gets token authentication with a token of the test session's own (``RAY_AUTH_MODE=token``,
``RAY_AUTH_TOKEN``), so that no test writes ``~/.ray/auth_token``, and no usage statistics. The misbehaving
backends of the core's tests (tests/fixtures/testplugins) are installed with ``pip install --target`` and put
on PYTHONPATH, which the local Ray instance a run starts, and the cluster below, hand to their workers.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from densebench_core.testing import run_densebench

REPO = Path(__file__).resolve().parents[3]
PLUGIN = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

#: small, fast measurement settings for CPU tests (as the core's tests/conftest.py)
TINY = ["--device", "cpu", "--batch-sizes", "1", "--image-size", "32", "--warmup", "1",
        "--min-iters", "3", "--min-time", "0", "--eval-images", "8", "--no-profile"]  # fmt: skip


def _pip_target(source: Path, tmp_path_factory, name: str) -> Path:
    target = tmp_path_factory.mktemp(f"{name}-site")
    build = tmp_path_factory.mktemp(f"{name}-build") / name
    subprocess.run(["cp", "-r", str(source), str(build)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(build)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> list[Path]:
    """Folders that, on the path, install the test plugins (and densebench-ray, where this Python has it not)."""
    paths = [_pip_target(FIXTURES / "testplugins", tmp_path_factory, "testplugins")]
    launchers = {ep.name for ep in importlib.metadata.entry_points(group="densebench.launchers")}
    if "ray" not in launchers:
        paths.append(_pip_target(PLUGIN, tmp_path_factory, "densebench_ray"))
    return paths


@pytest.fixture(scope="session")
def ray_env(installed) -> dict[str, str]:
    """Environment for a ``densebench run --launcher ray``: ``installed`` on the path, Ray's token and settings."""
    paths = installed
    pythonpath = os.pathsep.join([*map(str, paths), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": pythonpath, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0", "DENSEBENCH_PLUGINS": "abort_test,hang_test"}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(ray_env, tmp_path_factory):
    """A Ray cluster started apart from any run (``ray start --head``): its GCS address. Its processes go at the
    end (a process group of its own, killed; not ``ray stop``, which would stop every Ray on the machine)."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray-cluster") / "ray_start.log"
    ray = Path(sys.executable).with_name("ray")
    command = [str(ray) if ray.exists() else sys.executable, *([] if ray.exists() else ["-m", "ray.scripts.scripts"]),
               "start", "--head", "--port", str(port), "--ray-client-server-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()), "--num-cpus", "2", "--include-dashboard=false",
               "--disable-usage-stats", "--block"]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env={**os.environ, **ray_env}, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.3)
        yield address
    finally:
        members = _group(proc.pid)
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def _group(pgid: int) -> list[int]:
    """Processes of the process group ``pgid`` (from /proc), and their descendants."""
    table = process_table()
    members = {pid for pid, (_, group) in table.items() if group == pgid}
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in members} - members
        members |= more
        grew = bool(more)
    return sorted(members)


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(pid: int) -> list[int]:
    table = process_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return sorted(found)


def wait_until(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def run(tmp_path, *args, env=None, timeout=300):
    return run_densebench("run", *args, "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"),
                          env=env, timeout=timeout)  # fmt: skip


def start_hanging_run(tmp_path, env, *args):
    """``densebench run ARGS`` whose hang_test row hangs: (the densebench process, the hanging worker's pid)."""
    pidfile = tmp_path / "hang.pid"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from densebench_core.cli import main; main()", "run", *TINY, *args,
         "--timeout", "600", "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l")],
        env={**os.environ, **env, "DENSEBENCH_TEST_PIDFILE": str(pidfile)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: Ctrl-C's signal handled (a shell's background job would inherit it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not pidfile.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if not pidfile.exists():
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the hanging backend never started:\n{out}\n{err}")
    return proc, int(pidfile.read_text().split()[0])


def hanging_row(pidfile: Path, slug: str) -> int | None:
    """The pid, among the hanging workers in ``pidfile``, of the one running ``slug`` (its command line names the
    row's job file), or None while it has not started."""
    for pid in map(int, pidfile.read_text().split()):
        try:
            if f"{slug}.job.json".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def ray_worker_of(results_dir: Path, slug: str) -> int:
    """The pid of the Ray worker process that runs ``slug``'s task, as the task wrote it on starting."""
    marks = list(results_dir.glob(f"runs/*/work/{slug}.ray.json"))
    assert len(marks) == 1, marks
    return json.loads(marks[0].read_text())["pid"]
