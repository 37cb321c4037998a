"""densebench-compile: the ``compile`` backend (``torch.compile``). The plugin is :mod:`densebench_compile.plugin`."""

__version__ = "0.1.0"
