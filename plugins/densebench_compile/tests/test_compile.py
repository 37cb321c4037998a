"""Tests of the ``compile`` backend: the kit's contract suite, plus options and recompilation detection.

Real ``torch.compile`` on the CPU throughout. DenseNet-121 is compiled only by the contract suite (inference,
training, and the CLI run, which finds Inductor's on-disk cache warm); the plugin's own tests use a tiny model.
"""

from __future__ import annotations

import pytest
import torch
from densebench_compile import plugin

from densebench_core.context import RunContext
from densebench_core.options import OptionError
from densebench_core.testing import BackendContractSuite, make_context, tiny_model


class TestCompile(BackendContractSuite):
    backend = "compile"


def make_ctx(options=None, mode="inference", device="cpu") -> RunContext:
    return make_context("compile", options, device=device, mode=mode, batch_size=1, warmup=2)


# -- options --------------------------------------------------------------------------------------------------
def test_defaults():
    options = plugin.resolve_options(make_ctx())
    assert options.mode == "default" and options.backend == "inductor"
    assert options.freezing is True  # inference
    assert options.dynamic is False and options.fullgraph is False and options.recompile_limit == 8
    assert plugin.resolve_options(make_ctx(mode="training")).freezing is False


@pytest.mark.parametrize("mode", plugin.MODES)
def test_every_mode_is_accepted(mode):
    options = plugin.resolve_options(make_ctx({"mode": mode}))
    kwargs = plugin.compile_kwargs(options)
    assert kwargs["options"]["freezing"] is True
    assert kwargs["options"].get("triton.cudagraphs", False) == (mode in plugin.CUDAGRAPH_MODES)
    assert kwargs["options"].get("max_autotune", False) == mode.startswith("max-autotune")
    assert "mode" not in kwargs  # passed as its Inductor options, with freezing (torch refuses both)


def test_options_parse():
    options = plugin.resolve_options(
        make_ctx({"freezing": "false", "dynamic": "auto", "fullgraph": "true", "recompile_limit": "3"})
    )
    assert options.freezing is False and options.dynamic is None and options.fullgraph is True
    assert options.recompile_limit == 3
    training = plugin.resolve_options(make_ctx({"freezing": "true"}, mode="training"))
    assert training.freezing is False and training.freezing_requested is True
    eager = plugin.resolve_options(make_ctx({"backend": "aot_eager"}))
    assert eager.freezing is False and "options" not in plugin.compile_kwargs(eager)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "fast"}, "compile.mode must be one of default, reduce-overhead, max-autotune, "
                           "max-autotune-no-cudagraphs, not 'fast'"),
        ({"mdoe": "default"}, "backend 'compile' has no option 'mdoe'"),
        ({"freezing": "maybe"}, "compile.freezing must be auto, true or false, not 'maybe'"),
        ({"fullgraph": "auto"}, "compile.fullgraph must be true or false, not 'auto'"),
        ({"recompile_limit": "0"}, "compile.recompile_limit must be a whole number >= 1"),
        ({"backend": "eager", "mode": "max-autotune"}, "mode=max-autotune needs backend=inductor"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_while_parsing(options, message):
    with pytest.raises(OptionError, match=message):
        make_ctx(options)


def test_available_on_this_cpu():
    assert plugin.check_available(make_ctx()) is None


# -- recompilation detection ----------------------------------------------------------------------------------
def run_hooks(ctx, model, first, timed_inputs):
    """What the worker does: prepare (+ first step), warmup, before_measure, the timed loop, after_measure."""
    compiled = plugin.prepare_model(model=model, example_inputs=first, ctx=ctx)
    compiled(first)
    plugin.warmup(step=lambda: compiled(first), ctx=ctx)
    plugin.before_measure(ctx=ctx)
    for x in timed_inputs:
        compiled(x)
    return plugin.after_measure(ctx=ctx)


def test_recompilation_in_the_timed_loop_fails_the_row():
    """A batch of another shape during the timed loop recompiles (static shapes): after_measure says so."""
    ctx = make_ctx()
    one, two = torch.randn(1, 3, 16, 16), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        reason = run_hooks(ctx, tiny_model(), one, [one, two, one])
    assert reason is not None
    assert reason.startswith("recompiled during the timed loop (1 new Dynamo frame compilation(s), 1 new graph(s))")
    assert "guard failure:" in reason and "expected 1, actual 2" in reason


def test_steady_loop_is_not_flagged():
    ctx = make_ctx()
    one = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        assert run_hooks(ctx, tiny_model(), one, [one, one.clone(), torch.randn(1, 3, 16, 16)]) is None


def test_inference_freezes(monkeypatch):
    """compile.freezing reaches Inductor for this compilation: its freeze pass runs (and not when off)."""
    import torch._inductor.freezing as freezing

    calls = []
    original = freezing.freeze

    def counting_freeze(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(freezing, "freeze", counting_freeze)
    x = torch.randn(1, 3, 12, 12)
    model = tiny_model()
    with torch.no_grad():
        reference = model(x)
        out = plugin.prepare_model(model=model, example_inputs=x, ctx=make_ctx())(x)
        assert calls, "Inductor's freezing pass did not run"
        torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)
        calls.clear()
        plugin.prepare_model(model=model, example_inputs=x, ctx=make_ctx({"freezing": "false"}))(x)
    assert not calls
    assert not torch._inductor.config.freezing, "the process-wide Inductor config must stay untouched"


def test_reaching_the_recompile_limit_raises_instead_of_running_eager():
    """Past compile.recompile_limit Dynamo would silently run eager code; here it is an error."""
    ctx = make_ctx({"backend": "eager", "recompile_limit": "2"})
    model = torch.nn.Linear(4, 4)
    compiled = plugin.prepare_model(model=model, example_inputs=torch.randn(1, 4), ctx=ctx)
    compiled(torch.randn(1, 4))
    compiled(torch.randn(2, 4))
    with pytest.raises(Exception, match="(?i)recompil|limit"):
        compiled(torch.randn(3, 4))
