"""Tile choices for the fused BN+ReLU+GEMM kernel (the ``fused`` plugin) on DenseNet-121's layer shapes.

For the first and last layer of each dense block at batch 1 and 256 (224 px), times every tile configuration
of :func:`densebench_fused.bn_relu_gemm.launch` with ``triton.testing.do_bench`` (CUDA events), checks its
output against the torch reference, and prints the time at the device-copy ceiling for the bytes it must move
(read ``a``, write the result) beside the unfused torch sequence (BN+ReLU pass, cuBLAS GEMM, bias+ReLU pass).
The time of the default tiles (:func:`~densebench_fused.bn_relu_gemm.block_m`, ``BLOCK_K``) is printed beside the best.

    python benchmarks/dense_kernel_tune.py --out DIR   # needs CUDA; one JSON line per shape in DIR/tune.jsonl

``--gemm fp8``: instead, the FP8 kernel (``fused.gemm=fp8``) against the fp16 one at the same shapes, each at its
default tiles and at the best of the sweep, both checked against their references (the fp8 one against
:func:`~densebench_fused.bn_relu_gemm.reference_fp8`, scales calibrated on the operand itself); one line per shape
with the times in ms and fp8/fp16 ratios (below 1: fp8 faster), one JSON line per shape in DIR/fp8.jsonl.
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


def shapes(args):
    """(bs, block, cin, rows, operands) per batch size and layer: ``a`` a column slice of an fp16 block buffer,
    ``norm1``'s scale and shift, the 1x1 weights and the bias, drawn from one seeded generator."""
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    for bs, (block, cin, total, side) in itertools.product(map(int, args.batch_sizes.split(",")), LAYERS):
        rows = bs * side * side
        a = torch.randn(rows, total, device="cuda", generator=gen).half()[:, :cin]
        scale = torch.rand(cin, device="cuda", generator=gen) + 0.5
        shift = torch.randn(cin, device="cuda", generator=gen) * 0.3
        w = (torch.randn(cin, 128, device="cuda", generator=gen) / cin**0.5).half()
        bias = torch.randn(128, device="cuda", generator=gen) * 0.1
        yield bs, block, cin, rows, (a, scale, shift, w, bias)


def is_default_tiles(rows: int):
    """Whether a sweep's configuration is the kernel's own choice at ``rows`` rows (``block_m``, ``BLOCK_K``)."""
    from densebench_fused import bn_relu_gemm as k

    default = {**dict(zip(("BLOCK_M", "num_warps"), k.block_m(rows))), "BLOCK_K": k.BLOCK_K}
    return lambda config: all(config[key] == value for key, value in default.items())


def ceiling_us(rows: int, cin: int) -> float:
    """The copy ceiling's time for the bytes the GEMM must move: read ``a``, write the result (fp16 both, also for
    the FP8 kernel)."""
    return round(tile_sweep.ceiling_us((rows * cin + rows * 128) * 2), 2)


def main() -> int:
    parser = tile_sweep.parser(__doc__)
    parser.add_argument("--wide", action="store_true", help="also the larger tiles and deeper pipelines (WIDE)")
    parser.add_argument("--gemm", choices=("native", "fp8"), default="native",
                        help="fp8: time the FP8 kernel against the fp16 one instead of sweeping the fp16 one")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU (the kernels' speed is what it measures)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gemm == "fp8":
        return compare_fp8(args)
    from densebench_fused import bn_relu_gemm as k
    from triton.testing import do_bench

    for bs, block, cin, rows, operands in shapes(args):
        ref = k.reference(*operands)
        unfused_ms = do_bench(functools.partial(k.reference, *operands))
        found = tile_sweep.sweep(CONFIGS + (WIDE if args.wide else []), functools.partial(k.launch, *operands), ref,
                                 is_default_tiles(rows))  # fmt: skip
        line = {"bs": bs, "block": block, "cin": cin, "rows": rows, "ceiling_us": ceiling_us(rows, cin),
                "unfused_torch_us": round(unfused_ms * 1000, 2), **found}  # fmt: skip
        tile_sweep.record(args.out / "tune.jsonl", f"bs {bs:3d} block {block} K {cin:4d}", line,
               {"unfused": unfused_ms * 1000})  # fmt: skip
    return 0


def compare_fp8(args) -> int:
    """``--gemm fp8``: per shape, the fp16 and the FP8 kernel, each swept over the same tiles; one line per shape."""
    import json

    import torch
    from densebench_fused import bn_relu_gemm as k

    configs = CONFIGS + (WIDE if args.wide else [])
    for bs, block, cin, rows, (a, scale, shift, w, bias) in shapes(args):
        act_scale = torch.relu(a.float() * scale + shift).amax(0).clamp_min(k.AMAX_FLOOR) / k.E4M3_MAX
        scale8, shift8, wq, w_scale = k.fp8_operands(scale, shift, w, act_scale)
        native_ref = k.reference(a, scale, shift, w, bias)
        fp8_ref = k.reference_fp8(a, scale8, shift8, wq, w_scale, bias)
        native = tile_sweep.sweep(configs, functools.partial(k.launch, a, scale, shift, w, bias), native_ref,
                                  is_default_tiles(rows))  # fmt: skip
        fp8 = tile_sweep.sweep(configs, functools.partial(k.launch, a, scale8, shift8, wq, bias, w_scale=w_scale),
                               fp8_ref, is_default_tiles(rows))  # fmt: skip
        quantization = ((fp8_ref.float() - native_ref.float()).norm() / native_ref.float().norm()).item()
        line = {"bs": bs, "block": block, "cin": cin, "rows": rows, "ceiling_us": ceiling_us(rows, cin),
                "fp8_vs_fp16_rel_err": quantization, "fp16": native, "fp8": fp8}  # fmt: skip
        with (args.out / "fp8.jsonl").open("a") as fh:
            fh.write(json.dumps(line) + "\n")

        def ms(found, which):
            return (found[which] or {}).get("us", float("nan")) / 1000

        print(f"bs {bs:3d} block {block} K {cin:4d}: ceiling {line['ceiling_us'] / 1000:.5f} ms  "
              f"default fp16 {ms(native, 'default'):.5f} ms fp8 {ms(fp8, 'default'):.5f} ms "
              f"ratio {ms(fp8, 'default') / ms(native, 'default'):.3f}  "
              f"best fp16 {ms(native, 'best'):.5f} ms fp8 {ms(fp8, 'best'):.5f} ms "
              f"ratio {ms(fp8, 'best') / ms(native, 'best'):.3f}  "
              f"fp8 err vs its reference {(fp8['best'] or {}).get('rel_err')}  fp8 vs fp16 {quantization:.3f}",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
