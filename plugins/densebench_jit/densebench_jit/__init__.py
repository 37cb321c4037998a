"""densebench-jit: the ``jit`` backend (TorchScript trace, freeze, optimize_for_inference). The plugin is
:mod:`densebench_jit.plugin`."""

__version__ = "0.1.0"
