"""``baseline``: fp32 eager DenseNet-121, the reference every other row is compared with.

It implements only ``backend_info``: the core's defaults (model as built, inputs as made, the default step)
are exactly the reference.
"""

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl

NAME = "baseline"


@hookimpl
def backend_info():
    return BackendInfo("fp32 eager PyTorch, the reference", modes=("inference", "training"), stage=None,
                       composable=False)
