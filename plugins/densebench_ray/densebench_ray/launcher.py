"""The launcher ``ray``: every row a Ray task, on a local Ray instance or an existing cluster.

``make_launcher`` connects in the parent before any worker starts (a cluster that cannot be reached, or that has
no node able to run a row, is bad input: one line, exit 2). ``run`` submits the first row of every chain (a row,
or the batch sizes of a recipe whose one artifact serves them all, in order: ``launchers.chains``) as a task and,
each time a row finishes, yields it and submits that chain's next row, so rows stream back as they finish while a
chain's rows keep their order. Ray places each task
on a node with the row's resources (``num_gpus``, ``num_cpus``, ``accelerator_type``) and pins its GPU with
``CUDA_VISIBLE_DEVICES``; on the node the task runs the row with
:func:`~densebench_core.runner.run_isolated` (:mod:`densebench_ray.task`).

Faults: a task that Ray loses (its worker process or node died, it was killed for memory) is that row's
``failed`` with ``ray: ...`` as the reason, and the run goes on. Ctrl-C (``KeyboardInterrupt`` here) or the core
closing the generator cancels every outstanding task: first as ``ray.cancel`` does by default (a
KeyboardInterrupt in the task, which stops its row's processes), then by force for a task still running after a
grace period (its row process dies with the task's worker: :mod:`densebench_ray.row`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator

from densebench_core.errors import BadInput
from densebench_core.job import Job
from densebench_core.launchers import LauncherInfo, OnWait, Placement, hookimpl
from densebench_core.options import Option
from densebench_ray.task import MARK_SUFFIX, first_line, run_row

#: how long one ``ray.wait`` waits for a row before the loop looks at Ctrl-C and the running rows' phases
POLL_S = 0.25
#: how long cancelled tasks get to stop their rows before they are cancelled by force, and then to be gone
CANCEL_GRACE_S = 5.0
FORCE_GRACE_S = 5.0
#: what connecting to an existing cluster may take, unless ray.connect_timeout says otherwise
CONNECT_TIMEOUT_S = 30.0
#: the variables of this process that rows see on every node (on a remote node the driver's environment is not
#: the worker's): densebench's own settings, e.g. DENSEBENCH_PLUGINS
FORWARDED_PREFIX = "DENSEBENCH_"
#: Ray's own logging in this process: errors only (its session logs on each node keep everything)
RAY_LOGGING = logging.ERROR
#: the raylet's messages during the run, in the run's work folder
MESSAGES = "ray_messages.log"

OPTIONS = {
    "address": Option(
        "local",
        help="local: a Ray instance on this machine for the run; auto: the running cluster (RAY_ADDRESS, else "
        "the one `ray start` started here); HOST:PORT (the head's GCS) or ray://HOST:10001 (Ray Client)",
    ),
    "num_gpus": Option(None, type=float, auto=True, minimum=0,
                       help="GPUs each row reserves (auto: 1 with --device cuda, else 0)"),  # fmt: skip
    "num_cpus": Option(1.0, type=float, minimum=0, help="CPUs each row reserves"),
    "accelerator_type": Option(None, auto=True,
                               help="run rows only on nodes of this accelerator type, e.g. H100 (auto: any)"),  # fmt: skip
    "connect_timeout": Option(CONNECT_TIMEOUT_S, type=float, minimum=1,
                              help="seconds connecting to an existing cluster may take before the run is refused"),  # fmt: skip
}


def check_options(values: dict[str, Any]) -> str | None:
    gpus = values["num_gpus"]
    if gpus is not None and gpus > 1 and gpus != int(gpus):
        return f"num_gpus above 1 must be a whole number (Ray shares a GPU only below 1), not {gpus:g}"
    for key in ("num_gpus", "num_cpus"):
        value = values[key]
        if value and round(value * 10000) == 0:
            return f"{key} must be 0 or at least 0.0001 (Ray's resolution), not {value:g}"
    return None


class RayLauncher:
    def __init__(self, options: dict[str, Any], placement: Placement) -> None:
        self.placement = placement
        self.address = options["address"]
        self.num_cpus = options["num_cpus"]
        #: ray.num_gpus as the user gave it (None: auto), and the GPUs of a row of one process
        self.gpus_given = options["num_gpus"]
        self.num_gpus = options["num_gpus"] if options["num_gpus"] is not None else (
            1.0 if placement.device == "cuda" else 0.0)
        self._nodes: list[dict] = []
        self.accelerator_type = options["accelerator_type"]
        self.connect_timeout = options["connect_timeout"]
        self.env = {key: value for key, value in os.environ.items() if key.startswith(FORWARDED_PREFIX)}
        self._outstanding: dict[Any, tuple[Job, int, float]] = {}
        #: whether this launcher connected (and so lets go of Ray when the run ends)
        self._owner = True
        #: where the raylet's messages go while rows run (see _divert_raylet_messages)
        self._messages: Path | None = None

    # -- connecting, in the parent, before any worker starts -------------------------------------------------

    def connect(self) -> None:
        import ray

        if ray.is_initialized():  # connected already (a caller of this API): theirs to shut down
            self._owner = False
        else:
            if self.address == "local":
                try:
                    ray.init(address="local", include_dashboard=False, log_to_driver=False,
                             logging_level=RAY_LOGGING)  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - Ray's many ways to fail to start: one line, exit 2
                    raise BadInput(f"ray: could not start a local Ray instance: {_describe(exc)}") from None
            else:
                self._probe()
                try:
                    ray.init(address=self.address, log_to_driver=False, logging_level=RAY_LOGGING)
                except Exception as exc:  # noqa: BLE001
                    raise BadInput(f"ray.address={self.address}: cannot connect to the Ray cluster: "
                                   f"{_describe(exc)}") from None  # fmt: skip
            atexit.register(self.close)  # after ray.init's own: runs before Ray shuts down
        self._nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive", True)]
        problem = self._no_room(self.num_gpus)
        if problem:
            raise BadInput(f"ray: {problem}")
        self._divert_raylet_messages()
        self._task = ray.remote(run_row)
        self._task_options = dict(
            num_cpus=self.num_cpus, accelerator_type=self.accelerator_type,
            max_retries=0,  # a row that died is a failed row: measuring it again elsewhere would hide that
        )  # fmt: skip

    def _divert_raylet_messages(self) -> None:
        """Ray's driver prints what the raylet reports (a worker died, ...) to stdout, a paragraph each, between
        the progress lines; each such failure is already the reason of its row. While rows run, they go to
        ``ray_messages.log`` in the run's work folder instead (elsewhere, and where that cannot be written, Ray
        prints them as it does). Ray's private printer is wrapped only where it is found as expected."""
        try:
            from ray._private import worker as ray_worker
        except ImportError:
            return
        printer = getattr(ray_worker, "print_to_stdstream", None)
        if printer is None:
            return
        if getattr(printer, "densebench_launcher", None) is not None:  # wrapped already: now for this launcher
            printer.densebench_launcher = self
            return

        def divert(data, *args, **kwargs):
            path = divert.densebench_launcher._messages
            if path is not None and isinstance(data, dict) and data.get("pid") == "raylet":
                try:
                    with open(path, "a") as handle:
                        handle.writelines(f"{time.strftime('%H:%M:%S')} {line}\n" for line in data.get("lines", []))
                    return None
                except OSError:
                    pass
            return printer(data, *args, **kwargs)

        divert.densebench_launcher = self
        ray_worker.print_to_stdstream = divert

    def _probe(self) -> None:
        """Refuse an address that does not answer, within ``connect_timeout``: ``ray.init`` itself retries an
        unreachable or wrong address for minutes. First a plain TCP connection, then a connection by Ray in a
        child process that is killed when its time is up."""
        where = f"ray.address={self.address}"
        host, port = _host_port(self.address)
        if host is not None:
            try:
                socket.create_connection((host, port), timeout=min(self.connect_timeout, 10.0)).close()
            except OSError as exc:
                raise BadInput(f"{where}: cannot reach the Ray cluster: {host}:{port}: "
                               f"{exc.strerror or type(exc).__name__}") from None  # fmt: skip
        probe = ("import logging, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, "
                 f"logging_level={RAY_LOGGING}); ray.shutdown()")  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-c", probe, self.address], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # fmt: skip
        try:
            _, err = proc.communicate(timeout=self.connect_timeout)
        except BaseException as exc:  # out of time, or Ctrl-C: the probe goes
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise BadInput(f"{where}: no Ray cluster answered within {self.connect_timeout:g} s "
                               "(ray.connect_timeout)") from None  # fmt: skip
            raise
        if proc.returncode != 0:
            raise BadInput(f"{where}: cannot connect to the Ray cluster: {_why_not(err, proc.returncode)}")

    def _gpus(self, job: Job) -> float:
        """The GPUs ``job`` reserves: ``ray.num_gpus`` as given; by default one per process of the row on CUDA
        (``--nproc-per-node``), none on the CPU."""
        if self.gpus_given is not None:
            return self.gpus_given
        return float(max(1, getattr(job, "nproc", 1))) if self.placement.device == "cuda" else 0.0

    def _no_room(self, gpus: float) -> str | None:
        """Why no node alive when the run started can take a row of ``gpus`` GPUs (Ray would leave it pending for
        ever), or None."""
        need = {"CPU": self.num_cpus, "GPU": gpus}
        if self.accelerator_type:
            need[f"accelerator_type:{self.accelerator_type}"] = 0.001
        if any(all(res.get(key, 0) >= amount for key, amount in need.items() if amount) for res in self._nodes):
            return None
        asked = f"num_cpus={self.num_cpus:g}, num_gpus={gpus:g}" + (
            f", accelerator_type={self.accelerator_type}" if self.accelerator_type else "")
        have = "; ".join(sorted({_node_words(res) for res in self._nodes})) or "no node alive"
        return f"no node of the Ray cluster can run a row ({asked}); its nodes have: {have}"

    # -- running -----------------------------------------------------------------------------------------------

    def run(self, chains: list[list[Job]], work_dir: Path, on_wait: OnWait | None) -> Iterator[tuple[Job, dict]]:
        import ray

        work_dir = Path(work_dir).resolve()  # the task's working folder is not ours
        self._messages = work_dir / MESSAGES
        todo = [deque(chain) for chain in chains if chain]
        running = self._outstanding
        started: dict[str, float] = {}
        decided: deque[tuple[Job, dict]] = deque()  # rows no node can take: failed without running

        def submit(index: int) -> None:
            """The chain's next row that a node can take, as a task."""
            while todo[index]:
                job = todo[index].popleft()
                gpus = self._gpus(job)
                problem = self._no_room(gpus)
                if problem is None:
                    ref = self._task.options(**self._task_options, num_gpus=gpus).remote(
                        _for_node(job), str(work_dir), self.env, job.slug, self.placement.device)
                    running[ref] = (job, index, time.monotonic())
                    return
                decided.append((job, {"status": "failed", "reason": f"ray: {problem}", "host": None,
                                      "gpu_index": None}))  # fmt: skip

        try:
            for index in range(len(todo)):
                submit(index)
            while running or decided:
                while decided:
                    yield decided.popleft()
                if not running:
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in done:
                    job, index, submitted = running.pop(ref)
                    result = self._collect(ref, job, work_dir, started.get(job.slug, submitted))
                    if todo[index]:  # the chain's next row, before the caller writes this one
                        submit(index)
                    yield job, result
                if on_wait is not None:
                    self._tell(running, work_dir, started, on_wait)
        finally:  # finished, Ctrl-C, or the caller closed us: nothing outlives the run
            self.cancel()
            self.close()

    def _collect(self, ref, job: Job, work_dir: Path, started: float) -> dict:
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayError as exc:
            where = _read_mark(work_dir, job.slug)
            result = {"status": "failed", "reason": f"ray: {_lost(exc, where.get('host'))}",
                      "host": where.get("host"), "gpu_index": where.get("gpu_index"),
                      "wall_s": time.monotonic() - started}  # fmt: skip
            log = work_dir / f"{job.slug}.log"
            if log.exists():
                result["log"] = str(log)
            return result

    def _tell(self, running, work_dir: Path, started: dict[str, float], on_wait: OnWait) -> None:
        """The running rows' phases, from the files their workers write (on this machine's filesystem: a local
        instance, or a shared one); a row still queued in Ray is not shown."""
        now = time.monotonic()
        for job, _, _ in list(running.values()):
            if job.slug not in started:
                if not (work_dir / f"{job.slug}{MARK_SUFFIX}").exists():
                    continue
                started[job.slug] = now
            try:
                phase = (work_dir / f"{job.slug}.result.phase").read_text().strip() or "starting"
            except OSError:
                phase = "starting"
            on_wait(job, phase, now - started[job.slug])

    def cancel(self) -> None:
        """Cancel every outstanding task: gently (the task stops its row), then by force what is left."""
        running = self._outstanding
        if not running:
            return
        import ray

        refs = list(running)
        running.clear()
        try:
            for ref in refs:
                ray.cancel(ref, force=False)
            _, left = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
            for ref in left:
                ray.cancel(ref, force=True)
            if left:
                ray.wait(left, num_returns=len(left), timeout=FORCE_GRACE_S)
        except Exception:  # noqa: BLE001 - Ray already gone (shut down at exit): its workers went with it
            pass

    def close(self) -> None:
        """Cancel what is left and let go of Ray (a local instance stops with it)."""
        import ray

        try:
            self.cancel()
            if self._owner and ray.is_initialized():
                ray.shutdown()
        except Exception:  # noqa: BLE001 - at exit, nothing left to tell anyone
            pass


def _for_node(job: Job) -> str:
    """``job`` as JSON, with the paths the core left relative to this process's folder made absolute."""
    changes: dict[str, Any] = {}
    if job.profile_dir:
        changes["profile_dir"] = str(Path(job.profile_dir).resolve())
    if job.weights not in ("random", "imagenet") and os.path.exists(job.weights):
        changes["weights"] = str(Path(job.weights).resolve())
    return job.replace(**changes).to_json() if changes else job.to_json()


def _read_mark(work_dir: Path, slug: str) -> dict:
    """Where a task ran, as it wrote on starting (readable here with a local instance or a shared filesystem)."""
    try:
        return json.loads((work_dir / f"{slug}{MARK_SUFFIX}").read_text())
    except (OSError, ValueError):
        return {}


def _lost(exc: BaseException, host: str | None) -> str:
    import ray.exceptions as rex

    on = f" on {host}" if host else ""
    if isinstance(exc, rex.TaskCancelledError):
        return "the task was cancelled"
    if isinstance(exc, rex.OutOfMemoryError):
        return f"the task{on} was killed by Ray's memory monitor (OutOfMemoryError)"
    if isinstance(exc, rex.WorkerCrashedError):
        return f"the Ray worker process running the row{on} died (WorkerCrashedError)"
    if isinstance(exc, (rex.NodeDiedError, rex.LocalRayletDiedError)):
        return f"the node running the row{on} died ({type(exc).__name__}: {first_line(str(exc))})"
    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None and not isinstance(cause, rex.RayTaskError):
            return f"the task{on} raised {type(cause).__name__}: {first_line(str(cause))}"
    return f"{type(exc).__name__}: {first_line(str(exc))}"


def _why_not(stderr: str, returncode: int) -> str:
    """The reason in a failed connection's stderr: its last exception line (Ray's C++ log lines left out)."""
    errors = [line.strip() for line in stderr.splitlines()
              if re.match(r"^[\w.]*(Error|Exception)\b[^ ]*: ", line.strip())]  # fmt: skip
    if any("AuthenticationError" in line or "InvalidAuthToken" in line for line in errors):
        return ("the cluster uses token authentication and this machine has not got its token (set RAY_AUTH_MODE="
                "token and RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH, as for Ray itself)")
    if errors:
        return errors[-1][:300]
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("[")]
    return (lines[-1] if lines else f"exited with code {returncode}")[:300]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(str(exc))}" if str(exc).strip() else type(exc).__name__


def _host_port(address: str) -> tuple[str | None, int]:
    """``ray://host:10001`` or ``host:6379`` -> (host, port); (None, 0) for ``auto`` and what is not host:port."""
    bare = address.split("://", 1)[1] if "://" in address else address
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        return None, 0
    return host.strip("[]"), int(port)


def _node_words(resources: dict) -> str:
    kinds = sorted(key.split(":", 1)[1] for key in resources if key.startswith("accelerator_type:"))
    return f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs" + (
        f" ({', '.join(kinds)})" if kinds else "")


@hookimpl
def launcher_info():
    return LauncherInfo(
        "each row a Ray task: on a local Ray instance or a cluster (ray.address), num_gpus GPUs per row",
        options=OPTIONS,
        check_options=check_options,
    )


@hookimpl
def make_launcher(options, placement):
    if placement.devices is not None:
        raise BadInput("--devices picks GPUs of this machine for the local launcher; with --launcher ray, Ray "
                       "places the rows (ray.num_gpus GPUs each)")  # fmt: skip
    if options["num_gpus"] == 0 and placement.device == "cuda":
        raise BadInput("--launcher-option ray.num_gpus=0 with --device cuda: the rows would see no GPU")
    launcher = RayLauncher(options, placement)
    launcher.connect()
    return launcher
