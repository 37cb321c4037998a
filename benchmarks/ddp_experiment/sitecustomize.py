# perf-notes session 9, call 6: another optimize_ddp mode, with compiled autograd, in every Python process of a run
# whose PYTHONPATH holds this folder and whose environment sets DENSEBENCH_EXPERIMENT_OPTIMIZE_DDP (benchmarks/README.md)
import os
import sys

mode = os.environ.get("DENSEBENCH_EXPERIMENT_OPTIMIZE_DDP")
if mode:
    import torch._dynamo

    torch._dynamo.config.optimize_ddp = mode
    torch._dynamo.config.compiled_autograd = True
    print(f"experiment: torch._dynamo.config.optimize_ddp={mode}, compiled_autograd=True", file=sys.stderr)
