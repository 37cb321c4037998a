"""densebench-fused: the ``fused`` backend (DenseNet's dense layers as fused Triton kernels). The plugin is
:mod:`densebench_fused.plugin`."""

__version__ = "0.1.0"
