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

from densebench_core.model import make_inputs  # noqa: E402
from densebench_core.testing import densenet_with_bn_statistics  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    model = densenet_with_bn_statistics()
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
    model = densenet_with_bn_statistics()
    assert transform(model) == replaced
    assert not left(model)
    with torch.no_grad():
        got = model(inputs)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_fused_op_traces_with_its_fake_implementation(reference):
    inputs, expected = reference
    model = densenet_with_bn_statistics()
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
