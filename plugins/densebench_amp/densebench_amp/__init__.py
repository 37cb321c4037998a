"""densebench-amp: the ``amp`` backend (``torch.autocast`` mixed precision). The plugin is :mod:`densebench_amp.plugin`."""

__version__ = "0.1.0"
