"""Tests of the ``jit`` backend: the kit's contract suite, the exported ``.pt``, quiet output, the executor and
fuser settings, and the ``skipped`` row when a torch release refuses TorchScript.

No GPU here: the CUDA defaults (no fuser, graph-executor optimization off) are checked for what they set and
that the setting takes effect on the CPU; whether they cure the H200 second-call hang is for a GPU run
(``benchmarks/jit_settings.py``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from densebench_jit import plugin

from densebench_core.context import RunContext
from densebench_core.model import build_model, make_inputs
from densebench_core.plugins import build_registry
from densebench_core.testing import (
    BackendContractSuite,
    make_context,
    read_rows,
    refuses_options,
    run_densebench,
    run_in_process,
    tiny_model,
)


class TestJit(BackendContractSuite):
    backend = "jit"


def make_ctx(options=None, device="cpu") -> RunContext:
    return make_context("jit", options, device=device)


@pytest.fixture
def restore_torchscript_settings():
    """Put torch's own fuser/executor settings back after a test that changes them."""
    yield
    plugin.apply_runtime_settings(plugin.Options(optimize=True, fuser="default", executor="profiling"))


# -- options --------------------------------------------------------------------------------------------------
def test_device_defaults():
    cpu = plugin.resolve_options(make_ctx())
    assert (cpu.optimize, cpu.fuser, cpu.executor) == (True, "default", "profiling")
    cuda = plugin.resolve_options(make_ctx(device="cuda"))  # only the device type is looked at: no GPU needed
    assert (cuda.optimize, cuda.fuser, cuda.executor) == (True, "none", "simple")


def test_options_parse():
    options = plugin.resolve_options(make_ctx({"optimize": "false", "fuser": "nnc", "executor": "legacy"}, "cuda"))
    assert (options.optimize, options.fuser, options.executor) == (False, "nnc", "legacy")


test_bad_options_are_refused_while_parsing = refuses_options("jit", [
    ({"optimize": "maybe"}, "jit.optimize must be true or false, not 'maybe'"),
    ({"fuser": "nvfuser"}, "jit.fuser must be one of auto, none, nnc, default, not 'nvfuser'"),
    ({"executor": "fast"}, "jit.executor must be one of auto, profiling, simple, legacy, not 'fast'"),
])  # an unknown key: the kit's test_unknown_option_key_is_refused_while_parsing


# -- executor and fuser settings ------------------------------------------------------------------------------
def test_cuda_defaults_turn_fusion_and_specialization_off(restore_torchscript_settings):
    plugin.apply_runtime_settings(plugin.resolve_options(make_ctx(device="cuda")))
    assert plugin.current_settings() == {
        "fusion_strategy": [("STATIC", 0), ("DYNAMIC", 0)], "texpr_fuser": False, "fuse_on_cpu": False,
        "fuse_on_gpu": False, "graph_executor_optimize": True,
    }  # fmt: skip
    plugin.apply_runtime_settings(plugin.resolve_options(make_ctx()))  # the CPU defaults: torch's own
    settings = plugin.current_settings()
    assert settings["fusion_strategy"] == [tuple(s) for s in plugin.STARTUP["strategy"]]
    assert settings["texpr_fuser"] == plugin.STARTUP["texpr"]
    assert settings["fuse_on_gpu"] == plugin.STARTUP["gpu"] and settings["fuse_on_cpu"] == plugin.STARTUP["cpu"]
    assert settings["graph_executor_optimize"] is True


@pytest.mark.parametrize("executor, profiled", [("profiling", True), ("simple", False)])
def test_executor_setting_takes_effect(executor, profiled, restore_torchscript_settings):
    """The profiling executor instruments the first call (prim::profile nodes) and specializes on the next call
    (where the H200 hung); the simple executor (zero specializations) runs the graph as it is from the first."""
    ctx = make_ctx({"executor": executor})
    x = torch.randn(2, 3, 8, 8)
    scripted = plugin.prepare_model(model=tiny_model(), example_inputs=x, ctx=ctx)
    with torch.no_grad():
        scripted(x)
    kinds = {node.kind() for node in torch.jit.last_executed_optimized_graph().nodes()}
    assert ("prim::profile" in kinds) == profiled, kinds


# -- the model and its export ---------------------------------------------------------------------------------
def test_no_future_warning_escapes_the_plugin(tmp_path):
    ctx = make_ctx()
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plugin.torchscript_problem.cache_clear()
        assert plugin.check_available() is None
        with torch.no_grad():
            scripted = plugin.prepare_model(model=tiny_model(), example_inputs=x, ctx=ctx)
            scripted(x)
        path = plugin.export(model=scripted, ctx=ctx, directory=tmp_path)
    assert path.is_file()
    assert not [str(w.message) for w in caught], "warnings escaped"


def test_cli_run_is_quiet_and_its_export_loads_and_matches(tmp_path):
    """Through the real CLI: an ok row, no deprecation warning anywhere (the CLI's output or the worker's log),
    and models/jit_bs2.pt loads with torch.jit.load and gives the eager model's output."""
    proc = run_densebench(
        "run", "--backend", "jit", "--device", "cpu", "--quick", "--batch-sizes", "2", "--image-size", "32",
        "--weights", "random", "--min-iters", "2", "--min-time", "0", "--no-profile", "--export",
        "--output-dir", str(tmp_path / "results"), "--log-dir", str(tmp_path / "logs"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = read_rows(tmp_path / "results" / "benchmark_results.csv")
    assert row["status"] == "ok", row["reason"]
    assert float(row["max_abs_err"]) < 1e-3  # the measured (optimized) module agrees with eager
    path = tmp_path / "results" / row["artifact_path"]
    assert row["artifact_path"] == f"models/{row['run_id']}/jit.pt"  # relative to the results folder
    assert float(row["artifact_mb"]) > 20  # DenseNet-121's fp32 weights
    worker_logs = "".join(p.read_text() for p in (tmp_path / "results").rglob("*.log"))
    for text in (proc.stdout, proc.stderr, worker_logs):
        assert "FutureWarning" not in text and "deprecated" not in text, text

    x = make_inputs(2, 32, 0)
    with torch.no_grad():
        expected = build_model("random", 0, 32)(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's own deprecation notice
            loaded = torch.jit.load(str(path))
        got = loaded(x)
        got_bs1 = loaded(x[:1])  # a traced DenseNet is not tied to the traced batch size
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_bs1, expected[:1], rtol=1e-4, atol=1e-4)


def test_refused_torchscript_is_skipped(monkeypatch):
    """A torch release whose torch.jit.trace raises (or is gone): the row is skipped with that reason."""

    def refuse(*args, **kwargs):
        raise RuntimeError("TorchScript has been removed")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    plugin.torchscript_problem.cache_clear()
    try:
        result = run_in_process("jit", image_size=32)
        assert result["status"] == "skipped"
        assert "refuses TorchScript: RuntimeError: TorchScript has been removed" in result["reason"]
        monkeypatch.delattr(torch.jit, "trace")
        plugin.torchscript_problem.cache_clear()
        assert "has no TorchScript (torch.jit.trace is missing)" in plugin.check_available()
    finally:
        plugin.torchscript_problem.cache_clear()


# -- recipes --------------------------------------------------------------------------------------------------
def test_channels_last_recipe_with_the_cuda_defaults():
    """channels_last+jit, run on the CPU with the settings jit picks on CUDA (no fuser, simple executor)."""
    options = {"jit": {"fuser": "none", "executor": "simple"}}
    try:
        result = run_in_process("channels_last+jit", image_size=32, options=options)
    finally:
        plugin.apply_runtime_settings(plugin.Options(optimize=True, fuser="default", executor="profiling"))
    assert result["status"] == "ok", result.get("reason")
    assert result["accuracy_ok"] is True and result["rel_err"] < 1e-4
    assert "jit: optimize_for_inference=true, fuser=none, executor=simple" in result["notes"]


def test_amp_recipe_traces_the_autocast_casts():
    if "amp" not in build_registry().infos():
        pytest.skip("densebench-amp is not installed in this environment")
    result = run_in_process("amp+jit", image_size=32)
    assert result["status"] == "ok", result.get("reason")
    assert result["precision"] == "amp-bf16" and result["accuracy_ok"] is True
