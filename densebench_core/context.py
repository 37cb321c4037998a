"""The run context handed to every hook: the job being measured, and the state hooks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densebench_core.job import Job


@dataclass
class RunContext:
    """One (backend or recipe, mode, batch size) measurement as the hooks see it.

    Read-only, from the job: ``backend`` (the row's name, e.g. ``channels_last+amp``), ``members`` (the recipe's
    backends in stage order), ``mode`` (``inference`` or ``training``; ``training`` is True for the latter),
    ``batch_size``, ``image_size``, ``warmup`` (the warm-up iterations asked for), ``seed``, ``models_dir`` (the
    run's folder for artifacts, or None) and ``job`` itself; ``device`` is a ``torch.device``.

    Hooks may set:

    * ``precision``: the arithmetic the backend runs in (``fp32``, ``tf32``, ``fp16``, ``bf16``, ``amp-fp16``,
      ``amp-bf16``); the core checks the step's output dtype against it and picks the accuracy tolerance by it.
    * ``notes``: lines for the row's ``notes`` column.
    * ``state``: a dict shared by the hooks of one row; keep your entries under your backend's name.

    Set by the core in training mode: ``optimizer`` (SGD over the prepared model's parameters), ``loss_fn``
    (cross-entropy) and ``targets`` (the seeded labels of the batch).
    """

    job: Job
    device: Any  # torch.device
    precision: str = "fp32"
    optimizer: Any = None
    loss_fn: Any = None
    targets: Any = None
    notes: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    backend = property(lambda self: self.job.backend)
    members = property(lambda self: list(self.job.members))
    mode = property(lambda self: self.job.mode)
    batch_size = property(lambda self: self.job.batch_size)
    image_size = property(lambda self: self.job.image_size)
    warmup = property(lambda self: self.job.warmup)
    seed = property(lambda self: self.job.seed)
    options = property(lambda self: self.job.options)

    @property
    def models_dir(self) -> Path | None:
        return Path(self.job.models_dir) if self.job.models_dir else None

    @property
    def is_cuda(self) -> bool:
        return getattr(self.device, "type", str(self.device)) == "cuda"

    @property
    def training(self) -> bool:
        return self.job.training

    def option(self, backend: str, key: str, default: Any = None) -> Any:
        """The typed value of option ``BACKEND.KEY`` (``--backend-option``, a preset, or its default)."""
        return self.options.get(backend, {}).get(key, default)

    def synchronize(self) -> None:
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.device)
