"""The row process, started by the Ray task (:mod:`densebench_ray.task`) on the node:
``python -m densebench_ray.row TASK_PID WORK_DIR``, the request ``{"job": JOB_JSON, "env": {...}}`` as one line
on stdin; on stdout ``pid N`` (the process that runs the row), then the result dict as one JSON line.

Why it detaches: when Ray's worker process ends for good (a force cancel, a kill, the memory monitor), Ray kills
that worker's children and process group with SIGKILL. The row's worker, started by
:func:`~densebench_core.runner.run_isolated` in a session of its own, is neither, and would live on (a hung
row for ever, or a measurement competing with the next rows). So the process started by the task forks: the
first exits at once, the second (in a session of its own, no child of Ray's worker) runs the row and stops it
when the task goes: its stdin (the task's pipe) reaching end of file, or the task's process gone. Stopping is a
KeyboardInterrupt here, on which run_isolated kills the row's worker before this process exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

#: how often the watch looks at the task's process
WATCH_S = 0.5
#: exit status after a stop
STOPPED = 128 + signal.SIGTERM


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(task_pid: int) -> None:
    """SIGTERM to this process once the task lets go of stdin (end of file) or its process is gone."""

    def stdin_closed() -> None:
        try:
            while sys.stdin.buffer.read1(65536):
                pass
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    def task_gone() -> None:
        while _alive(task_pid):
            time.sleep(WATCH_S)
        os.kill(os.getpid(), signal.SIGTERM)

    for target in (stdin_closed, task_gone):
        threading.Thread(target=target, name=f"densebench-ray-{target.__name__}", daemon=True).start()


def detach() -> None:
    """Fork; the first process says the second's pid and exits, the second goes on in a session of its own."""
    child = os.fork()
    if child:
        sys.stdout.write(f"pid {child}\n")
        sys.stdout.flush()
        os._exit(0)
    os.setsid()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    task_pid, work_dir = int(argv[0]), Path(argv[1])
    request = json.loads(sys.stdin.readline())
    detach()
    # Ray's processes block SIGINT (and may block more): the row's worker, started from here, inherits the mask
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        watch(task_pid)
        from densebench_core.job import Job
        from densebench_core.runner import run_isolated

        result = run_isolated(Job.from_json(request["job"]), work_dir, env=request.get("env") or None)
        line = json.dumps(result, default=str) + "\n"
    except KeyboardInterrupt:  # stopped: run_isolated has killed the row's worker
        return STOPPED
    try:
        sys.stdout.write(line)
        sys.stdout.flush()
    except (OSError, ValueError):  # the task went just now: nobody to tell
        return STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
