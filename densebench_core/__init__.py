"""densebench-core: discovers optimization backends for DenseNet-121, measures them uniformly, reports."""

__version__ = "0.1.0"
