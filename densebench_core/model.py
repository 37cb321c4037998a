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
    that a failure is one clear error before any run starts. Anything else is a state-dict path, which must load
    with ``weights_only=True`` and fit DenseNet-121 (:func:`check_state_dict`); raises BadInput otherwise.
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
    if path.is_dir():
        raise BadInput(f"--weights {spec} is a directory; give a state-dict file (or random, imagenet)")
    if not path.is_file():
        raise BadInput(f"weights file not found: {spec} (use random, imagenet or a state-dict path)")
    check_state_dict(load_state_dict(path), spec)
    return str(path.resolve())


def load_state_dict(path: Path) -> dict:
    """A state dict from ``path``, loaded safely (``weights_only=True``); raises BadInput in one line."""
    import zipfile

    import torch

    what = f"weights file {path} cannot be loaded as a state dict with weights_only=True"
    if zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist()):
        raise BadInput(f"{what}: it is a TorchScript archive, not a state dict (torch.jit.save wrote it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the safe unpickler fails on foreign files in many ways
        # torch's own message runs to many lines and advises loading unsafely: say only what the file is
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise BadInput(f"{what}: it is not a file torch.save wrote ({type(exc).__name__}: {first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"weights file {path} holds a {type(state).__name__}, not a state dict of tensors")
    return _new_style_keys(state)


def _new_style_keys(state: dict) -> dict:
    """torchvision's DenseNet checkpoints of old name ``norm.1`` for ``norm1``: renamed as torchvision does."""
    import re

    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    return {(f"{m.group(1)}{m.group(2)}" if (m := pattern.match(k)) else k): v for k, v in state.items()}


def check_state_dict(state: dict, name: str) -> None:
    """Raise BadInput unless ``state`` has exactly DenseNet-121's keys with its shapes."""
    import torch
    from torchvision.models import densenet121

    with torch.device("meta"):
        expected = densenet121(num_classes=NUM_CLASSES).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        what = f"missing {len(missing)} key(s), e.g. {missing[0]!r}" if missing else ""
        what += ("; " if what and unexpected else "") + (
            f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]!r}" if unexpected else "")
        raise BadInput(f"weights file {name} is not a DenseNet-121 state dict: {what}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise BadInput(f"weights file {name} is not a DenseNet-121 state dict: {key} has shape "
                           f"{tuple(state[key].shape)}, DenseNet-121 needs {tuple(tensor.shape)}")


#: calibration images for the stand-in weights (seeded, never the timed or evaluation inputs)
CALIBRATION_IMAGES = 32
CALIBRATION_BATCH = 16
#: the stand-in's logits are scaled to this standard deviation over the calibration images
STANDIN_LOGIT_STD = 1.0


def build_model(weights: str, seed: int, image_size: int, cache_dir: Path | None = None):
    """DenseNet-121 in fp32 eager mode, on the CPU, in eval mode, deterministic for a given seed.

    ``random`` weights are the *stand-in* model (:func:`calibrate_standin`) for ``image_size`` pixels. With a
    ``cache_dir`` (a run's work folder) the first worker that calibrates them saves them there and the run's later
    workers load that file: the same weights, without calibrating again in every row.
    """
    import torch
    from torchvision.models import densenet121

    torch.manual_seed(seed)
    model = densenet121(weights=None, num_classes=NUM_CLASSES)
    if weights == "imagenet":
        from torchvision.models import DenseNet121_Weights

        state = DenseNet121_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        model.load_state_dict(state)
    elif weights != "random":
        model.load_state_dict(load_state_dict(Path(weights)))
    else:
        cached = Path(cache_dir) / f"standin_seed{seed}_{image_size}px.pt" if cache_dir else None
        if cached is not None and cached.is_file():
            model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
        else:
            calibrate_standin(model, image_size, seed)
            if cached is not None:
                _save_atomically(model.state_dict(), cached)
    return model.eval()


def _save_atomically(state: dict, path: Path) -> None:
    """Workers of one run may calibrate at the same time: each writes a file of its own, then renames it."""
    import os

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, partial)
    os.replace(partial, path)


def calibrate_standin(model, image_size: int, seed: int) -> None:
    """Make seeded random weights answer differently for different inputs, in place.

    Freshly initialised, DenseNet-121's BatchNorms hold mean 0 and variance 1, so in eval mode they do not
    normalise, and after 120 layers every input gives nearly the same logits (cosine 0.999 between different
    images, one top-1 class for all): no accuracy check could see a wrong answer. So, as after training:

    1. each BatchNorm's running statistics are measured on seeded calibration images (train-mode passes with a
       cumulative average), so every layer sees normalised activations;
    2. the classifier's bias is set to cancel the mean pooled feature, so the logits are the image-dependent
       part rather than one vector shared by every image, and the classifier is scaled so the logits have a
       standard deviation of :data:`STANDIN_LOGIT_STD`.

    The calibration images are their own seeded stream, distinct from the timed and evaluation inputs.
    """
    import torch

    calibration = make_inputs(CALIBRATION_IMAGES, image_size, seed, stream="calibration")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    features: list = []
    hook = model.classifier.register_forward_hook(lambda module, args, output: features.append(args[0]))
    with torch.no_grad():
        model.train()
        for start in range(0, CALIBRATION_IMAGES, CALIBRATION_BATCH):
            model(calibration[start:start + CALIBRATION_BATCH])
        model.eval()
        features.clear()
        model(calibration)
        hook.remove()
        pooled = features[0]
        classifier = model.classifier
        classifier.bias.copy_(-(classifier.weight @ pooled.mean(0)))
        centred_logits = (pooled - pooled.mean(0)) @ classifier.weight.T
        scale = STANDIN_LOGIT_STD / float(centred_logits.std())
        classifier.weight.mul_(scale)
        classifier.bias.mul_(scale)
    for norm in norms:
        norm.momentum = 0.1  # torch's default, for training runs


#: each kind of seeded input has its own random stream, so no two kinds share an image
STREAMS = {"timed": 1, "targets": 2, "calibration": 3, "evaluation": 4}


def _generator(seed: int, stream: str):
    import torch

    return torch.Generator().manual_seed(seed + STREAMS[stream])


def make_inputs(batch_size: int, image_size: int, seed: int, stream: str = "timed"):
    """A seeded batch of normalized-image-like random inputs (never zeros), fp32, contiguous, on the CPU.

    ``stream``: ``timed`` (the measured batch), ``evaluation`` (the accuracy check's images) or
    ``calibration`` (the stand-in weights' BatchNorm statistics).
    """
    import torch

    return torch.randn(batch_size, 3, image_size, image_size, generator=_generator(seed, stream))


def make_targets(batch_size: int, seed: int):
    import torch

    return torch.randint(0, NUM_CLASSES, (batch_size,), generator=_generator(seed, "targets"))
