"""densebench-aoti: the ``aoti`` backend (``torch.export`` + AOTInductor into a ``.pt2`` package, measured as
loaded back). The plugin is :mod:`densebench_aoti.plugin`."""

__version__ = "0.1.0"
