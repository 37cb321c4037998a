"""Tests of the ``amp`` backend: the kit's contract suite, plus what is particular to autocast.

This machine has no GPU. The fp16 + GradScaler training path is exercised on the CPU through the plugin's
hooks with a tiny model (CPU autocast supports fp16 in recent torch; DenseNet in fp16 on a CPU is far too slow
for a test); on CUDA the same code runs with a CUDA GradScaler.
"""

from __future__ import annotations

import pytest
import torch
from densebench_amp import plugin

from densebench_core.context import RunContext
from densebench_core.testing import (
    BackendContractSuite,
    make_context,
    refuses_options,
    run_in_process,
)


class TestAmp(BackendContractSuite):
    backend = "amp"


def make_ctx(options=None, device="cpu", mode="inference", members=None) -> RunContext:
    return make_context("amp", options, device=device, mode=mode, members=members)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    )  # fmt: skip


# -- options --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, device, expected",
    [
        (None, "cpu", "bf16"),
        (None, "cuda", "fp16"),  # RunContext only looks at the device type: no GPU needed
        ({"dtype": "auto"}, "cuda", "fp16"),
        ({"dtype": "bf16"}, "cuda", "bf16"),
        ({"dtype": "fp16"}, "cpu", "fp16"),
        ({"dtype": "BFloat16"}, "cpu", "bf16"),
        ({"dtype": "half"}, "cpu", "fp16"),
    ],
)
def test_dtype_option(options, device, expected):
    assert plugin.resolve_dtype(make_ctx(options, device)) == expected


test_bad_options_are_refused_while_parsing = refuses_options("amp", [
    ({"dtype": "int8"}, "amp.dtype must be one of auto, fp16, bf16, not 'int8'"),
    ({"init_scale": "0"}, "amp.init_scale must be a number >= 1, not '0'"),
    ({"init_scale": "lots"}, "amp.init_scale must be a number >= 1, not 'lots'"),
])  # an unknown key: the kit's test_unknown_option_key_is_refused_while_parsing


def test_bf16_available_on_cpu():
    assert plugin.autocast_problem("cpu", "bf16") is None


# -- inference ------------------------------------------------------------------------------------------------
def test_bf16_inference_on_cpu_sets_precision_and_output_dtype():
    ctx = make_ctx()
    model = tiny_model().eval()
    wrapped = plugin.prepare_model(model=model, ctx=ctx)
    assert ctx.precision == "amp-bf16"
    assert isinstance(wrapped, plugin.AutocastModule) and wrapped.module is model
    assert not wrapped.training, "the wrapper must keep the wrapped model's eval mode (freezing needs it)"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = plugin.run_step(model=wrapped, inputs=x, ctx=ctx)
        reference = model(x)
    assert out.dtype == torch.bfloat16  # the Linear ran under autocast
    assert x.dtype == torch.float32  # the inputs are not touched: autocast casts inside the region
    assert next(model.parameters()).dtype == torch.float32  # neither are the weights
    assert torch.nn.functional.cosine_similarity(out.float().flatten(), reference.flatten(), dim=0) > 0.99


def test_wrapper_keeps_submodule_modes():
    model = tiny_model().train()
    model[1].eval()  # a frozen batch norm inside a training model
    wrapped = plugin.wrap(model, "cpu", torch.bfloat16)
    assert wrapped.training and not model[1].training


def test_wraps_a_plain_callable():
    linear = torch.nn.Linear(4, 4)
    wrapped = plugin.wrap(lambda x: linear(x), "cpu", torch.bfloat16)
    assert wrapped(torch.randn(1, 4)).dtype == torch.bfloat16


def test_densenet_bf16_inference_row():
    result = run_in_process("amp", image_size=32)
    assert result["status"] == "ok", result.get("reason")
    assert result["precision"] == "amp-bf16"
    assert result["accuracy_ok"] is True and result["accuracy_tolerance"] == "bf16"


def test_composes_under_a_later_stage():
    """channels_last+amp: the layout stage runs first, amp wraps its NHWC model; one ok row."""
    result = run_in_process("channels_last+amp", image_size=32)
    assert result["status"] == "ok", result.get("reason")
    assert result["precision"] == "amp-bf16"


# -- training -------------------------------------------------------------------------------------------------
def train_steps(ctx, model, steps):
    wrapped = plugin.prepare_model(model=model, ctx=ctx)
    ctx.optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    ctx.loss_fn = torch.nn.CrossEntropyLoss()
    ctx.targets = torch.tensor([1, 2])
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    outputs = [plugin.run_step(model=wrapped, inputs=x, ctx=ctx) for _ in range(steps)]
    return wrapped, outputs


def test_bf16_training_has_no_loss_scaling():
    ctx = make_ctx(mode="training")
    model = tiny_model().train()
    before = [p.detach().clone() for p in model.parameters()]
    _, outputs = train_steps(ctx, model, 2)
    scaler = ctx.state["amp"]["scaler"]
    assert not scaler.is_enabled()
    assert ctx.precision == "amp-bf16" and outputs[-1].dtype == torch.bfloat16
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "no optimizer update"
    assert all(p.dtype == torch.float32 for p in model.parameters()), "master weights stay fp32"
    assert plugin.after_measure(ctx=ctx) is None and not ctx.notes


def test_fp16_training_uses_the_grad_scaler():
    if plugin.autocast_problem("cpu", "fp16"):
        pytest.skip(f"fp16 autocast on the CPU: {plugin.autocast_problem('cpu', 'fp16')}")
    ctx = make_ctx({"dtype": "fp16"}, mode="training")
    model = tiny_model().train()
    before = [p.detach().clone() for p in model.parameters()]
    _, outputs = train_steps(ctx, model, 2)
    scaler = ctx.state["amp"]["scaler"]
    assert scaler.is_enabled() and scaler.get_scale() == 65536.0  # no overflow: the scale is untouched
    assert ctx.precision == "amp-fp16" and outputs[-1].dtype == torch.float16
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "no optimizer update"
    assert plugin.after_measure(ctx=ctx) is None and not ctx.notes


def test_fp16_overflow_skips_steps_and_is_noted():
    """A loss scale of 2**120 overflows fp16 gradients: the scaler skips the step and halves the scale."""
    if plugin.autocast_problem("cpu", "fp16"):
        pytest.skip(f"fp16 autocast on the CPU: {plugin.autocast_problem('cpu', 'fp16')}")
    ctx = make_ctx({"dtype": "fp16", "init_scale": str(2.0**120)}, mode="training")
    assert ctx.option("amp", "init_scale") == 2.0**120  # typed: a float, not text
    model = tiny_model().train()
    before = [p.detach().clone() for p in model.parameters()]
    train_steps(ctx, model, 3)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters())), "skipped steps must not update"
    assert ctx.state["amp"]["scaler"].get_scale() == 2.0**117
    assert plugin.after_measure(ctx=ctx) is None  # a note, not a failure
    assert "skipped about 3 of 3 optimizer steps" in ctx.notes[0]
