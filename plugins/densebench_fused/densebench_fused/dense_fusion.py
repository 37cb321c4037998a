"""The ``fused`` rewrite: DenseNet's dense blocks around one fused GEMM per layer.

torchvision's dense layer concatenates every earlier feature map of its block (``torch.cat``), runs
``norm1 -> relu -> conv1 (1x1)`` on it, then ``norm2 -> relu -> conv2 (3x3)``, and returns 32 new channels.
Compiled, that is per layer: a pass writing BN+ReLU of the whole concatenation, the 1x1 conv reading it back, a
``norm2`` BN+ReLU pass, and the 3x3 conv -- the profile in docs/perf-notes.md shows these memory-bound passes
take more than half of a batch-256 step, and at batch 1 each is one more kernel launch in a ~424-kernel graph.

The rewrite (inference only; BN uses its running statistics), in the model's dtype or the one asked for
(``fp32``, ``fp16``, ``bf16``; under autocast the blocks run in the autocast dtype, as its convolutions would):

* each dense block becomes one op, ``densebench::dense_block`` (it takes the block by key), that keeps the
  block's features in one preallocated NHWC buffer (no concatenation: each layer appends its 32 channels in
  place) and runs per layer
  one :mod:`~densebench_fused.bn_relu_gemm` kernel (``norm1``+ReLU as prologue, ``conv1``, ``norm2`` folded
  into the weights + ReLU as epilogue), then ``conv2`` as the :mod:`~densebench_fused.conv3x3` kernel, which
  writes its 32 channels straight into the buffer (``conv="cudnn"``: cuDNN, then a copy into the buffer);
* each transition runs its 2x2 average pool before its 1x1 conv instead of after (both are linear, so they
  commute exactly): the conv does a quarter of the work and the pool fuses into the BN+ReLU pass.

With activation scales from :func:`calibrate` (fp16 or bf16 blocks only), the 1x1 GEMMs run in FP8 (e4m3
products, fp32 accumulation; :mod:`~densebench_fused.bn_relu_gemm` has the arithmetic); the 3x3 convs do not change.

The op is opaque to ``torch.compile`` (a ``torch.library`` custom op with a shape function), so Inductor compiles
the rest of the network around it and CUDA graphs (``mode=reduce-overhead``) record it like any other kernel.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict

import torch
import torch.nn.functional as F

from densebench_fused.bn_relu_gemm import AMAX_FLOOR, E4M3_MAX, bn_relu_gemm, fp8_operands
from densebench_fused.conv3x3 import conv3x3, pack_weight


def _bn_affine(bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BatchNorm as ``x * scale + shift``, in fp32."""
    scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
    return scale, bn.bias.float() - bn.running_mean.float() * scale


def _features_like(x, channels: int) -> torch.Tensor:
    n, _, h, w = x.shape
    return torch.empty((n, channels, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)


# The op takes its block by key, not its ~290 weight tensors as arguments (as vLLM's attention op takes a layer
# name): compiled, every tensor argument would be an input of the graph, and CUDA graph trees copy such inputs
# (measured on the H200: 317 device-to-device copies per replay, 2.15 ms at batch 1; 0.95 ms by key).
_BLOCKS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_keys = itertools.count()


@torch.library.custom_op("densebench::dense_block", mutates_args=())
def dense_block(x: torch.Tensor, block: int, channels: int) -> torch.Tensor:
    """Run the :class:`FusedDenseBlock` registered as ``block`` on ``x``; returns its ``channels`` output channels."""
    module = _BLOCKS.get(block)
    if module is None:
        raise RuntimeError(f"densebench::dense_block: no live FusedDenseBlock with key {block}")
    return module.run(x)


@dense_block.register_fake
def _(x, block, channels):
    return _features_like(x, channels)


class FusedDenseLayer(torch.nn.Module):
    """One torchvision ``_DenseLayer`` (eval mode) as the operands of :func:`bn_relu_gemm` and ``conv2``.

    ``scale``/``shift`` are its ``norm1`` (fp32), ``weight1`` [C_in, bottleneck] and ``bias1`` its ``conv1`` with
    ``norm2`` folded in, ``weight2`` its ``conv2`` (3x3, padding 1): OIHW for cuDNN, or packed for the
    :mod:`~densebench_fused.conv3x3` kernel; the weights in ``dtype``. With ``act_scale`` (``s_a`` [C_in], from
    :func:`calibrate`) the GEMM's operands are FP8 ones (:func:`~densebench_fused.bn_relu_gemm.fp8_operands`):
    ``weight1`` e4m3 [bottleneck, C_in] and ``w_scale`` [bottleneck]; else ``w_scale`` is None.
    """

    def __init__(self, layer: torch.nn.Module, dtype: torch.dtype, packed: bool, act_scale=None) -> None:
        super().__init__()
        with torch.no_grad():
            scale1, shift1 = _bn_affine(layer.norm1)
            scale2, shift2 = _bn_affine(layer.norm2)
            conv1 = layer.conv1.weight  # [bottleneck, C_in, 1, 1]
            weight1 = (conv1.float().flatten(1) * scale2[:, None]).t().contiguous()
            w_scale = None
            if act_scale is not None:
                scale1, shift1, weight1, w_scale = fp8_operands(scale1, shift1, weight1, act_scale.float())
            self.register_buffer("scale", scale1.contiguous())
            self.register_buffer("shift", shift1.contiguous())
            self.register_buffer("weight1", weight1 if act_scale is not None else weight1.to(dtype))
            self.register_buffer("w_scale", w_scale)
            self.register_buffer("bias1", shift2.contiguous())
            weight2 = layer.conv2.weight.detach().to(dtype, copy=True)
            self.register_buffer("weight2", pack_weight(weight2) if packed else weight2)


class FusedDenseBlock(torch.nn.Module):
    """A torchvision ``_DenseBlock`` (eval mode) as one :func:`dense_block` call over its :class:`FusedDenseLayer` s.

    Layer ``i`` reads the first ``C0 + i*growth`` channels of the block's buffer and appends ``growth`` channels.
    ``act_scales``: one ``s_a`` per layer (:func:`calibrate`) for FP8 GEMMs, which need fp16 or bf16 blocks.
    """

    def __init__(self, block: torch.nn.Module, dtype: torch.dtype | None = None, conv: str = "triton",
                 act_scales: list | None = None) -> None:  # fmt: skip
        super().__init__()
        layers = list(block.children())
        self.dtype = dtype or layers[0].conv1.weight.dtype
        if act_scales is not None and self.dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"fp8 GEMMs need fp16 or bf16 dense blocks, not {self.dtype}")
        self.conv = conv
        self.layers = torch.nn.ModuleList(
            FusedDenseLayer(layer, self.dtype, conv == "triton", act_scales[i] if act_scales else None)
            for i, layer in enumerate(layers)
        )
        self.growth = layers[0].conv2.weight.shape[0]
        self.channels = layers[0].conv1.weight.shape[1] + self.growth * len(layers)  # the block's output channels
        self._register()

    def _register(self) -> None:
        self.key = next(_keys)
        _BLOCKS[self.key] = self

    def __setstate__(self, state) -> None:
        """A copy (``copy.deepcopy``, unpickling) registers under its own key, so it runs its own weights."""
        super().__setstate__(state)
        self._register()

    def forward(self, x):
        return dense_block(x.to(self.dtype, memory_format=torch.channels_last), self.key, self.channels)

    def run(self, x):
        """The block, eagerly: a preallocated NHWC buffer, each layer appending its ``growth`` channels in place."""
        with torch.autocast(x.device.type, enabled=False):  # in the block's dtype, also when called under autocast
            return self._run(x)

    def _run(self, x):
        n, c0, h, w = x.shape
        features = _features_like(x, self.channels)
        features[:, :c0].copy_(x)
        rows = features.permute(0, 2, 3, 1).reshape(n * h * w, self.channels)  # a view: NHWC in memory
        channels = c0
        for layer in self.layers:
            bottleneck = bn_relu_gemm(rows[:, :channels], layer.scale, layer.shift, layer.weight1, layer.bias1,
                                      layer.w_scale)  # fmt: skip
            if self.conv == "triton":
                conv3x3(bottleneck, layer.weight2, rows[:, channels : channels + self.growth], n, h, w)
            else:
                bottleneck = bottleneck.view(n, h, w, -1).permute(0, 3, 1, 2)  # NCHW shape, NHWC memory
                features[:, channels : channels + self.growth].copy_(F.conv2d(bottleneck, layer.weight2, padding=1))
            channels += self.growth
        return features


def _is_dense_block(module) -> bool:
    layers = list(module.children())
    return bool(layers) and all(
        all(hasattr(layer, name) for name in ("norm1", "conv1", "norm2", "conv2")) for layer in layers
    )


def _is_transition(module) -> bool:
    names = [name for name, _ in module.named_children()]
    return names == ["norm", "relu", "conv", "pool"] and isinstance(module.pool, torch.nn.AvgPool2d)


def _pool_first(transition) -> torch.nn.Sequential:
    parts = OrderedDict((name, getattr(transition, name)) for name in ("norm", "relu", "pool", "conv"))
    return torch.nn.Sequential(parts)


def calibrate(model, images) -> dict:
    """Per-input-channel activation scales of every dense layer's GEMM, for FP8.

    Runs ``model`` (the unfused DenseNet, eval) on ``images`` with a forward hook on each dense layer's ``conv1``,
    whose input is ``relu(norm1(x))``: ``s_a[c] = amax over the images of that input's channel c / 448`` (the
    amax at least :data:`~densebench_fused.bn_relu_gemm.AMAX_FLOOR`). Returns ``{dense layer: s_a}`` (fp32, on the
    model's device), for :func:`fuse_dense_blocks`.
    """
    layers = [layer for block in model.modules() if _is_dense_block(block) for layer in block.children()]
    amax = {}

    def record(layer):
        def hook(module, args, output):
            seen = args[0].detach().float().amax(dim=(0, 2, 3))
            amax[layer] = seen if layer not in amax else torch.maximum(amax[layer], seen)

        return hook

    handles = [layer.conv1.register_forward_hook(record(layer)) for layer in layers]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return {layer: amax[layer].clamp_min(AMAX_FLOOR) / E4M3_MAX for layer in layers}


def fuse_dense_blocks(model, dtype: torch.dtype | None = None, conv: str = "triton",
                      act_scales: dict | None = None) -> dict[str, int]:  # fmt: skip
    """Rewrite ``model`` (a torchvision DenseNet in eval mode) in place; returns what was rewritten.

    :param dtype: the dense blocks' arithmetic (their weights are converted); None: the weights' own dtype.
    :param conv: the 3x3 convs: ``triton`` (written into the block buffer) or ``cudnn`` (then a copy).
    :param act_scales: :func:`calibrate`'s scales (of this model, before the rewrite): the 1x1 GEMMs in FP8.
    Raises ValueError when the model has no dense block to rewrite or is in training mode, or for FP8 GEMMs in
    blocks that are not fp16 or bf16.
    """
    if model.training:
        raise ValueError("the fused rewrite is for inference (BatchNorm with running statistics)")
    counts = {"blocks": 0, "layers": 0, "transitions": 0}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_dense_block(child):
                scales = [act_scales[layer] for layer in child.children()] if act_scales is not None else None
                fused = FusedDenseBlock(child, dtype, conv, scales)
                setattr(parent, name, fused)
                counts["blocks"] += 1
                counts["layers"] += len(fused.layers)
            elif _is_transition(child):
                setattr(parent, name, _pool_first(child))
                counts["transitions"] += 1
    if not counts["blocks"]:
        raise ValueError("the model has no DenseNet dense block (layers with norm1, conv1, norm2, conv2) to rewrite")
    return counts
