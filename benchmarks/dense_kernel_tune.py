"""Tile choices for the fused BN+ReLU+GEMM kernel (the ``fused`` plugin) on DenseNet-121's layer shapes.

For the first and last layer of each dense block at batch 1 and 256 (224 px), times every tile configuration
of :func:`densebench_fused.bn_relu_gemm.launch` with ``triton.testing.do_bench`` (CUDA events), checks its
output against the torch reference, and prints the time at the device-copy ceiling for the bytes it must move
(read ``a``, write the result) beside the unfused torch sequence (BN+ReLU pass, cuBLAS GEMM, bias+ReLU pass).
The time of the default tiles (:func:`~densebench_fused.bn_relu_gemm.block_m`, ``BLOCK_K``) is printed beside the best.

    python benchmarks/dense_kernel_tune.py --out DIR   # needs CUDA; one JSON line per shape in DIR/tune.jsonl
"""

from __future__ import annotations

import functools
import itertools

import tile_sweep  # benchmarks/, beside this script

# (block, channels in, block's total channels, side): first and last layer of each dense block at 224 px
LAYERS = [(1, 64, 256, 56), (1, 224, 256, 56), (2, 128, 512, 28), (2, 480, 512, 28),
          (3, 256, 1024, 14), (3, 992, 1024, 14), (4, 512, 1024, 7), (4, 992, 1024, 7)]  # fmt: skip
CONFIGS = [
    {"BLOCK_M": m, "BLOCK_K": k, "num_warps": w, "num_stages": s}
    for m, k, w, s in itertools.product((32, 64, 128), (32, 64), (4, 8), (3,))
] + [{"BLOCK_M": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": s} for s in (2, 4)]
#: session 6: larger tiles and deeper pipelines for batch 256 (``--wide``)
WIDE = [
    {"BLOCK_M": m, "BLOCK_K": k, "num_warps": w, "num_stages": s}
    for m, k, w, s in itertools.product((64, 128, 256), (64, 128), (4, 8), (3, 4, 5))
]


def main() -> int:
    parser = tile_sweep.parser(__doc__)
    parser.add_argument("--wide", action="store_true", help="also the larger tiles and deeper pipelines (WIDE)")
    args = parser.parse_args()
    import torch
    from densebench_fused import bn_relu_gemm as k
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
        default = {**dict(zip(("BLOCK_M", "num_warps"), k.block_m(rows))), "BLOCK_K": k.BLOCK_K}
        found = tile_sweep.sweep(CONFIGS + (WIDE if args.wide else []), functools.partial(k.launch, *operands), ref,
                      lambda config, default=default: all(config[key] == value for key, value in default.items()))
        moved = (rows * cin + rows * 128) * 2  # bytes: read a, write the result
        line = {"bs": bs, "block": block, "cin": cin, "rows": rows, "ceiling_us": round(tile_sweep.ceiling_us(moved), 2),
                "unfused_torch_us": round(unfused_ms * 1000, 2), **found}  # fmt: skip
        tile_sweep.record(args.out / "tune.jsonl", f"bs {bs:3d} block {block} K {cin:4d}", line,
               {"unfused": unfused_ms * 1000})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
