"""Tests of the ``aoti`` backend: the kit's contract suite, a real CLI row whose ``.pt2`` loads in a fresh
interpreter with the same outputs, a model that cannot be exported, typed options, what it refuses, and the
``skipped`` rows when torch lacks AOTInductor packaging or there is no C++ compiler.

AOTInductor compiles C++: about 30 s per DenseNet-121 package at image size 32 on this 2-core CPU, 6 s for the
kit's tiny model. The suite compiles DenseNet three times (its in-process run at batch 4, its export run and its CLI
run at batch 2), this file once more (``cli_row``, shared by the tests that read it) and the tiny model once
(``tiny_package``). No GPU here: nothing about CUDA is verified by these tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from densebench_aoti import plugin
from unexportable_plugin import DataDependent

from densebench_core.backend import BackendInfo, parse_recipe
from densebench_core.errors import BadInput
from densebench_core.model import build_model, make_inputs
from densebench_core.options import OptionError
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

TESTS = Path(__file__).resolve().parent
#: a small real run: one row at batch 2, image size 32, the stand-in weights, a short accuracy check
SMALL_RUN = ["--device", "cpu", "--quick", "--batch-sizes", "2", "--image-size", "32", "--weights", "random",
             "--min-iters", "2", "--min-time", "0", "--no-profile"]  # fmt: skip


class TestAoti(BackendContractSuite):
    backend = "aoti"


# -- description, options, recipes ----------------------------------------------------------------------------
def test_a_compiler_stage_for_inference_with_typed_options():
    info = plugin.backend_info()
    assert info.stage == "compiler" and info.modes == ("inference",) and not info.requires_cuda
    assert {key: (option.type, option.default) for key, option in info.options.items()} == {
        "dynamic_batch": (bool, False), "max_autotune": (bool, False), "freezing": (bool, True), "cxx": (str, None),
    }  # fmt: skip


test_bad_options_are_refused_while_parsing = refuses_options(
    "aoti",
    [
        ({"dynamic_batch": "sometimes"}, "aoti.dynamic_batch must be true or false, not 'sometimes'"),
        ({"max_autotune": "max"}, "aoti.max_autotune must be true or false, not 'max'"),
        ({"freezing": "2"}, "aoti.freezing must be true or false, not '2'"),
    ],
)  # an unknown key: the kit's test_unknown_option_key_is_refused_while_parsing


class CompileCalled(Exception):
    """Raised by the stand-in for aoti_compile_and_package: the test needs its arguments, not a package."""


@pytest.mark.parametrize("given, configs, dynamic", [
    ({}, {"freezing": True, "max_autotune": False}, False),
    ({"freezing": "false", "max_autotune": "true", "dynamic_batch": "true", "cxx": "/opt/bin/g++"},
     {"freezing": False, "max_autotune": True, "cpp.cxx": (None, "/opt/bin/g++")}, True),
])  # fmt: skip
def test_options_reach_export_and_inductor(monkeypatch, given, configs, dynamic):
    """The typed options become AOTInductor's inductor_configs and the exported program's batch dimension."""
    seen = {}

    def compile_and_package(program, **kwargs):
        seen.update(kwargs, program=program)
        raise CompileCalled

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", compile_and_package)
    with pytest.raises(CompileCalled):
        plugin.prepare_model(
            model=tiny_model(), example_inputs=torch.randn(1, 3, 8, 8), ctx=make_context("aoti", given)
        )
    assert seen["inductor_configs"] == configs
    assert Path(seen["package_path"]).name == "aoti_bs2.pt2"  # make_context's row: batch size 2
    batch = seen["program"].graph_signature.user_inputs[0]
    shape = next(n for n in seen["program"].graph.nodes if n.name == batch).meta["val"].shape
    assert isinstance(shape[0], torch.SymInt) == dynamic, shape
    assert all(isinstance(d, int) for d in shape[1:])


def test_a_recipe_with_fused_is_refused_while_parsing():
    assert plugin.check_recipe(["channels_last", "fp16", "aoti"], {}) is None
    with pytest.raises(
        OptionError,
        match="recipe fused[+]aoti: aoti does not go with fused: its op densebench::dense_block is a Python custom op",
    ):
        make_context("aoti", members=["fused", "aoti"])


def test_other_compilers_are_refused_by_their_stage():
    """jit, compile and trt are compiler-stage backends too: the core refuses them with aoti by the stage rule.
    (The plugin's own nox session installs no other plugin: a stand-in jit then.)"""
    infos = build_registry().infos()
    infos.setdefault("jit", BackendInfo("a stand-in compiler-stage backend", stage="compiler"))
    with pytest.raises(BadInput, match="'jit' and 'aoti' are both compiler backends"):
        parse_recipe("jit+aoti", infos)


# -- what prepare_model refuses -------------------------------------------------------------------------------
def test_a_model_that_is_not_a_module_is_refused():
    with pytest.raises(
        TypeError, match="aoti exports a torch.nn.Module with torch.export; an earlier recipe member returned function"
    ):
        plugin.prepare_model(model=lambda x: x, example_inputs=torch.randn(2, 3, 8, 8), ctx=make_context("aoti"))


def test_an_unexportable_model_raises_the_export_error_and_where():
    with pytest.raises(RuntimeError) as raised:
        plugin.prepare_model(model=DataDependent(tiny_model()), example_inputs=torch.randn(2, 3, 8, 8),
                             ctx=make_context("aoti"))  # fmt: skip
    message = str(raised.value)
    assert message.startswith("torch.export failed: GuardOnDataDependentSymNode: Could not guard on data-dependent")
    assert "(at unexportable_plugin.py:" in message and "forward: if y.sum() < -1e30:" in message
    assert "\n" not in message


@pytest.fixture(scope="module")
def unexportable_installed(tmp_path_factory) -> dict[str, str]:
    """The environment of a child process in which ``unexportable_test`` (tests/unexportable_plugin.py) is an
    installed plugin: a ``.dist-info`` with its entry point, next to the module, on ``PYTHONPATH``."""
    site = tmp_path_factory.mktemp("unexportable-site")
    (site / "unexportable_plugin.py").write_text((TESTS / "unexportable_plugin.py").read_text())
    info = site / "densebench_unexportable_test-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: densebench-unexportable-test\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[densebench]\nunexportable_test = unexportable_plugin\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "DENSEBENCH_PLUGINS": "aoti,unexportable_test"}


def test_an_unexportable_model_gives_a_failed_row_naming_the_export_error(tmp_path, unexportable_installed):
    """Through the real CLI: the recipe's row is failed (exit 1) and its reason names torch.export's error."""
    proc = run_densebench("run", "--backend", "unexportable_test+aoti", *SMALL_RUN, "--eval-images", "2",
                          "--output-dir", str(tmp_path / "results"), "--log-dir", str(tmp_path / "logs"),
                          env=unexportable_installed)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (row,) = read_rows(tmp_path / "results" / "benchmark_results.csv")
    assert row["backend"] == "unexportable_test+aoti" and row["status"] == "failed", row
    assert "torch.export failed: GuardOnDataDependentSymNode: Could not guard on data-dependent" in row["reason"]
    assert "(while preparing)" in row["reason"]


# -- availability ---------------------------------------------------------------------------------------------
def test_without_aoti_packaging_the_row_is_skipped(monkeypatch):
    monkeypatch.delattr(torch._inductor, "aoti_compile_and_package")
    result = run_in_process("aoti")
    assert result["status"] == "skipped"
    assert result["reason"] == (f"aoti: torch {torch.__version__} has no torch._inductor.aoti_compile_and_package "
                                "(AOTInductor packaging needs torch >= 2.6)")  # fmt: skip


def test_without_a_cxx_compiler_the_row_is_skipped():
    assert plugin.check_available(ctx=make_context("aoti", {}, batch_size=1)) is None  # this machine has g++
    # config.patch, not monkeypatch: monkeypatch's undo deleted the config entry (later compiles then failed)
    with torch._inductor.config.patch({"cpp.cxx": ("densebench-no-such-cxx",)}):
        result = run_in_process("aoti")
    assert result["status"] == "skipped"
    assert result["reason"].startswith("aoti: no C++ compiler found for AOTInductor (tried densebench-no-such-cxx; "
                                       "install g++ or set CXX)")  # fmt: skip


# -- a compiled package: the tiny model, dynamic batch ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_package():
    """The kit's tiny model compiled with a dynamic batch from a batch of one: (model, loaded package, ctx)."""
    model = tiny_model()
    ctx = make_context("aoti", {"dynamic_batch": "true"}, batch_size=1)
    with torch.no_grad():
        loaded = plugin.prepare_model(model=model, example_inputs=torch.randn(1, 3, 8, 8), ctx=ctx)
    return model, loaded, ctx


def test_a_dynamic_batch_package_runs_every_batch_size(tiny_package):
    model, loaded, ctx = tiny_package
    assert type(loaded).__name__ == "AOTICompiledModel"  # the loaded package is what is measured
    assert any(note.startswith("aoti: torch.export (dynamic batch), AOTInductor (freezing=true, max_autotune=false)")
               for note in ctx.notes), ctx.notes  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for batch in (1, 2, 5):
            x = torch.randn(batch, 3, 8, 8, generator=generator)
            torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-5)


def test_export_copies_the_package_and_load_artifact_loads_it(tiny_package, tmp_path):
    model, loaded, ctx = tiny_package
    package = ctx.state["aoti"]["package"]
    assert package.parent != tmp_path  # make_context's row does not export: a temporary folder
    path = plugin.export(ctx=ctx, directory=tmp_path)
    assert path == tmp_path / "aoti_bs1.pt2" and path.read_bytes() == package.read_bytes()
    again = plugin.load_artifact(path=path, ctx=ctx)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(again(x), loaded(x), rtol=0, atol=0)


# -- DenseNet-121 through the real CLI: the row and its .pt2 ----------------------------------------------------
@pytest.fixture(scope="module")
def cli_row(tmp_path_factory):
    """``densebench run --backend aoti`` (export on): the CLI's process, its one row and the results folder."""
    out = tmp_path_factory.mktemp("aoti-cli")
    proc = run_densebench("run", "--backend", "aoti", *SMALL_RUN, "--eval-images", "16", "--export",
                          "--output-dir", str(out / "results"), "--log-dir", str(out / "logs"))  # fmt: skip
    rows = read_rows(out / "results" / "benchmark_results.csv") if proc.returncode in (0, 1) else []
    return proc, rows, out / "results"


def test_cli_row_is_ok_and_accurate(cli_row):
    proc, rows, _ = cli_row
    assert proc.returncode == 0, proc.stderr
    (row,) = rows
    assert row["status"] == "ok", row["reason"]
    assert row["accuracy_ok"] == "true", (row["rel_err"], row["top1_agree"])
    assert float(row["rel_err"]) < 1e-3
    assert row["artifact_path"] == f"models/{row['run_id']}/aoti_bs2.pt2"  # relative to the results folder
    assert float(row["artifact_mb"]) > 20  # DenseNet-121's fp32 weights are in the package
    assert float(row["cold_start_s"]) > 0  # a fresh process loaded the package and answered like the reference
    assert ("aoti: torch.export (static batch 2), AOTInductor (freezing=true, max_autotune=false) in "
            in row["notes"]) and "aoti_bs2.pt2" in row["notes"]  # fmt: skip


FRESH_LOAD = """
import sys, torch
from densebench_core.model import make_inputs
loaded = torch._inductor.aoti_load_package(sys.argv[1])
with torch.no_grad():
    torch.save(loaded(make_inputs(2, 32, 0)), sys.argv[2])
"""


def test_package_loads_in_a_fresh_interpreter_with_the_same_outputs(cli_row, tmp_path):
    """The row's .pt2, loaded by ``aoti_load_package`` in a new ``python -c``, answers the seeded batch as the same
    package loaded here does, and as the eager model does (fp32 tolerance)."""
    _, rows, results = cli_row
    (row,) = rows
    package = results / row["artifact_path"]
    output = tmp_path / "fresh.pt"
    proc = subprocess.run([sys.executable, "-c", FRESH_LOAD, str(package), str(output)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fresh = torch.load(output, weights_only=True)
    x = make_inputs(2, 32, 0)
    with torch.no_grad():
        here = torch._inductor.aoti_load_package(str(package))(x)
        eager = build_model("random", 0, 32).eval()(x)
    assert fresh.shape == (2, 1000)
    torch.testing.assert_close(fresh, here)
    torch.testing.assert_close(fresh, eager, rtol=1e-4, atol=1e-4)


#: a C++ compiler that links its shared libraries with -static-libstdc++, as the H200 image's CXX did
STATIC_GXX = """#!/bin/sh
case " $* " in *" -shared "*) exec g++ "$@" -static-libstdc++ ;; esac
exec g++ "$@"
"""


@pytest.mark.skipif(not (plugin.shutil.which("g++") and plugin.shutil.which("readelf")), reason="needs g++, readelf")
def test_a_compiler_linking_libstdcxx_statically_skips_the_row_before_compiling(tmp_path):
    """The H200 image's CXX, found in about a second by a probe library, not after minutes of compiling: the row is
    skipped naming aoti.cxx; the same probe passes with the plain g++."""
    wrapper = tmp_path / "static-g++"
    wrapper.write_text(STATIC_GXX)
    wrapper.chmod(0o755)
    assert plugin.linkage_problem(make_context("aoti", {"cxx": plugin.shutil.which("g++")}, batch_size=1)) is None
    result = run_in_process("aoti", options={"aoti": {"cxx": str(wrapper)}})
    assert result["status"] == "skipped", result
    assert result["reason"].startswith(f"aoti: {wrapper} links libstdc++ statically into shared libraries")
    assert "--backend-option aoti.cxx=PATH" in result["reason"]


@pytest.mark.skipif(not (plugin.shutil.which("g++") and plugin.shutil.which("readelf")), reason="needs g++, readelf")
def test_a_package_linking_libstdcxx_statically_is_refused_before_loading(tiny_package, tmp_path):
    """A compiler adding -static-libstdc++ (the H200's CXX) gives a package that cannot be loaded safely: the row
    fails naming aoti.cxx before any load, and load_artifact refuses the file too. The default compiler's package
    (the shared fixture) passes the same check."""
    _, _, good_ctx = tiny_package
    assert plugin.static_libstdcxx(good_ctx.state["aoti"]["package"]) == []
    wrapper = tmp_path / "static-g++"
    wrapper.write_text(STATIC_GXX)
    wrapper.chmod(0o755)
    ctx = make_context("aoti", {"cxx": str(wrapper)}, batch_size=1)
    loads = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plugin, "load_package", lambda path, ctx: loads.append(path))
        with pytest.raises(RuntimeError, match=r"links libstdc\+\+ statically \(built by .*static-g\+\+\).*aoti.cxx="):
            plugin.prepare_model(model=tiny_model(), example_inputs=torch.randn(1, 3, 8, 8), ctx=ctx)
        assert loads == []  # refused before loading
        package = next(Path(ctx.state["aoti"]["tmpdir"].name).glob("*.pt2"))
        with pytest.raises(RuntimeError, match="links libstdc"):
            plugin.load_artifact(path=package, ctx=ctx)
    assert loads == []
