"""A test backend, ``unexportable_test`` (stage ``rewrite``): wraps the model in Python control flow on a value
of the output, which ``torch.export`` cannot trace. It runs eagerly; alone its rows would be ``ok``.

Installed for a child process by ``test_aoti.py`` (a ``.dist-info`` with its entry point on ``PYTHONPATH``).
"""

from __future__ import annotations

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl


class DataDependent(torch.nn.Module):
    """The wrapped model, or its negation when the logits sum to a negative number: data-dependent control flow."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        y = self.model(x)
        if y.sum() < -1e30:  # never true for real logits, but export must decide it from a traced value
            return -y
        return y


@hookimpl
def backend_info():
    return BackendInfo("test: wraps the model in data-dependent Python control flow", stage="rewrite")


@hookimpl
def prepare_model(model):
    return DataDependent(model)
