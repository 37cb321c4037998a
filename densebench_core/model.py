"""The model under test (torchvision DenseNet-121), its weights, and the seeded inputs every backend sees."""

from __future__ import annotations

from pathlib import Path

from densebench_core.errors import BadInput

NUM_CLASSES = 1000
MIN_IMAGE_SIZE = 32  # DenseNet-121 downsamples by 32; smaller images leave no spatial extent


def imagenet_weights_cached() -> Path | None:
    """Path of torchvision's ImageNet DenseNet-121 checkpoint in the local torch hub cache, if present."""
    import torch
    from torchvision.models import DenseNet121_Weights

    url = DenseNet121_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return path if path.is_file() else None


def resolve_weights(spec: str) -> str:
    """Check a ``--weights`` value up front (in the parent) and return what the workers should load.

    ``auto``: ImageNet weights if cached locally, else ``random``. ``imagenet``: cached or downloaded now, so
    that a failure is one clear error before any run starts. Anything else is a state-dict path.
    """
    if spec == "random":
        return "random"
    if spec == "auto":
        return "imagenet" if imagenet_weights_cached() else "random"
    if spec == "imagenet":
        if imagenet_weights_cached():
            return "imagenet"
        try:
            import socket

            import torch
            from torchvision.models import DenseNet121_Weights

            socket.setdefaulttimeout(30)
            torch.hub.load_state_dict_from_url(DenseNet121_Weights.IMAGENET1K_V1.url, progress=False)
        except Exception as exc:
            raise BadInput(
                "ImageNet weights are not in the local torch hub cache and could not be downloaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
                "use --weights random or a state-dict path"
            ) from None
        return "imagenet"
    path = Path(spec).expanduser()
    if not path.is_file():
        raise BadInput(f"weights file not found: {spec} (use random, imagenet or a state-dict path)")
    return str(path.resolve())


def build_model(weights: str, seed: int):
    """DenseNet-121 in fp32 eager mode, on the CPU, in eval mode, deterministic for a given seed."""
    import torch
    from torchvision.models import densenet121

    torch.manual_seed(seed)
    model = densenet121(weights=None, num_classes=NUM_CLASSES)
    if weights == "imagenet":
        from torchvision.models import DenseNet121_Weights

        state = DenseNet121_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        model.load_state_dict(state)
    elif weights != "random":
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        model.load_state_dict(state)
    return model.eval()


def make_inputs(batch_size: int, image_size: int, seed: int):
    """A seeded batch of normalized-image-like random inputs (never zeros), fp32, contiguous, on the CPU."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    return torch.randn(batch_size, 3, image_size, image_size, generator=generator)


def make_targets(batch_size: int, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed + 2)
    return torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator)
