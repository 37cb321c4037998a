"""Tile choices for the dense layer's 3x3 conv written into the block's buffer (``densebench_fused.conv3x3``).

For DenseNet-121's four 3x3 conv shapes (128 -> 32 channels at 56, 28, 14 and 7 px sides, 224 px input) at batch
1 and 256, times every tile configuration of :func:`densebench_fused.conv3x3.conv3x3_into` with
``triton.testing.do_bench`` (CUDA events), writing into the last 32-column slice of a buffer as wide as the
block's output (256, 512, 1024, 1024 channels), and checks its output against cuDNN. Beside it: today's path,
cuDNN ``F.conv2d`` on the NCHW view of the bottleneck plus the copy into the buffer's slice, the conv alone, and
the time at the device-copy ceiling for the bytes the kernel must move (read the bottleneck once, write the
slice). The time of the default tiles (:func:`~densebench_fused.conv3x3.tiles`) is printed beside the best.

    python benchmarks/conv3x3_tune.py --out DIR   # needs CUDA; one JSON line per shape in DIR/conv3x3_tune.jsonl
"""

from __future__ import annotations

import functools
import itertools

import tile_sweep  # benchmarks/, beside this script

BOTTLENECK, GROWTH = 128, 32
# (block, block's total channels, side) at 224 px; the slice written is the block's last layer's
BLOCKS = [(1, 256, 56), (2, 512, 28), (3, 1024, 14), (4, 1024, 7)]
CONFIGS = [
    {"BLOCK_M": m, "BLOCK_K": k, "num_warps": w, "num_stages": 3}
    for m, k, w in itertools.product((32, 64, 128), (32, 64, 128), (4, 8))
] + [{"BLOCK_M": m, "BLOCK_K": 64, "num_warps": 4, "num_stages": s} for m, s in itertools.product((64, 128), (2, 4))]


def main() -> int:
    parser = tile_sweep.parser(__doc__)
    parser.add_argument("--dtypes", default="float16", help="comma-separated: float16, bfloat16, float32")
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F
    from densebench_fused import conv3x3 as k
    from triton.testing import do_bench

    # fp32: cuDNN and the kernel follow the same TF32 setting (the kernel reads torch.backends.cuda.matmul)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    args.out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    shapes = itertools.product(args.dtypes.split(","), map(int, args.batch_sizes.split(",")), BLOCKS)
    for dtype_name, bs, (block, total, side) in shapes:
        dtype = getattr(torch, dtype_name)
        rows, first = bs * side * side, total - GROWTH
        bottleneck = torch.randn(rows, BOTTLENECK, device="cuda", generator=gen).to(dtype)
        weight = torch.randn(GROWTH, BOTTLENECK, 3, 3, device="cuda", generator=gen) / (9 * BOTTLENECK) ** 0.5
        weight = weight.to(dtype)
        packed = k.pack_weight(weight)
        buf = torch.randn(rows, total, device="cuda", generator=gen).to(dtype)
        features = buf.view(bs, side, side, total).permute(0, 3, 1, 2)  # NCHW shape, NHWC memory, as in the block
        nchw = bottleneck.view(bs, side, side, BOTTLENECK).permute(0, 3, 1, 2)
        out = buf[:, first : first + GROWTH]

        def cudnn_and_copy(features=features, nchw=nchw, weight=weight, first=first):
            features[:, first : first + GROWTH].copy_(F.conv2d(nchw, weight, padding=1))

        cudnn_and_copy()
        ref = out.clone()
        cudnn_ms = do_bench(functools.partial(F.conv2d, nchw, weight, padding=1))
        cudnn_copy_ms = do_bench(cudnn_and_copy)
        default = k.tiles(rows, dtype)

        def launch(config, out=out, bottleneck=bottleneck, packed=packed, bs=bs, side=side):
            out.zero_()
            return k.conv3x3_into(bottleneck, packed, out, bs, side, side, config)

        found = tile_sweep.sweep(CONFIGS, launch, ref, lambda config, default=default: config == default)
        size = torch.finfo(dtype).bits // 8
        moved = (rows * BOTTLENECK + rows * GROWTH + 9 * BOTTLENECK * GROWTH) * size  # bytes: read once, write once
        line = {"dtype": dtype_name, "bs": bs, "block": block, "side": side, "rows": rows, "buffer_channels": total,
                "ceiling_us": round(tile_sweep.ceiling_us(moved), 2), "cudnn_us": round(cudnn_ms * 1000, 2),
                "cudnn_and_copy_us": round(cudnn_copy_ms * 1000, 2), **found}  # fmt: skip
        tile_sweep.record(args.out / "conv3x3_tune.jsonl", f"{dtype_name:8s} bs {bs:3d} block {block} {side:2d}px", line,
               {"cudnn": cudnn_ms * 1000, "cudnn+copy": cudnn_copy_ms * 1000})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
