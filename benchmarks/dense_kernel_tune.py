"""Tile choices for the fused BN+ReLU+GEMM kernel (``compile.dense_kernels=triton``) on DenseNet-121's layer shapes.

For the first and last layer of each dense block at batch 1 and 256 (224 px), times every tile configuration
of :func:`densebench_compile.bn_relu_gemm.launch` with ``triton.testing.do_bench`` (CUDA events), checks its
output against the torch reference, and prints the time at the device-copy ceiling for the bytes it must move
(read ``a``, write the result) beside the unfused torch sequence (BN+ReLU pass, cuBLAS GEMM, bias+ReLU pass).
The time of the default tiles (:func:`~densebench_compile.bn_relu_gemm.block_m`, ``BLOCK_K``) is printed beside the best.

    python benchmarks/dense_kernel_tune.py --out DIR   # needs CUDA; one JSON line per shape in DIR/tune.jsonl
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
from pathlib import Path

COPY_CEILING_BYTES_PER_S = 4.1e12  # H200 device copies, measured (issue 6)
# (block, channels in, block's total channels, side): first and last layer of each dense block at 224 px
LAYERS = [(1, 64, 256, 56), (1, 224, 256, 56), (2, 128, 512, 28), (2, 480, 512, 28),
          (3, 256, 1024, 14), (3, 992, 1024, 14), (4, 512, 1024, 7), (4, 992, 1024, 7)]  # fmt: skip
CONFIGS = [
    {"BLOCK_M": m, "BLOCK_K": k, "num_warps": w, "num_stages": s}
    for m, k, w, s in itertools.product((32, 64, 128), (32, 64), (4, 8), (3,))
] + [{"BLOCK_M": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": s} for s in (2, 4)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-sizes", default="1,256")
    args = parser.parse_args()
    import torch
    from densebench_compile import bn_relu_gemm as k
    from triton.testing import do_bench

    args.out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for bs, (block, cin, total, side) in itertools.product(map(int, args.batch_sizes.split(",")), LAYERS):
        rows = bs * side * side
        buf = torch.randn(rows, total, device="cuda", generator=gen).half()
        a = buf[:, :cin]
        scale = torch.rand(cin, device="cuda", generator=gen) + 0.5
        shift = torch.randn(cin, device="cuda", generator=gen) * 0.3
        w = (torch.randn(cin, 128, device="cuda", generator=gen) / cin**0.5).half()
        bias = torch.randn(128, device="cuda", generator=gen) * 0.1
        operands = (a, scale, shift, w, bias)
        ref = k.reference(*operands)
        unfused_ms = do_bench(functools.partial(k.reference, *operands))
        default = dict(zip(("BLOCK_M", "num_warps"), k.block_m(rows)))
        timings = []
        for config in CONFIGS:
            try:
                out = k.launch(*operands, config)
                error = (out.float() - ref.float()).abs().max().item()
                ms = do_bench(functools.partial(k.launch, *operands, config))
            except Exception as exc:  # noqa: BLE001 - a config the GPU cannot run is a result
                timings.append({**config, "error": f"{type(exc).__name__}: {str(exc)[:120]}"})
                continue
            is_default = all(config[key] == value for key, value in default.items()) and config["BLOCK_K"] == k.BLOCK_K
            timings.append({**config, "us": round(ms * 1000, 2), "max_abs_err": error, "default": is_default})
        ok = [t for t in timings if "us" in t]
        ceiling_us = (rows * cin + rows * 128) * 2 / COPY_CEILING_BYTES_PER_S * 1e6
        line = {
            "bs": bs, "block": block, "cin": cin, "rows": rows, "ceiling_us": round(ceiling_us, 2),
            "unfused_torch_us": round(unfused_ms * 1000, 2),
            "best": min(ok, key=lambda t: t["us"]) if ok else None,
            "default": next((t for t in ok if t.get("default")), None),
            "configs": timings,
        }  # fmt: skip
        with (args.out / "tune.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        best, chosen = line["best"] or {}, line["default"] or {}
        print(
            f"bs {bs:3d} block {block} K {cin:4d}: ceiling {ceiling_us:8.2f} us  unfused {unfused_ms * 1000:8.2f} us  "
            f"default {chosen.get('us', float('nan')):8.2f} us  best {best.get('us', float('nan')):8.2f} us "
            f"{ {key: best.get(key) for key in ('BLOCK_M', 'BLOCK_K', 'num_warps', 'num_stages')} }  "
            f"err {best.get('max_abs_err')}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
