"""One measurement to run: the typed job that crosses from the planning parent to its worker process.

:func:`densebench_core.benchmark.plan` makes one :class:`Job` per (backend or recipe, mode, batch size);
:func:`densebench_core.runner.run_isolated` writes it as JSON for the worker, which reads it back with
:meth:`Job.from_json` and hands it to the hooks inside a :class:`~densebench_core.context.RunContext`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Job:
    """A backend or recipe at one mode and batch size, with every setting its worker needs.

    :param options: every option of every member, typed, defaults filled in: what hooks read with
        ``ctx.option(backend, key)``.
    :param shown_options: the options the user or a preset set: the row's ``options`` column.
    :param decided: a row already decided in the parent (skipped, failed plugin): nothing runs.
    """

    backend: str
    members: list[str]
    mode: str
    batch_size: int
    device: str = "cpu"
    image_size: int = 224
    weights: str = "random"
    warmup: int = 1
    min_iters: int = 1
    min_time: float = 0.0
    max_time: float | None = None
    #: stop measuring once the median's 95% interval is within this fraction of it
    ci_target: float | None = None
    eval_images: int = 256
    #: seconds for the whole child process, and for each phase after the measurement
    timeout: float = 900.0
    phase_timeout: float = 300.0
    seed: int = 0
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    shown_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    export: bool = False
    models_dir: str | None = None
    profile_dir: str | None = None
    #: where workers of one run share what they compute once (the stand-in weights)
    cache_dir: str | None = None
    decided: dict[str, Any] | None = None
    #: processes that run the row together (``--nproc-per-node``; training, data-parallel)
    nproc: int = 1

    @property
    def slug(self) -> str:
        procs = f"_np{self.nproc}" if self.nproc > 1 else ""
        return f"{self.backend}_{self.mode}_bs{self.batch_size}{procs}".replace("+", "-")

    @property
    def training(self) -> bool:
        return self.mode == "training"

    def replace(self, **changes: Any) -> Job:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))
