"""Model rewrites the recipe search tries on DenseNet-121; each keeps the arithmetic (tests/test_recipe_transforms.py).

* :func:`conv1x1_as_matmul`: 1x1 convolutions as matrix products (GEMMs Inductor can autotune and fuse).
* :func:`fold_norm2`: each dense layer's ``conv1 -> norm2 -> relu2`` (a BN that directly follows a conv, which
  Inductor's freezing leaves as a separate BN+ReLU kernel per layer) folded into one convolution with a bias,
  followed by ReLU; with ``fused=True`` conv+bias+ReLU is one cuDNN call (``torch.cudnn_convolution_relu``)
  on CUDA, wrapped as the custom op ``densebench::conv_bias_relu`` so that ``torch.compile`` and CUDA graphs
  treat it as one opaque kernel. Inference only (BN in eval mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


# -- 1x1 convolutions as matmuls --------------------------------------------------------------------------------
class MatmulConv1x1(torch.nn.Module):
    """A 1x1, stride-1, ungrouped convolution as ``[N*H*W, C] @ [C, O]`` (free views on channels_last input)."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.weight = conv.weight
        self.bias = conv.bias

    def forward(self, x):
        n, c, h, w = x.shape
        y = x.permute(0, 2, 3, 1).reshape(-1, c) @ self.weight.reshape(self.weight.shape[0], c).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def _is_plain_1x1(module) -> bool:
    return (
        isinstance(module, torch.nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.padding in ((0, 0), "valid")
        and module.groups == 1
    )


def conv1x1_as_matmul(model) -> int:
    """Replace every plain 1x1 convolution of ``model`` in place; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_plain_1x1(child):
                setattr(parent, name, MatmulConv1x1(child))
                replaced += 1
    return replaced


# -- conv + BN + ReLU as one call -------------------------------------------------------------------------------
def _output_format(x):
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) else None


@torch.library.custom_op("densebench::conv_bias_relu", mutates_args=())
def conv_bias_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: int) -> torch.Tensor:
    """relu(conv2d(x, weight, bias, stride 1, padding)): one cuDNN call on CUDA, conv2d then relu elsewhere."""
    if x.is_cuda:
        out = torch.cudnn_convolution_relu(x, weight, bias, (1, 1), (padding, padding), (1, 1), 1)
    else:
        out = F.relu(F.conv2d(x, weight, bias, padding=padding))
    fmt = _output_format(x)
    return out.contiguous(memory_format=fmt) if fmt is not None else out.contiguous()


@conv_bias_relu.register_fake
def _(x, weight, bias, padding):
    n, _, h, w = x.shape
    out = x.new_empty(
        (n, weight.shape[0], h + 2 * padding - weight.shape[2] + 1, w + 2 * padding - weight.shape[3] + 1)
    )
    fmt = _output_format(x)
    return out.contiguous(memory_format=fmt) if fmt is not None else out


class ConvBiasReLU(torch.nn.Module):
    """A stride-1 convolution with bias followed by ReLU, fused into one call when ``fused``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int, fused: bool) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = torch.nn.Parameter(bias, requires_grad=False)
        self.padding = padding
        self.fused = fused

    def forward(self, x):
        if self.fused:
            return conv_bias_relu(x, self.weight, self.bias.to(x.dtype), self.padding)
        return F.relu(F.conv2d(x, self.weight, self.bias, padding=self.padding))


def fold_bn_into_conv(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (BN in eval mode, running statistics)."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
    return weight.detach().clone(), bias.detach().clone()


def fold_norm2(model, fused: bool = False) -> int:
    """Fold every torchvision ``_DenseLayer``'s ``conv1 -> norm2 -> relu2`` into :class:`ConvBiasReLU`.

    The layer's forward calls ``conv1`` then ``relu2(norm2(.))``; after folding ``conv1`` does all three and
    ``norm2``/``relu2`` become identities. Returns the number of layers folded.
    """
    folded = 0
    for layer in model.modules():
        if all(hasattr(layer, n) for n in ("conv1", "norm2", "relu2", "conv2")) and isinstance(
            layer.norm2, torch.nn.BatchNorm2d
        ):
            conv = layer.conv1
            if conv.stride != (1, 1) or conv.groups != 1 or conv.dilation != (1, 1):
                continue
            weight, bias = fold_bn_into_conv(conv, layer.norm2)
            layer.conv1 = ConvBiasReLU(weight, bias, conv.padding[0], fused)
            layer.norm2 = torch.nn.Identity()
            layer.relu2 = torch.nn.Identity()
            folded += 1
    return folded
