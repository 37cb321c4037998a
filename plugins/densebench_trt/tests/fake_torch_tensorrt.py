"""A FAKE ``torch_tensorrt`` module, for tests only.

It exists because TensorRT cannot be installed on any machine this plugin was developed and tested on: the
PyPI ``tensorrt`` packages are stubs that download the real wheels from NVIDIA's package index, which is out
of reach here, and there is no GPU. It does no compilation at all. It records how the plugin calls
``torch_tensorrt.compile`` and ``torch_tensorrt.save`` (so the tests can check the arguments the plugin builds
for each API generation, the dtypes it hands over, and where it writes), returns the model unchanged, and
writes a placeholder file. Nothing measured with it says anything about TensorRT's speed or accuracy.
"""

from __future__ import annotations

import types
from pathlib import Path


def make(version: str) -> types.ModuleType:
    """A fresh fake module reporting ``__version__ = version``; calls are recorded in ``module.calls``."""
    module = types.ModuleType("torch_tensorrt")
    module.__doc__ = __doc__
    module.__version__ = version
    module.calls = []

    def compile(model, ir="default", inputs=None, **kwargs):  # noqa: A001 - mirrors the real name
        module.calls.append(("compile", {"model": model, "ir": ir, "inputs": inputs, **kwargs}))
        return model

    def save(model, file_path, *, output_format="exported_program", inputs=None, **kwargs):
        module.calls.append(
            ("save", {"model": model, "file_path": file_path, "output_format": output_format,
                      "inputs": inputs, **kwargs})
        )  # fmt: skip
        Path(file_path).write_bytes(b"fake torch_tensorrt artifact: not a TensorRT program\n")

    module.compile = compile
    module.save = save
    return module
