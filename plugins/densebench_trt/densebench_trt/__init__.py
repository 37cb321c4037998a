"""densebench-trt: the ``trt`` backend (Torch-TensorRT, Dynamo path). The plugin is :mod:`densebench_trt.plugin`."""

__version__ = "0.1.0"
