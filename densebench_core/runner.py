"""Process isolation: each job runs in a fresh child process with time limits.

A crash of the child (even ``abort()``), a hang, or a result file that never appears becomes a ``failed`` or
``timeout`` row with its reason; the parent goes on with the next job. Time limits: ``job.timeout`` for the
whole child, and ``job.phase_timeout`` for each phase after the measurement (accuracy check, export, profile).
Once the worker has published its measurement, a phase that runs out of time or crashes the process costs that
phase only: the row keeps its numbers and the phase goes to ``notes``. Before killing a child that ran out of
time, the parent asks it for its Python stacks (SIGUSR1, :mod:`faulthandler`), so the log shows where it hung.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from densebench_core import distributed
from densebench_core.job import Job
from densebench_core.worker import AFTER_MEASUREMENT, ARTIFACT_KEYS

#: how often the parent looks at a running child's phase: often enough for a live display (>= 1/s)
POLL_S = 0.25
#: how long a child that ran out of time gets to write its stacks to the log before it is killed
STACK_DUMP_S = 1.0


class _OutOfTime(Exception):
    def __init__(self, phase: str, what: str) -> None:
        super().__init__(phase, what)
        self.phase, self.what = phase, what


def _stderr_tail(log_path: Path, lines: int = 3) -> str:
    try:
        text = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    useful = [line.strip() for line in text if line.strip()][-lines:]
    return " | ".join(useful)[-400:]


def _kill_group(proc: subprocess.Popen, dump_stacks: bool = False) -> None:
    try:
        if dump_stacks:
            os.kill(proc.pid, signal.SIGUSR1)
            try:
                proc.wait(timeout=STACK_DUMP_S)
            except subprocess.TimeoutExpired:
                pass
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


class Cancelled(Exception):
    """The launcher cancelled the run (Ctrl-C in the parent, seen by another thread): the child was killed."""


def _wait(proc: subprocess.Popen, job: Job, phase_path: Path, on_wait: Callable[[str, float], None] | None,
          cancel: threading.Event | None) -> int:
    """``proc.wait()`` in short polls within the job's time limits, telling ``on_wait(phase, elapsed s)``."""
    started = time.monotonic()
    phase, phase_started = "starting", started
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled(job.slug)
        now = time.monotonic()
        if now - started >= job.timeout:
            raise _OutOfTime(phase, f"no result after {job.timeout:g} s (--timeout) while {phase}")
        if phase in AFTER_MEASUREMENT and now - phase_started >= job.phase_timeout:
            raise _OutOfTime(phase, f"{phase} did not finish within {job.phase_timeout:g} s (--phase-timeout)")
        try:
            return proc.wait(timeout=max(0.0, min(POLL_S, started + job.timeout - now)))
        except subprocess.TimeoutExpired:
            latest = _read_phase(phase_path, phase)
            if latest != phase:
                phase, phase_started = latest, time.monotonic()
            if on_wait is not None:
                on_wait(phase, time.monotonic() - started)


def run_isolated(job: Job, work_dir: Path, on_wait: Callable[[str, float], None] | None = None,
                 env: dict[str, str] | None = None, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run ``job`` in a child process; always returns a result dict with at least status and reason.

    ``on_wait(phase, elapsed_s)``, if given, is called about every :data:`POLL_S` seconds while the child runs,
    with the phase the worker last wrote (``"starting"`` before it wrote any). ``log`` in the result is the
    worker's log file. ``env``: variables to set for the child (a launcher pins its GPU with
    ``CUDA_VISIBLE_DEVICES``). ``cancel``: once set, the child is killed and :class:`Cancelled` raised (a launcher
    running rows in other threads, where Ctrl-C does not arrive).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    job_path = work_dir / f"{job.slug}.job.json"
    result_path = work_dir / f"{job.slug}.result.json"
    log_path = work_dir / f"{job.slug}.log"
    phase_path = result_path.with_suffix(".phase")
    for stale in (result_path, phase_path):
        stale.unlink(missing_ok=True)
    job_path.write_text(job.to_json())
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    started = time.monotonic()
    out_of_time = None
    with open(log_path, "wb") as log:
        # a session of its own: Ctrl-C at the terminal reaches only the parent, which then kills the group
        command = [sys.executable, "-m", "densebench_core.worker", str(job_path), str(result_path)]
        if job.nproc > 1:
            command = distributed.command(str(job_path), str(result_path), job.nproc)
        proc = subprocess.Popen(
            command,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            returncode = _wait(proc, job, phase_path, on_wait, cancel)
        except _OutOfTime as exc:
            _kill_group(proc, dump_stacks=True)
            out_of_time, returncode = exc, None
        except BaseException:  # KeyboardInterrupt / SIGTERM in the parent: take the child down with us
            _kill_group(proc)
            raise
    result = _read_result(result_path)
    phase = _read_phase(phase_path, "starting")
    if result is not None and "pending" in result:  # measured; a later phase did not finish
        pending = result.pop("pending")
        if out_of_time is not None:
            note = f"{out_of_time.what}; process killed (its stacks are in the worker log)"
        else:
            note = f"{pending} did not finish: worker process {_how(returncode)} (see the worker log)"
        result["notes"] = [*result.get("notes", []), note]
        if pending == "exporting":
            for key in ARTIFACT_KEYS:
                result.pop(key, None)
    elif out_of_time is not None:
        result = {"status": "timeout", "reason": f"{out_of_time.what}; process killed"}
    elif result is None:
        tail = _stderr_tail(log_path)
        result = {"status": "failed", "reason": f"worker process {_how(returncode)} while {phase}"
                  + (f": {tail}" if tail else "")}  # fmt: skip
    elif result.get("status") == "failed" and result.get("phase"):
        result["reason"] = f"{result['reason']} (while {result.pop('phase')})"
    result.update(wall_s=time.monotonic() - started, log=str(log_path))
    return result


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _how(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"
