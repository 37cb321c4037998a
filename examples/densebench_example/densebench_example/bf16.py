"""``bf16``: DenseNet-121 with bfloat16 weights and activations (or fp32 weights under bf16 autocast)."""

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl

MODES = ("cast", "autocast")


def read_mode(ctx):
    """The value of --backend-option bf16.mode=..., checked."""
    unknown = sorted(set(ctx.options.get("bf16", {})) - {"mode"})
    if unknown:
        raise ValueError(f"unknown option bf16.{unknown[0]} (bf16 understands: mode)")
    mode = ctx.option("bf16", "mode", "cast")
    if mode not in MODES:
        raise ValueError(f"bf16.mode must be cast or autocast, not {mode!r}")
    return mode


class Autocast(torch.nn.Module):
    """Runs the wrapped model under bf16 autocast: fp32 weights, bf16 matmuls and convolutions."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x)


@hookimpl
def backend_info():
    return BackendInfo(
        description="bfloat16 weights and activations (bf16.mode=cast) or bf16 autocast (bf16.mode=autocast)",
        modes=("inference",),
        stage="precision",
        options={"mode": "cast"},
    )


@hookimpl
def check_available(ctx):
    read_mode(ctx)  # a bad option value raises: the row fails with the message
    if ctx.is_cuda and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(ctx.device)} does not support bfloat16"
    return None


@hookimpl
def prepare_inputs(inputs, ctx):
    if read_mode(ctx) == "cast":
        return inputs.to(torch.bfloat16)
    return inputs


@hookimpl
def prepare_model(model, ctx):
    ctx.precision = "bf16"
    if read_mode(ctx) == "cast":
        return model.to(torch.bfloat16)
    return Autocast(model)


@hookimpl
def export(model, ctx, directory):
    if read_mode(ctx) != "cast":
        return None  # the weights are still fp32: nothing new to deploy
    path = directory / f"{ctx.backend}_bf16_state_dict.pt"
    torch.save(model.state_dict(), path)
    return path
