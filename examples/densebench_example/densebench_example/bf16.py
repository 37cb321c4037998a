"""``bf16``: DenseNet-121 with bfloat16 weights and activations (or fp32 weights under bf16 autocast)."""

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl
from densebench_core.options import Option

OPTIONS = {
    "mode": Option(default="cast", choices=("cast", "autocast"),
                   help="cast: bf16 weights and inputs; autocast: fp32 weights under bf16 autocast"),
}


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
        options=OPTIONS,
        artifact_per_batch_size=False,  # the same weights whatever the batch size
    )


@hookimpl
def check_available(ctx):
    if ctx.is_cuda and not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name(ctx.device)} does not support bfloat16"
    return None


@hookimpl
def prepare_inputs(inputs, ctx):
    if ctx.option("bf16", "mode") == "cast":
        return inputs.to(torch.bfloat16)
    return inputs


@hookimpl
def prepare_model(model, ctx):
    ctx.precision = "bf16"
    if ctx.option("bf16", "mode") == "cast":
        return model.to(torch.bfloat16)
    return Autocast(model)


@hookimpl
def export(model, ctx, directory):
    if ctx.option("bf16", "mode") != "cast":
        return None  # the weights are still fp32: nothing new to deploy
    path = directory / f"{ctx.backend}_bf16_state_dict.pt"
    torch.save(model.state_dict(), path)
    return path
