"""The run context handed to every hook: what is being measured, and the state hooks share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunContext:
    """One (backend or recipe, mode, batch size) measurement as the hooks see it.

    Hooks may read everything and set ``precision``, ``notes`` and ``state``.
    """

    backend: str
    members: list[str]
    device: Any  # torch.device
    mode: str
    batch_size: int
    image_size: int
    warmup: int
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    precision: str = "fp32"
    seed: int = 0
    models_dir: Path | None = None
    optimizer: Any = None
    loss_fn: Any = None
    targets: Any = None
    notes: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def is_cuda(self) -> bool:
        return getattr(self.device, "type", str(self.device)) == "cuda"

    @property
    def training(self) -> bool:
        return self.mode == "training"

    def option(self, backend: str, key: str, default: Any = None) -> Any:
        """The value of ``--backend-option BACKEND.KEY=VALUE``, else ``default``."""
        return self.options.get(backend, {}).get(key, default)

    def synchronize(self) -> None:
        if self.is_cuda:
            import torch

            torch.cuda.synchronize(self.device)
