"""What a Ray task does for one row, on its node: run the row in a row process (:mod:`densebench_ray.row`),
which runs it with :func:`~densebench_core.runner.run_isolated`, and return its result with where it ran.

Why a process between the task and the row's worker: the worker runs in a session of its own (so that Ctrl-C at
a terminal reaches only the process that started it), and when the Ray worker running the task dies
(force-cancelled, killed for memory, its node's raylet gone) Ray kills that worker's children and process
group, which the row's worker is not part of. The row process (detached, see its module) stops the row when the
task goes: on a gentle ``ray.cancel`` (a KeyboardInterrupt in this task) the task closes the row process's stdin
and waits for it to stop; when the task's process dies, the pipe closes by itself.

This module is imported on the node (densebench-ray must be installed there) and imports no Ray at the top.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: a file ``<slug>.ray.json`` in the work folder: where the task runs, written as it starts (the parent reads it
#: for the progress display and, when the task is lost, for the row's host)
MARK_SUFFIX = ".ray.json"
POLL_S = 0.25
#: how long the row process gets to stop its worker once asked
STOP_GRACE_S = 10.0


def first_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else "")[:limit]


def gpu_index(device: str) -> int | None:
    """The GPU Ray gave this task (the first, for a row with several); None on the CPU."""
    if device != "cuda":
        return None
    ids: list = []
    try:
        import ray

        ids = list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside a Ray worker: CUDA_VISIBLE_DEVICES says it
        pass
    if not ids:
        ids = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not ids:
        return None
    first = str(ids[0])
    return int(first) if first.isdigit() else None


def run_row(job_json: str, work_dir: str, env: dict[str, str], slug: str, device: str) -> dict:
    """The Ray task: the row's result dict, with ``host`` and ``gpu_index``."""
    where = {"host": socket.gethostname(), "gpu_index": gpu_index(device)}
    work = Path(work_dir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        (work / f"{slug}{MARK_SUFFIX}").write_text(json.dumps({**where, "pid": os.getpid()}))
        log = open(work / f"{slug}.ray.log", "wb")  # the row process's own complaints, if any
    except OSError as exc:
        return {"status": "failed", **where,
                "reason": f"ray: node {where['host']} cannot write the run's work folder {work_dir} "
                          f"({exc.strerror or exc}); a cluster of several machines needs the results folder "
                          "on a filesystem they share, at the same path"}  # fmt: skip
    with log:
        proc = subprocess.Popen([sys.executable, "-m", "densebench_ray.row", str(os.getpid()), str(work)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)  # fmt: skip
    out = _Output(proc.stdout)
    try:
        # stdin stays open: closing it (or this process ending) stops the row
        proc.stdin.write((json.dumps({"job": job_json, "env": env}) + "\n").encode())
        proc.stdin.flush()
        out.read_to_end()
    except BaseException:  # ray.cancel: a KeyboardInterrupt here. The row process stops the row's worker
        _stop(proc, out)
        raise
    finally:
        _reap(proc)
    result = out.result()
    if result is None:
        tail = _tail(work / f"{slug}.ray.log")
        result = {"status": "failed",
                  "reason": f"ray: the row process on {where['host']} ended without a result"
                            + (f": {tail}" if tail else "")}  # fmt: skip
    result.update(where)
    return result


class _Output:
    """The row process's stdout, read in short waits so that a cancel (KeyboardInterrupt) is seen at once."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.data = b""
        self.ended = False

    def read_for(self, seconds: float | None) -> bool:
        """Read until end of file (True) or for ``seconds`` (None: no limit)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not self.ended:
            wait = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if wait <= 0:
                return False
            ready, _, _ = select.select([self.stream], [], [], wait)
            if ready:
                chunk = os.read(self.stream.fileno(), 65536)
                self.data += chunk
                self.ended = not chunk
        return True

    def read_to_end(self) -> None:
        self.read_for(None)

    def pid(self) -> int | None:
        first = self.data.split(b"\n", 1)[0].split()
        return int(first[1]) if len(first) == 2 and first[0] == b"pid" and first[1].isdigit() else None

    def result(self) -> dict | None:
        lines = [line for line in self.data.decode(errors="replace").splitlines() if line.strip()]
        if len(lines) < 2:
            return None
        try:
            result = json.loads(lines[-1])
        except ValueError:
            return None
        return result if isinstance(result, dict) else None


def _stop(proc: subprocess.Popen, out: _Output) -> None:
    """Stop the row: end of file on its stdin, then SIGTERM, then SIGKILL, each given time to work."""
    try:
        proc.stdin.close()
    except OSError:
        pass
    if out.read_for(STOP_GRACE_S):
        return
    pid = out.pid()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if out.read_for(STOP_GRACE_S):
            return


def _reap(proc: subprocess.Popen) -> None:
    """The first row process exits as soon as it has handed the row on: collect it."""
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())[-400:]
