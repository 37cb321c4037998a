"""Does CUDA-graph training (compile mode reduce-overhead) train? Loss and weights against eager AMP, same seed.

    python benchmarks/train_graph_check.py [--steps 30] [--bs 32]

Prints one JSON line per mode: the loss at each step, the weight change of the first conv, the steps the
GradScaler skipped. The two trajectories should match to fp16 rounding.
"""

from __future__ import annotations

import argparse
import json

import torch

from densebench_core.model import build_model, make_inputs, make_targets


def trajectory(mode: str, steps: int, bs: int, size: int) -> dict:
    torch.manual_seed(0)
    model = build_model("random", 0, size).cuda().to(memory_format=torch.channels_last).train()
    inputs = make_inputs(bs, size, 0).cuda().contiguous(memory_format=torch.channels_last)
    targets = make_targets(bs, 0).cuda()
    runnable = model if mode == "eager" else torch.compile(model, mode=mode)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    before = model.features.conv0.weight.detach().clone()
    losses, skipped = [], 0
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16):
            output = runnable(inputs)
        loss = loss_fn(output.float(), targets)
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        skipped += scaler.get_scale() < scale
        losses.append(round(float(loss), 4))
    change = float((model.features.conv0.weight.detach() - before).norm() / before.norm())
    return {"mode": mode, "losses": losses, "conv0_rel_change": change, "skipped_steps": skipped}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--bs", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    for mode in ("eager", "reduce-overhead"):
        print(json.dumps(trajectory(mode, args.steps, args.bs, args.size)), flush=True)
