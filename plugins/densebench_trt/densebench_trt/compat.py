"""Everything about torch-tensorrt that depends on its release, as plain functions.

Nothing here imports ``torch_tensorrt`` at module import time, so all of it is testable on a machine without
TensorRT (which is every machine this plugin was developed on; see README.md, "What was tested").

Two generations of the Dynamo API matter to densebench (sources are cited in README.md):

* **torch-tensorrt < 2.13** (TensorRT 10 and older): the builder may pick lower-precision kernels on its own
  ("weak typing"); the precision is requested with ``enabled_precisions={torch.float16}``. From 2.5 the
  Dynamo compiler also has ``use_explicit_typing``, whose default became ``True`` in 2.10, and since 2.8 it
  refuses ``enabled_precisions`` other than fp32 while explicit typing is on. So for this generation the
  plugin passes ``enabled_precisions`` and, where the flag exists, ``use_explicit_typing=False``.
* **torch-tensorrt >= 2.13** (TensorRT 11, where weak typing is gone): strong typing is always on and
  ``enabled_precisions`` / ``use_explicit_typing`` are no longer part of the Dynamo path; the engine's
  precision follows the dtypes of the model and its inputs. The plugin passes no precision argument.

In both generations the plugin casts the model and the inputs to the requested dtype itself, so the engine
is built from an fp16 (or fp32) graph either way and the two generations measure the same thing.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from densebench_core.options import Option, OptionError  # noqa: F401  (the plugin raises compat.OptionError)

NAME = "trt"

#: the first torch-tensorrt release whose Dynamo path takes its precision from the model and input dtypes
STRONGLY_TYPED_FROM = (2, 13)
#: the first release with ``use_explicit_typing`` in the Dynamo compiler (earlier ones reject nothing, but
#: we only pass the flag where it exists)
EXPLICIT_TYPING_FLAG_FROM = (2, 5)
#: the oldest release this plugin accepts: Dynamo became the default frontend and ``torch_tensorrt.save``
#: took ``output_format`` in 2.2
MIN_VERSION = (2, 2)

PRECISIONS = ("fp16", "fp32")
#: option value -> (torch_tensorrt.save output_format, file suffix)
FORMATS = {"ep": ("exported_program", ".ep"), "ts": ("torchscript", ".ts")}
OPTIONS = {
    "precision": Option(default="fp16", choices=PRECISIONS, help="the engine's precision"),
    "format": Option(default="ep", choices=tuple(FORMATS),
                     help="saved program: ep (torch.export ExportedProgram) or ts (TorchScript)"),
}

INSTALL_HINT = (
    'pip install "densebench-trt[tensorrt]" --extra-index-url https://pypi.nvidia.com '
    "(a torch-tensorrt matching the installed torch)"
)


#: how this module imports torch_tensorrt and tensorrt; tests swap it to simulate what TensorRT can do
import_module: Callable[[str], Any] = importlib.import_module


# -- versions ---------------------------------------------------------------------------------------------
def parse_version(text: str) -> tuple[int, int]:
    """``"2.13.0+cu130"`` -> ``(2, 13)``. Pre-releases count as their release (``2.13.0.dev…`` -> 2.13)."""
    match = re.match(r"\s*v?(\d+)\.(\d+)", str(text))
    if not match:
        raise ValueError(f"cannot read a version from {text!r}")
    return int(match.group(1)), int(match.group(2))


def api_generation(version: str) -> str:
    """``"strongly-typed"`` (>= 2.13: precision from dtypes) or ``"enabled_precisions"`` (older)."""
    return "strongly-typed" if parse_version(version) >= STRONGLY_TYPED_FROM else "enabled_precisions"


def torch_dtype(precision: str):
    import torch

    check_precision(precision)
    return torch.float16 if precision == "fp16" else torch.float32


def compile_kwargs(version: str, precision: str) -> dict[str, Any]:
    """The precision-related keyword arguments for ``torch_tensorrt.compile(..., ir="dynamo")``.

    :param version: ``torch_tensorrt.__version__``.
    :param precision: ``"fp16"`` or ``"fp32"``; the model and inputs are cast to it by the plugin.
    :return: ``{}`` for >= 2.13; ``{"enabled_precisions": {dtype}}`` plus ``use_explicit_typing=False`` (2.5 to
        2.12) for the older API.
    """
    dtype = torch_dtype(precision)
    release = parse_version(version)
    if release >= STRONGLY_TYPED_FROM:
        return {}
    kwargs: dict[str, Any] = {"enabled_precisions": {dtype}}
    if release >= EXPLICIT_TYPING_FLAG_FROM:
        kwargs["use_explicit_typing"] = False
    return kwargs


def describe_kwargs(kwargs: dict[str, Any]) -> str:
    if not kwargs:
        return "no precision arguments (precision follows the model and input dtypes)"
    parts = []
    for key, value in sorted(kwargs.items()):
        if isinstance(value, (set, frozenset)):
            value = "{" + ", ".join(sorted(str(v) for v in value)) + "}"
        parts.append(f"{key}={value}")
    return ", ".join(parts)


# -- options ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtOptions:
    precision: str = "fp16"
    format: str = "ep"


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise OptionError(f"trt.precision must be {' or '.join(PRECISIONS)}, not {precision!r}")


def resolve_options(options: dict[str, dict[str, Any]]) -> TrtOptions:
    """The typed ``trt`` options of a run (``ctx.options``, parsed by the core), defaults filled in."""
    values = {key: option.default for key, option in OPTIONS.items()} | dict(options.get(NAME, {}))
    return TrtOptions(precision=values["precision"], format=values["format"])


# -- artifacts --------------------------------------------------------------------------------------------
def artifact_path(directory: Path, backend: str, batch_size: int, fmt: str) -> Path:
    """``models/trt_bs32.ep`` (or ``.ts``); a recipe keeps its name, e.g. ``channels_last+trt_bs1.ep``."""
    return Path(directory) / f"{backend}_bs{batch_size}{FORMATS[fmt][1]}"


# -- availability -----------------------------------------------------------------------------------------
def _looks_like_tensorrt_library(message: str) -> bool:
    return bool(re.search(r"libnvinfer|libnvonnxparser|libtorchtrt|\btensorrt\b", message, re.IGNORECASE))


def load_torch_tensorrt(torch_version: str | None = None) -> tuple[Any, str | None]:
    """Import torch_tensorrt and say precisely why that is impossible, if it is.

    :param torch_version: the installed torch version (default: ``torch.__version__``).
    :return: ``(module, None)``, or ``(None, reason)`` with a one-line reason.
    """
    if torch_version is None:
        import torch

        torch_version = torch.__version__
    try:
        module = import_module("torch_tensorrt")
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == "torch_tensorrt" or (not missing and "torch_tensorrt" in str(exc)):
            return None, f"the Python package 'torch_tensorrt' is not installed ({INSTALL_HINT})"
        if missing.split(".")[0].startswith("tensorrt"):
            return None, (
                f"torch_tensorrt is installed but the TensorRT Python package {missing!r} is missing "
                "(pip install tensorrt --extra-index-url https://pypi.nvidia.com)"
            )
        return None, f"torch_tensorrt failed to import: the Python package {missing!r} is missing"
    except (ImportError, OSError) as exc:
        message = _first_line(exc)
        hint = _torch_mismatch_hint(torch_version)
        if "undefined symbol" in message and hint:
            return None, f"torch_tensorrt failed to import ({message}); {hint}"
        if _looks_like_tensorrt_library(message):
            return None, f"the TensorRT library could not be loaded: {type(exc).__name__}: {message}"
        return None, f"torch_tensorrt failed to import: {type(exc).__name__}: {message}" + (
            f"; {hint}" if hint else ""
        )
    except Exception as exc:  # a broken install can raise anything at import time
        return None, f"torch_tensorrt failed to import: {type(exc).__name__}: {_first_line(exc)}"
    version = str(getattr(module, "__version__", "") or "")
    try:
        release = parse_version(version)
    except ValueError:
        return None, f"torch_tensorrt reports no usable version ({version!r})"
    if release < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        return None, f"torch_tensorrt {version} is too old: densebench-trt needs >= {need} (the Dynamo path)"
    return module, None


def tensorrt_version() -> str | None:
    """The TensorRT runtime version, or None if it cannot be read."""
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            return str(import_module(name).__version__)
        except Exception:
            continue
    return None


def torch_mismatch(torch_tensorrt_version: str, torch_version: str) -> str | None:
    """torch-tensorrt 2.N is built against torch 2.N; say so when the installed torch differs."""
    try:
        trt_release, torch_release = parse_version(torch_tensorrt_version), parse_version(torch_version)
    except ValueError:
        return None
    if trt_release == torch_release:
        return None
    return (
        f"torch_tensorrt {torch_tensorrt_version} is built for torch {trt_release[0]}.{trt_release[1]}, "
        f"but torch {torch_version} is installed"
    )


def _torch_mismatch_hint(torch_version: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("torch-tensorrt", "torch_tensorrt"):
        try:
            return torch_mismatch(version(dist), torch_version)
        except PackageNotFoundError:
            continue
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
