"""densebench-ray: the ``ray`` launcher, each row a Ray task. The plugin is :mod:`densebench_ray.launcher`; what
runs on the node is :mod:`densebench_ray.task` (the Ray task) and :mod:`densebench_ray.row` (its row process)."""

__version__ = "0.1.0"
