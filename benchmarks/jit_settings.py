"""Which TorchScript executor/fuser settings let a frozen DenseNet-121 run its *second* call on a GPU?

On an H200 with torch 2.11 a traced, frozen, optimize_for_inference fp16 channels_last DenseNet-121 ran its first
call in 0.56 s and its second had not returned after 4 minutes. Each setting runs in its own process with a
timeout; prints one JSON line per setting with the first three call times.

    python benchmarks/jit_settings.py --device cuda --timeout 90
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

SETTINGS = {
    "defaults": "",
    "no-texpr-fuser": "torch._C._jit_set_texpr_fuser_enabled(False)",
    "fusion-strategy-none": "torch.jit.set_fusion_strategy([('STATIC', 0), ('DYNAMIC', 0)])",
    "simple-executor": "torch._C._jit_set_profiling_executor(False)",
    "optimize-off": "torch._C._set_graph_executor_optimize(False)",
    "no-optimize-for-inference": "OPTIMIZE = False",
}

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from densebench_core.model import build_model, make_inputs
OPTIMIZE = True
{setting}
device = torch.device(sys.argv[1]); bs = int(sys.argv[2]); size = int(sys.argv[3])
model = build_model("random", 0, size).to(device).to(memory_format=torch.channels_last)
x = make_inputs(bs, size, 0).to(device).contiguous(memory_format=torch.channels_last)
if device.type == "cuda":
    model, x = model.half(), x.half()
with torch.no_grad():
    traced = torch.jit.freeze(torch.jit.trace(model.eval(), x))
    if OPTIMIZE:
        traced = torch.jit.optimize_for_inference(traced)
    times = []
    for _ in range(3):
        t0 = time.perf_counter(); traced(x)
        if device.type == "cuda": torch.cuda.synchronize()
        times.append(round(time.perf_counter() - t0, 4)); print(json.dumps(times), flush=True)
    t0 = time.perf_counter()
    for _ in range(20): traced(x)
    if device.type == "cuda": torch.cuda.synchronize()
    print(json.dumps({{"calls": times, "steady_ms": round((time.perf_counter() - t0) / 20 * 1000, 3)}}))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()
    for name, setting in SETTINGS.items():
        code = CHILD.format(setting=setting)
        try:
            proc = subprocess.run([sys.executable, "-c", code, args.device, str(args.batch_size),
                                   str(args.image_size)], capture_output=True, text=True, timeout=args.timeout)
            last = (proc.stdout.strip().splitlines() or ["{}"])[-1]
            result = {"setting": name, "rc": proc.returncode, "result": json.loads(last),
                      "stderr": proc.stderr.strip()[-300:] if proc.returncode else ""}
        except subprocess.TimeoutExpired as exc:
            partial = (exc.stdout or b"").decode(errors="replace").strip().splitlines()
            result = {"setting": name, "timeout_s": args.timeout, "calls_done": partial[-1] if partial else None}
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
