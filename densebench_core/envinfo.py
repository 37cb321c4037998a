"""The environment fingerprint stored with every run and shown by ``densebench env``."""

from __future__ import annotations

import platform
import shutil
import subprocess
from typing import Any

from densebench_core import __version__

NVIDIA_SMI_FIELDS = (
    "name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.limit"
)


def _nvidia_smi() -> list[dict[str, str]]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={NVIDIA_SMI_FIELDS}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    keys = NVIDIA_SMI_FIELDS.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")))) for line in out.strip().splitlines()]


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(device: str | None = None) -> dict[str, Any]:
    """torch, CUDA, cuDNN, driver, GPU name and clocks, CPU, Python, platform; ``device_name`` for rows."""
    import torch

    info: dict[str, Any] = {
        "densebench_core": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        # the CUDA release this torch was built with: present on a CUDA build even where no GPU or driver is
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torchvision": _version("torchvision"),
    }
    gpus = _nvidia_smi()
    info["gpus"] = gpus
    if gpus:
        info["driver"] = gpus[0].get("driver_version")
    if torch.cuda.is_available():
        info["gpu_name"] = torch.cuda.get_device_name(0)
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    info["device"] = device
    info["device_name"] = info.get("gpu_name") if device == "cuda" else info["cpu"]
    return info


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
