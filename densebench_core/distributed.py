"""Data-parallel training rows (``--nproc-per-node N``): the worker as N processes under torchrun.

The runner starts ``python -m torch.distributed.run --standalone --nproc-per-node N -m densebench_core.worker ...``
(:func:`command`); each process is one rank with the row's batch size, on its own GPU (``cuda:LOCAL_RANK``; NCCL)
or on the CPU (gloo). The recipe's members prepare the model as usual, except that the model is wrapped in
``DistributedDataParallel`` just before the compiler stage (``torch.compile`` of a DDP model: Dynamo's
DDPOptimizer splits the graph at the gradient buckets), so every step ends with the gradients all-reduced.

The ranks must run the same number of steps (a rank that stops early leaves the others waiting in an
all-reduce), so a distributed row is timed for a fixed number of steps that the ranks agree on from a short
timed probe (:meth:`Ranks.agree_iterations`), instead of the adaptive stop of one process. Rank 0 writes the
row: its step times, and ``throughput_ips`` as the global figure (world size x batch size per step).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass


def command(job_path: str, result_path: str, nproc: int) -> list[str]:
    """The child command of a row run as ``nproc`` processes (torchrun, one machine, a free rendezvous port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "densebench_core.worker", job_path, result_path]  # fmt: skip


@dataclass(frozen=True)
class Ranks:
    rank: int
    local_rank: int
    world_size: int

    @classmethod
    def from_env(cls) -> Ranks | None:
        """This process's place in a torchrun group, or None outside one (or in a group of one)."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return None
        return cls(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), size)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def start(self, device_type: str):
        """Join the process group; returns this rank's torch device."""
        import torch
        import torch.distributed as dist

        if device_type == "cuda":
            torch.cuda.set_device(self.local_rank)
            dist.init_process_group("nccl", device_id=torch.device("cuda", self.local_rank))
            return torch.device("cuda", self.local_rank)
        dist.init_process_group("gloo")
        return torch.device("cpu")

    def wrap(self, model, device):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def agree_iterations(self, step, synchronize, min_iters: int, min_time_s: float, max_iters: int) -> int:
        """The number of timed steps for every rank: enough for ``min_time_s`` at the slowest rank's pace."""
        import torch
        import torch.distributed as dist

        probe = 3
        synchronize()
        started = time.perf_counter()
        for _ in range(probe):
            step()
        synchronize()
        pace = torch.tensor([(time.perf_counter() - started) / probe], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            pace = pace.cuda()
        dist.all_reduce(pace, op=dist.ReduceOp.MAX)
        wanted = math.ceil(min_time_s / max(pace.item(), 1e-9))
        return int(min(max_iters, max(min_iters, wanted)))

    def stop(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
