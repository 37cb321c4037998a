"""``channels_last``: NHWC memory format for the model and its inputs (faster convolutions on tensor cores)."""

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl

NAME = "channels_last"


@hookimpl
def backend_info():
    return BackendInfo("NHWC (channels-last) memory format for model and inputs", modes=("inference", "training"),
                       stage="layout")


@hookimpl
def prepare_inputs(inputs):
    return inputs.contiguous(memory_format=torch.channels_last)


@hookimpl
def prepare_model(model):
    return model.to(memory_format=torch.channels_last)
