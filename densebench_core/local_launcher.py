"""The built-in launcher ``local``: each row a child process of this one.

Without ``--devices`` one row runs at a time, in this thread, on the machine's default device. With
``--devices 0,1`` (or ``all``) there is one slot per GPU: a thread per slot takes the next chain (one recipe and
mode: its batch sizes in order) and runs its rows one after another with ``CUDA_VISIBLE_DEVICES`` set to that GPU,
so every GPU holds one row at a time and the chains run side by side. Results come back to the caller's thread,
which writes the rows. Ctrl-C reaches only the caller's thread: it tells the slots to stop, and each kills its
running child (:func:`~densebench_core.runner.run_isolated` with ``cancel``) before the interrupt goes on.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from pathlib import Path
from typing import Iterator

from densebench_core.job import Job
from densebench_core.launchers import LauncherInfo, OnWait, Placement, hookimpl
from densebench_core.runner import Cancelled, run_isolated


class LocalLauncher:
    def __init__(self, placement: Placement) -> None:
        self.placement = placement
        self.host = socket.gethostname()

    def run(self, chains: list[list[Job]], work_dir: Path, on_wait: OnWait | None) -> Iterator[tuple[Job, dict]]:
        devices = self.placement.devices
        if not devices:
            for chain in chains:
                for job in chain:
                    yield job, self._one(job, work_dir, None, on_wait, None)
            return
        yield from self._in_slots(chains, work_dir, devices, on_wait)

    def _in_slots(self, chains, work_dir, devices, on_wait) -> Iterator[tuple[Job, dict]]:
        todo: queue.Queue = queue.Queue()
        for chain in chains:
            todo.put(chain)
        done: queue.Queue = queue.Queue()
        cancel = threading.Event()

        def serve(gpu: int) -> None:
            while not cancel.is_set():
                try:
                    chain = todo.get_nowait()
                except queue.Empty:
                    return
                for job in chain:
                    try:
                        done.put((job, self._one(job, work_dir, gpu, on_wait, cancel)))
                    except Cancelled:
                        return
                    except Exception as exc:  # noqa: BLE001 - a launcher fault is that row's failure, not the run's
                        done.put((job, {"status": "failed", "reason": f"local launcher: {type(exc).__name__}: {exc}",
                                        "host": self.host, "gpu_index": gpu}))  # fmt: skip

        slots = [threading.Thread(target=serve, args=(gpu,), name=f"densebench-gpu{gpu}", daemon=True)
                 for gpu in devices]  # fmt: skip
        for slot in slots:
            slot.start()
        remaining = sum(len(chain) for chain in chains)
        try:
            while remaining:
                try:
                    item = done.get(timeout=0.25)
                except queue.Empty:
                    if not any(slot.is_alive() for slot in slots) and done.empty():
                        raise RuntimeError("local launcher: every slot stopped with rows left") from None
                    continue
                remaining -= 1
                yield item
        finally:  # finished, Ctrl-C, or the caller closed us: no child outlives the run
            cancel.set()
            for slot in slots:
                slot.join()

    def _one(self, job: Job, work_dir: Path, gpu: int | None, on_wait: OnWait | None, cancel) -> dict:
        env = None
        if gpu is not None:
            env = {"CUDA_VISIBLE_DEVICES": str(gpu), **cpu_share(len(self.placement.devices))}
        wait = (lambda phase, elapsed: on_wait(job, phase, elapsed)) if on_wait else None
        result = run_isolated(job, work_dir, wait, env=env, cancel=cancel)
        result.update(host=self.host, gpu_index=gpu if gpu is not None else self._default_gpu())
        return result

    def _default_gpu(self) -> int | None:
        """The GPU a row runs on without ``--devices``: CUDA's first visible device, None on the CPU."""
        if self.placement.device != "cuda":
            return None
        first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        return int(first) if first.isdigit() else 0


@hookimpl
def launcher_info():
    return LauncherInfo("each row a child process of this one; with --devices, one row per GPU at a time, in parallel")


@hookimpl
def make_launcher(options, placement):
    return LocalLauncher(placement)


def cpu_share(slots: int) -> dict[str, str]:
    """Each of ``slots`` rows side by side gets its share of the CPU cores as its thread count (``OMP_NUM_THREADS``),
    unless the caller set one: rows that each start one thread per core fight over the cores (OpenMP's threads spin
    while they wait), so a model built in two processes at once took 35-43 s instead of 5 s on the H200 host."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, slots)))}
