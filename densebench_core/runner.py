"""Process isolation: each job runs in a fresh child process with a timeout.

A crash of the child (even ``abort()``), a hang, or a result file that never appears becomes a ``failed`` or
``timeout`` row with its reason; the parent goes on with the next job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: how often the parent looks at a running child's phase: often enough for a live display (>= 1/s)
POLL_S = 0.25


@dataclass
class Job:
    """One measurement to run: a backend or recipe at one mode and batch size."""

    backend: str
    members: list[str]
    mode: str
    batch_size: int
    device: str
    image_size: int
    weights: str
    warmup: int
    min_iters: int
    min_time: float
    timeout: float
    max_time: float | None = None
    ci_target: float | None = None
    eval_images: int = 256
    seed: int = 0
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    export: bool = False
    models_dir: str | None = None
    profile_dir: str | None = None
    #: where workers of one run share what they compute once (the stand-in weights)
    cache_dir: str | None = None

    @property
    def slug(self) -> str:
        return f"{self.backend}_{self.mode}_bs{self.batch_size}".replace("+", "-")

    def as_spec(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _stderr_tail(log_path: Path, lines: int = 3) -> str:
    try:
        text = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    useful = [line.strip() for line in text if line.strip()][-lines:]
    return " | ".join(useful)[-400:]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _read_phase(phase_path: Path, last: str) -> str:
    """The child's phase file; ``last`` while it is absent or caught mid-write (the worker truncates, then writes)."""
    try:
        return phase_path.read_text().strip() or last
    except OSError:
        return last


def _wait(proc: subprocess.Popen, timeout: float, started: float, phase_path: Path,
          on_wait: Callable[[str, float], None] | None) -> int:
    """``proc.wait(timeout)`` in short polls, telling ``on_wait(phase, elapsed seconds)`` after each."""
    phase = "starting"
    while True:
        left = started + timeout - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        try:
            return proc.wait(timeout=min(POLL_S, left))
        except subprocess.TimeoutExpired:
            if on_wait is not None:
                phase = _read_phase(phase_path, phase)
                on_wait(phase, time.monotonic() - started)


def run_job(job: Job, work_dir: Path, on_wait: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Run ``job`` in a child process; always returns a result dict with at least status and reason.

    ``on_wait(phase, elapsed_s)``, if given, is called about every :data:`POLL_S` seconds while the child runs,
    with the phase the worker last wrote (``"starting"`` before it wrote any).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    job_path = work_dir / f"{job.slug}.job.json"
    result_path = work_dir / f"{job.slug}.result.json"
    log_path = work_dir / f"{job.slug}.log"
    phase_path = result_path.with_suffix(".phase")
    for stale in (result_path, phase_path):
        stale.unlink(missing_ok=True)
    job_path.write_text(json.dumps(job.as_spec()))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        # a session of its own: Ctrl-C at the terminal reaches only the parent, which then kills the group
        proc = subprocess.Popen(
            [sys.executable, "-m", "densebench_core.worker", str(job_path), str(result_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        started = time.monotonic()
        try:
            returncode = _wait(proc, job.timeout, started, phase_path, on_wait)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            phase = phase_path.read_text() if phase_path.exists() else "starting"
            return {
                "status": "timeout",
                "reason": f"no result after {job.timeout:g} s (--timeout) while {phase}; process killed",
                "wall_s": time.monotonic() - started,
            }
        except BaseException:  # KeyboardInterrupt / SIGTERM in the parent: take the child down with us
            _kill_group(proc)
            raise
    if result_path.exists():
        try:
            result = json.loads(result_path.read_text())
            result["wall_s"] = time.monotonic() - started
            return result
        except ValueError:
            pass
    phase = phase_path.read_text() if phase_path.exists() else "starting"
    if returncode < 0:
        how = f"killed by signal {signal.Signals(-returncode).name}"
    else:
        how = f"exited with code {returncode}"
    tail = _stderr_tail(log_path)
    return {
        "status": "failed",
        "reason": f"worker process {how} while {phase}" + (f": {tail}" if tail else ""),
        "wall_s": time.monotonic() - started,
    }
