"""Tests of the ``trt`` backend.

TensorRT cannot be installed on the machines this was written on (no GPU; the PyPI ``tensorrt`` packages are
stubs that fetch the real wheels from NVIDIA's index). So:

* the kit's contract suite runs for real and, here, sees ``trt`` come out ``skipped`` with a reason naming
  what is missing (CUDA first, then torch_tensorrt);
* every piece of logic that does not need TensorRT runs for real: option validation, the compile arguments
  for both API generations, version parsing, artifact naming, the reasons ``check_available`` gives;
* where a test needs something only TensorRT could produce (an installed torch_tensorrt of a given version,
  a missing ``tensorrt`` package behind an installed torch_tensorrt, an unloadable libnvinfer), it says so in
  its docstring and uses a fake (``fake_torch_tensorrt.py``) or a replaced importer. On a machine with real
  TensorRT and a GPU the contract suite's own tests measure the real thing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import fake_torch_tensorrt
import pytest
import torch
from densebench_trt import compat

from densebench_core.context import RunContext
from densebench_core.job import Job
from densebench_core.options import resolve
from densebench_core.plugins import build_registry
from densebench_core.testing import BackendContractSuite, run_in_process

HAVE_TORCH_TENSORRT = importlib.util.find_spec("torch_tensorrt") is not None


class TestTrt(BackendContractSuite):
    backend = "trt"
    # fp16 engines on a GPU; the CPU-only tests of the suite skip themselves (trt requires CUDA)


def make_ctx(options=None, backend="trt", members=None, batch_size=2) -> RunContext:
    job = Job(backend=backend, members=members or [backend], mode="inference", batch_size=batch_size,
              image_size=32, options=options or {})
    return RunContext(job=job, device=torch.device("cpu"))


def tiny_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()


@pytest.fixture
def registry():
    return build_registry()


# -- discovery and the skipped row -------------------------------------------------------------------------
def test_listing_never_imports_torch_tensorrt():
    code = (
        "import sys\n"
        "from densebench_core.plugins import build_registry\n"
        "entry = build_registry().entries['trt']\n"
        "assert entry.status in ('ok', 'unavailable'), entry.reason\n"
        "assert 'torch_tensorrt' not in sys.modules and 'tensorrt' not in sys.modules\n"
        "print(entry.info.requires_cuda, entry.info.requires_packages, entry.info.stage, entry.info.modes)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "('torch_tensorrt',)", "compiler", "('inference',)"]


def test_listed_unavailable_with_what_is_missing():
    """``densebench plugins`` says what this machine lacks (the package, CUDA), never ``ok`` with no reason."""
    proc = subprocess.run([sys.executable, "-c", "from densebench_core.cli import main; main()", "plugins", "--json"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    [entry] = [p for p in json.loads(proc.stdout) if p["name"] == "trt"]
    missing = []
    if not HAVE_TORCH_TENSORRT:
        missing.append("requires the Python package 'torch_tensorrt', which is not installed")
    if not torch.cuda.is_available():
        missing.append("requires a CUDA device, and this machine has none")
    assert (entry["status"], entry["reason"]) == (("unavailable", "; ".join(missing)) if missing else ("ok", ""))


def test_row_is_skipped_with_what_is_missing():
    """Through the worker's own code path: the row is skipped and the reason names the missing piece."""
    if torch.cuda.is_available() and HAVE_TORCH_TENSORRT:
        pytest.skip("CUDA and torch_tensorrt are both here: nothing is missing")
    result = run_in_process("trt")
    assert result["status"] == "skipped"
    reason = result["reason"]
    assert reason.startswith("trt: ")
    if not torch.cuda.is_available():
        assert "requires a CUDA device" in reason
    else:
        assert "torch_tensorrt" in reason


# -- check_available ---------------------------------------------------------------------------------------
def test_check_available_says_torch_tensorrt_is_not_installed(registry):
    """Real: on this machine torch_tensorrt is not installed, and the plugin's own check says so."""
    if HAVE_TORCH_TENSORRT:
        pytest.skip("torch_tensorrt is installed here")
    ctx = make_ctx()
    found, reason = registry.call("trt", "check_available", ctx=ctx)
    assert found
    assert "'torch_tensorrt' is not installed" in reason
    assert "pypi.nvidia.com" in reason


def _raising(exc):
    def import_module(name):
        raise exc

    return import_module


def test_check_available_names_the_missing_tensorrt_package(registry, monkeypatch):
    """Simulated (TensorRT cannot exist here): torch_tensorrt present, its ``import tensorrt`` fails."""
    error = ModuleNotFoundError("No module named 'tensorrt'", name="tensorrt")
    monkeypatch.setattr(compat, "import_module", _raising(error))
    _, reason = registry.call("trt", "check_available", ctx=make_ctx())
    assert "TensorRT Python package 'tensorrt' is missing" in reason
    assert "--extra-index-url https://pypi.nvidia.com" in reason


def test_check_available_names_the_unloadable_tensorrt_library(registry, monkeypatch):
    """Simulated (TensorRT cannot exist here): the wheels are installed but libnvinfer cannot be loaded."""
    error = OSError("libnvinfer.so.10: cannot open shared object file: No such file or directory")
    monkeypatch.setattr(compat, "import_module", _raising(error))
    _, reason = registry.call("trt", "check_available", ctx=make_ctx())
    assert reason.startswith("the TensorRT library could not be loaded: OSError: libnvinfer.so.10")


def test_check_available_explains_an_undefined_symbol_by_the_torch_version(registry, monkeypatch):
    """Simulated (TensorRT cannot exist here): a torch_tensorrt built for another torch fails to link."""
    error = ImportError("undefined symbol: _ZN3c104cuda9SetDevice")
    monkeypatch.setattr(compat, "import_module", _raising(error))
    monkeypatch.setattr(compat, "_torch_mismatch_hint", lambda v: compat.torch_mismatch("2.12.1", "2.14.1"))
    _, reason = registry.call("trt", "check_available", ctx=make_ctx())
    assert "undefined symbol" in reason
    assert "built for torch 2.12, but torch 2.14.1 is installed" in reason


def test_check_available_refuses_a_too_old_torch_tensorrt(registry, monkeypatch):
    """Fake module (TensorRT cannot exist here) reporting a release before the Dynamo frontend."""
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake_torch_tensorrt.make("2.1.0"))
    _, reason = registry.call("trt", "check_available", ctx=make_ctx())
    assert reason == "torch_tensorrt 2.1.0 is too old: densebench-trt needs >= 2.2 (the Dynamo path)"


def test_check_available_accepts_a_new_torch_tensorrt(registry, monkeypatch):
    """Fake module (TensorRT cannot exist here): a 2.13 release is accepted and its API generation noted."""
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake_torch_tensorrt.make("2.13.0+cu130"))
    ctx = make_ctx()
    _, reason = registry.call("trt", "check_available", ctx=ctx)
    assert reason is None
    assert ctx.state["trt"]["api"] == "strongly-typed"
    assert ctx.state["trt"]["torch_tensorrt"] == "2.13.0+cu130"


def test_a_bad_option_is_refused_while_parsing():
    """A bad option is the user's mistake, not unavailability: the core refuses it before any worker starts."""
    with pytest.raises(compat.OptionError, match=r"trt.precision must be one of fp16, fp32, not 'int8'"):
        resolve("trt", compat.OPTIONS, {"precision": "int8"})


def test_torch_mismatch():
    assert compat.torch_mismatch("2.14.0", "2.14.1+cu130") is None
    assert compat.torch_mismatch("2.13.0", "2.14.1") == (
        "torch_tensorrt 2.13.0 is built for torch 2.13, but torch 2.14.1 is installed"
    )


# -- options -----------------------------------------------------------------------------------------------
def test_options_default_and_declared():
    assert compat.resolve_options({}) == compat.TrtOptions(precision="fp16", format="ep")
    info = build_registry().entries["trt"].info
    assert {key: option.default for key, option in info.options.items()} == {"precision": "fp16", "format": "ep"}


@pytest.mark.parametrize("given, expected", [
    ({"precision": "fp32"}, compat.TrtOptions("fp32", "ep")),
    ({"precision": " FP16 ", "format": "TS"}, compat.TrtOptions("fp16", "ts")),
])  # fmt: skip
def test_options_accepted(given, expected):
    typed = resolve("trt", compat.OPTIONS, given)
    assert compat.resolve_options({"trt": typed, "amp": {"dtype": "bf16"}}) == expected


@pytest.mark.parametrize("given, message", [
    ({"precision": "bf16"}, r"trt.precision must be one of fp16, fp32, not 'bf16'"),
    ({"format": "onnx"}, r"trt.format must be one of ep, ts, not 'onnx'"),
    ({"precison": "fp32"}, r"backend 'trt' has no option 'precison'; its options: format, precision"),
])  # fmt: skip
def test_options_rejected(given, message):
    with pytest.raises(compat.OptionError, match=message):
        resolve("trt", compat.OPTIONS, given)


# -- the two API generations -------------------------------------------------------------------------------
@pytest.mark.parametrize("version, release", [
    ("2.13.0", (2, 13)), ("2.12.1+cu130", (2, 12)), ("2.14.0.dev20260801+cu132", (2, 14)), ("v2.2.0", (2, 2)),
    ("10.0", (10, 0)),
])  # fmt: skip
def test_parse_version(version, release):
    assert compat.parse_version(version) == release


@pytest.mark.parametrize("version", ["", "dev", "2"])
def test_parse_version_rejects(version):
    with pytest.raises(ValueError):
        compat.parse_version(version)


@pytest.mark.parametrize("version, precision, expected", [
    # older API: weak typing, precision requested with enabled_precisions
    ("2.2.0", "fp16", {"enabled_precisions": {torch.float16}}),
    ("2.4.0", "fp32", {"enabled_precisions": {torch.float32}}),
    # use_explicit_typing exists from 2.5; its default turned True in 2.10, which refuses fp16 in
    # enabled_precisions, so the plugin always turns it off for this generation
    ("2.5.0", "fp16", {"enabled_precisions": {torch.float16}, "use_explicit_typing": False}),
    ("2.10.0", "fp16", {"enabled_precisions": {torch.float16}, "use_explicit_typing": False}),
    ("2.12.1+cu130", "fp32", {"enabled_precisions": {torch.float32}, "use_explicit_typing": False}),
    # >= 2.13: strongly typed, precision follows the model/input dtype; no precision arguments at all
    ("2.13.0", "fp16", {}),
    ("2.13.0", "fp32", {}),
    ("2.14.0.dev20260801+cu132", "fp16", {}),
    ("3.0.0", "fp16", {}),
])  # fmt: skip
def test_compile_kwargs(version, precision, expected):
    assert compat.compile_kwargs(version, precision) == expected


def test_compile_kwargs_rejects_unknown_precision():
    with pytest.raises(compat.OptionError):
        compat.compile_kwargs("2.13.0", "int8")


def test_api_generation():
    assert compat.api_generation("2.12.1") == "enabled_precisions"
    assert compat.api_generation("2.13.0") == "strongly-typed"


# -- the hooks, with a fake torch_tensorrt -----------------------------------------------------------------
@pytest.mark.parametrize("version, precision, expected_kwargs", [
    ("2.12.1", "fp16", {"enabled_precisions": {torch.float16}, "use_explicit_typing": False}),
    ("2.13.0", "fp16", {}),
    ("2.12.1", "fp32", {"enabled_precisions": {torch.float32}, "use_explicit_typing": False}),
    ("2.13.0", "fp32", {}),
])  # fmt: skip
def test_prepare_casts_then_compiles(registry, monkeypatch, version, precision, expected_kwargs):
    """Fake torch_tensorrt (TensorRT cannot exist here): checks what the plugin hands to compile()."""
    fake = fake_torch_tensorrt.make(version)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    ctx = make_ctx({"trt": {"precision": precision}})
    dtype = torch.float16 if precision == "fp16" else torch.float32

    _, inputs = registry.call("trt", "prepare_inputs", inputs=torch.randn(2, 3, 32, 32), ctx=ctx)
    assert inputs.dtype == dtype
    model = tiny_model()
    _, compiled = registry.call("trt", "prepare_model", model=model, example_inputs=inputs, ctx=ctx)

    [(name, call)] = fake.calls
    assert name == "compile" and call["ir"] == "dynamo"
    assert {k: v for k, v in call.items() if k not in ("model", "ir", "inputs")} == expected_kwargs
    assert [t.dtype for t in call["inputs"]] == [dtype]
    assert {p.dtype for p in call["model"].parameters()} == {dtype}
    assert compiled is call["model"]
    assert ctx.precision == precision
    assert ctx.state["trt"]["api"] == compat.api_generation(version)
    assert any(note.startswith(f"torch_tensorrt {version} (") for note in ctx.notes)


def test_fp16_recipe_member_and_trt_agree(registry, monkeypatch):
    """Fake torch_tensorrt: ``fp16+trt`` casts once (fp16 first, trt finds half already)."""
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake_torch_tensorrt.make("2.13.0"))
    ctx = make_ctx(backend="fp16+trt", members=["fp16", "trt"])
    inputs = torch.randn(2, 3, 32, 32)
    for name in ctx.members:
        _, inputs = registry.call(name, "prepare_inputs", inputs=inputs, ctx=ctx)
    model = tiny_model()
    for name in ctx.members:
        _, model = registry.call(name, "prepare_model", model=model, example_inputs=inputs, ctx=ctx)
    assert inputs.dtype == torch.float16 and ctx.precision == "fp16"


def test_fp16_recipe_member_contradicts_trt_fp32(registry):
    """``fp16+trt`` with ``trt.precision=fp32`` contradicts itself: the row fails with that reason."""
    ctx = make_ctx({"trt": {"precision": "fp32"}}, backend="fp16+trt", members=["fp16", "trt"])
    _, inputs = registry.call("fp16", "prepare_inputs", inputs=torch.randn(1, 3, 32, 32), ctx=ctx)
    with pytest.raises(compat.OptionError, match="already made the inputs torch.float16"):
        registry.call("trt", "prepare_inputs", inputs=inputs, ctx=ctx)


def test_channels_last_survives_the_cast(registry):
    ctx = make_ctx(backend="channels_last+trt", members=["channels_last", "trt"])
    inputs = torch.randn(2, 3, 32, 32)
    for name in ctx.members:
        _, inputs = registry.call(name, "prepare_inputs", inputs=inputs, ctx=ctx)
    assert inputs.dtype == torch.float16
    assert inputs.is_contiguous(memory_format=torch.channels_last)


# -- export ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend, batch_size, fmt, name", [
    ("trt", 1, "ep", "trt_bs1.ep"),
    ("trt", 256, "ts", "trt_bs256.ts"),
    ("channels_last+trt", 32, "ep", "channels_last+trt_bs32.ep"),
])  # fmt: skip
def test_artifact_path(tmp_path, backend, batch_size, fmt, name):
    assert compat.artifact_path(tmp_path, backend, batch_size, fmt) == tmp_path / name


@pytest.mark.parametrize("fmt, output_format, suffix", [("ep", "exported_program", ".ep"),
                                                         ("ts", "torchscript", ".ts")])
def test_export_saves_into_models_dir(registry, monkeypatch, tmp_path, fmt, output_format, suffix):
    """Fake torch_tensorrt (TensorRT cannot exist here): checks the save() call and the returned path."""
    fake = fake_torch_tensorrt.make("2.13.0")
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    ctx = make_ctx({"trt": {"format": fmt}}, batch_size=8)
    inputs = torch.randn(8, 3, 32, 32).half()
    model = tiny_model().half()
    _, path = registry.call("trt", "export", model=model, example_inputs=inputs, ctx=ctx, directory=tmp_path)
    assert path == tmp_path / f"trt_bs8{suffix}"
    assert Path(path).is_file()
    [(name, call)] = fake.calls
    assert name == "save" and call["output_format"] == output_format
    assert call["file_path"] == str(path) and call["inputs"][0] is inputs


@pytest.mark.parametrize("suffix", [".ep", ".ts"])
def test_load_artifact_loads_the_saved_program_by_its_format(registry, monkeypatch, tmp_path, suffix):
    """The cold start's loader picks torch.export.load or torch.jit.load by the file's format. TensorRT cannot
    exist here: the files are plain torch programs of a tiny model (what TensorRT saves is a torch program with
    TensorRT ops in it), and torch_tensorrt is the fake, imported first as a deployment must."""
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake_torch_tensorrt.make("2.13.0"))
    model, x = tiny_model().eval(), torch.randn(2, 3, 8, 8)
    path = tmp_path / f"trt_bs2{suffix}"
    if suffix == ".ep":
        torch.export.save(torch.export.export(model, (x,)), str(path))
    else:
        torch.jit.save(torch.jit.trace(model, x), str(path))
    _, loaded = registry.call("trt", "load_artifact", path=path, ctx=make_ctx({}, batch_size=2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_load_artifact_without_torch_tensorrt_says_how_to_install_it(registry, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # import torch_tensorrt raises ImportError
    with pytest.raises(RuntimeError, match="torch_tensorrt"):
        registry.call("trt", "load_artifact", path=tmp_path / "trt_bs2.ep", ctx=make_ctx({}, batch_size=2))
