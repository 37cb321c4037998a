"""``fp16`` (alias ``quantize``): the model and its inputs cast to half precision ("FP16 quantization").

Exports the fp16 state dict (half the size of the fp32 one) as its deployable form; its cold start loads it
into torchvision's DenseNet-121, eager, in half precision.
"""

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl

NAME = "fp16"


@hookimpl
def backend_info():
    # the same weights whatever the batch size: one artifact per run
    return BackendInfo("weights and activations in float16 (alias: quantize)", stage="precision",
                       artifact_per_batch_size=False)


@hookimpl
def prepare_inputs(inputs):
    return inputs.half()


@hookimpl
def prepare_model(model, ctx):
    ctx.precision = "fp16"
    return model.half()


@hookimpl
def export(model, ctx, directory):
    if not isinstance(model, torch.nn.Module):
        return None
    path = directory / f"{ctx.backend}_fp16_state_dict.pt"
    model = getattr(model, "_orig_mod", model)  # a later torch.compile's wrapper: save the keys of the model itself
    torch.save(model.state_dict(), path)
    return path


@hookimpl
def load_artifact(path, ctx):
    from torchvision.models import densenet121

    from densebench_core.model import NUM_CLASSES

    with torch.device("meta"):  # no random initialization: every weight comes from the file
        model = densenet121(weights=None, num_classes=NUM_CLASSES)
    model.load_state_dict(torch.load(path, map_location=ctx.device, weights_only=True), assign=True)
    return model.half().eval()
