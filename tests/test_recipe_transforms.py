"""The recipe search's model rewrites keep DenseNet-121's outputs (benchmarks/recipe_transforms.py).

On this CPU-only machine the fused op runs its CPU path (conv2d then relu); its CUDA path,
``torch.cudnn_convolution_relu``, needs a GPU and is exercised by the search on the H200 (docs/perf-notes.md).
What is checked here: the folding arithmetic, the module surgery, and that ``torch.compile`` traces the custom
op through its fake implementation with the right output shape and memory format.
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import recipe_transforms  # noqa: E402

from densebench_core.model import build_model, make_inputs  # noqa: E402


def _trained_like_model():
    """DenseNet-121 whose BN statistics are not the identity (as after training), in eval mode."""
    model = build_model("random", 0)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def reference():
    model = _trained_like_model()
    inputs = make_inputs(2, 32, 0).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return inputs, model(inputs)


def _norm2_left(model) -> bool:
    return any(isinstance(getattr(layer, "norm2", None), torch.nn.BatchNorm2d) for layer in model.modules())


def _plain_1x1_left(model) -> bool:
    return any(recipe_transforms._is_plain_1x1(m) for m in model.modules())


@pytest.mark.parametrize(
    "transform, replaced, left",
    [
        (lambda m: recipe_transforms.fold_norm2(m, fused=False), 58, _norm2_left),  # 6 + 12 + 24 + 16 dense layers
        (lambda m: recipe_transforms.fold_norm2(m, fused=True), 58, _norm2_left),
        (recipe_transforms.conv1x1_as_matmul, 61, _plain_1x1_left),  # 58 bottlenecks + 3 transitions
    ],
    ids=["fold-norm2", "fold-norm2-fused", "1x1-as-matmul"],
)
def test_rewrites_keep_the_output(reference, transform, replaced, left):
    inputs, expected = reference
    model = _trained_like_model()
    assert transform(model) == replaced
    assert not left(model)
    with torch.no_grad():
        got = model(inputs)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_fused_op_traces_with_its_fake_implementation(reference):
    inputs, expected = reference
    model = _trained_like_model()
    recipe_transforms.fold_norm2(model, fused=True)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        got = compiled(inputs)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    x = inputs[:, :3].contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(8, 3, 3, 3), torch.randn(8)
    real = recipe_transforms.conv_bias_relu(x, weight, bias, 1)
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fake = recipe_transforms.conv_bias_relu(
            mode.from_tensor(x), mode.from_tensor(weight), mode.from_tensor(bias), 1
        )
    assert fake.shape == real.shape and fake.stride() == real.stride()
    assert real.min() >= 0
