"""What each hook must return, checked where the core receives it.

A value that breaks the contract raises :class:`HookError`, whose message names the plugin, the hook and what
was expected, instead of surfacing later as a raw internal error (``'NoneType' object has no attribute ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: output dtypes a row's precision label allows (labels not listed are not checked)
PRECISION_DTYPES = {
    "fp32": ("float32",),
    "tf32": ("float32",),
    "fp16": ("float16", "float32"),
    "bf16": ("bfloat16", "float32"),
    "amp-fp16": ("float16", "float32"),
    "amp-bf16": ("bfloat16", "float32"),
}


class HookError(Exception):
    """A hook returned something the core cannot use."""

    def __init__(self, plugin: str, hook: str, problem: str) -> None:
        super().__init__(f"plugin {plugin!r}, hook {hook}: {problem}")


def _what(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def reason(plugin: str, hook: str, value: Any) -> str | None:
    """``check_available`` and ``after_measure``: None, or a reason as a non-empty string."""
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise HookError(plugin, hook, f"returned {_what(value)} {value!r}; expected None or a one-line reason (str)")


def inputs(plugin: str, value: Any) -> Any:
    """``prepare_inputs``: the batch, a tensor."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise HookError(plugin, "prepare_inputs", f"returned {_what(value)}; expected the input batch (a torch.Tensor)")
    return value


def model(plugin: str, value: Any) -> Any:
    """``prepare_model``: the model to measure, a module or any callable."""
    if not callable(value):
        raise HookError(plugin, "prepare_model", f"returned {_what(value)}; expected the model to measure (a "
                        "torch.nn.Module or a callable taking the input batch), e.g. the model it was given")
    return value


def output(source: tuple[str, str], value: Any, batch_size: int, classes: int, precision: str) -> Any:
    """One step's output: logits of shape (batch_size, classes) in a dtype the row's precision allows.

    :param source: (plugin, hook) answerable for the output: the ``run_step`` in use, else the ``prepare_model``
        that made the model.
    """
    import torch

    if not isinstance(value, torch.Tensor):
        raise HookError(*source, f"the step returned {_what(value)}; expected the model output, a torch.Tensor "
                        f"of shape ({batch_size}, {classes})")
    if tuple(value.shape) != (batch_size, classes):
        raise HookError(*source, f"the step's output has shape {tuple(value.shape)}; expected ({batch_size}, "
                        f"{classes}): one row of logits for every image of the batch")
    dtype = str(value.dtype).removeprefix("torch.")
    allowed = PRECISION_DTYPES.get(precision)
    if allowed is not None and dtype not in allowed:
        raise HookError(*source, f"the step's output is {dtype} while the row's precision says {precision!r}; "
                        "set ctx.precision in prepare_model to the arithmetic the backend runs")
    return value


def artifact(plugin: str, value: Any, models_dir: Path) -> Path | None:
    """``export``: None, or the path of a non-empty file it wrote inside the row's models folder."""
    if value is None:
        return None
    if not isinstance(value, (str, Path)):
        raise HookError(plugin, "export", f"returned {_what(value)}; expected None or the path of the written file")
    path = Path(value).resolve()
    if not path.is_relative_to(models_dir.resolve()):
        raise HookError(plugin, "export", f"returned {value}, outside the run's models folder {models_dir}; write "
                        "into the `directory` it is given")
    if not path.is_file() or path.stat().st_size == 0:
        raise HookError(plugin, "export", f"returned {value}, which is {'empty' if path.is_file() else 'not a file'}")
    return path
