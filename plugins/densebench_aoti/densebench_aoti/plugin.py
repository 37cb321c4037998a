"""``aoti``: ahead-of-time compilation with AOTInductor; the measured model is the ``.pt2`` package loaded back.

Inference only, CPU and CUDA, recipe stage ``compiler``. ``prepare_model`` runs ``torch.export.export`` on the
prepared model (with a dynamic batch dimension when ``aoti.dynamic_batch=true``), compiles the exported program
with ``torch._inductor.aoti_compile_and_package`` into a ``.pt2`` package (C++ and, on CUDA, Triton kernels, built
by the machine's C++ compiler), loads it back with ``torch._inductor.aoti_load_package`` and returns the *loaded*
package: what the timed loop and the accuracy check run is the deployable artifact, not the in-memory model.

With ``--export`` (the default) the package is written straight into the run's models folder as
``<backend>_bs<N>.pt2`` (a recipe keeps its name: ``channels_last+aoti_bs2.pt2``), and ``export`` returns it;
otherwise it goes to a temporary folder that lives as long as the row. ``load_artifact`` loads it again, the way a
deployment would (the core's cold-start phase, in a fresh process).

Options (``--backend-option aoti.KEY=VALUE``), all passed to AOTInductor as ``inductor_configs`` or to export:

* ``dynamic_batch``: ``false`` (default: the package is specialised to the row's batch size) or ``true`` (the
  batch dimension is a ``torch.export.Dim``: one package runs any batch size).
* ``max_autotune``: ``false`` (default) or ``true``: Inductor's ``max_autotune`` (benchmarks GEMM/conv templates
  while compiling; much slower to compile).
* ``freezing``: ``true`` (default) or ``false``: Inductor's ``freezing`` (weights become constants, folded and
  prepacked).
* ``cxx``: ``auto`` (default: Inductor's choice, the ``CXX`` environment variable, else ``g++``) or the path of the
  C++ compiler that builds the package.

After compiling, and again before a fresh process loads the package, the package's shared libraries must link
libstdc++ dynamically. A library built with ``-static-libstdc++`` (as the GPU machine's ``CXX=/opt/gcc/bin/g++``
wrapper does) brings a second libstdc++ into the process: loading it crashed every time there (SIGSEGV in
``std::regex`` inside ``AOTInductorModelContainerCreateWithDevice``, docs/perf-notes.md). Such a row fails with
the reason, before loading, and names ``aoti.cxx``. Before compiling, the availability check builds a small
library with the row's compiler and reads it the same way: such a compiler skips the row in about a second.

Refused before any worker starts, with the reason: a recipe with ``fused`` (its op is a Python custom op that
finds its block's weights by a key living only in the process that made it, so the ``.pt2`` could not run
anywhere else). ``jit``, ``compile`` and ``trt`` are compiler-stage backends too, so the core already refuses them
in a recipe with ``aoti``.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from densebench_core.backend import BackendInfo
from densebench_core.hookspecs import hookimpl
from densebench_core.options import Option

NAME = "aoti"

OPTIONS = {
    "dynamic_batch": Option(default=False, type=bool,
                            help="export with a dynamic batch dimension (torch.export.Dim): one package for every "
                                 "batch size"),
    "max_autotune": Option(default=False, type=bool,
                           help="Inductor max_autotune while compiling (slower to compile)"),
    "freezing": Option(default=True, type=bool,
                       help="Inductor freezing: weights as constants, folded and prepacked"),
    "cxx": Option(default=None, auto=True,
                  help="the C++ compiler that builds the package; auto: Inductor's choice ($CXX, else g++)"),
}  # fmt: skip

#: recipe members it cannot go with, and why (checked in the parent, before any worker)
REFUSED_WITH = {
    "fused": "its op densebench::dense_block is a Python custom op that finds each block's weights by a key that "
    "exists only in the process that made it: the .pt2 would hold neither the op nor those weights, and "
    "AOTInductor cannot run a torch.library.custom_op without that Python process",
}


def check_recipe(members: list[str], options: dict) -> str | None:
    for member in members:
        if member in REFUSED_WITH:
            return f"aoti does not go with {member}: {REFUSED_WITH[member]}"
    return None


def inductor_configs(ctx) -> dict:
    """The Inductor settings the package is compiled with, from the row's typed options."""
    configs = {"freezing": ctx.option(NAME, "freezing"), "max_autotune": ctx.option(NAME, "max_autotune")}
    if ctx.option(NAME, "cxx"):
        configs["cpp.cxx"] = (None, ctx.option(NAME, "cxx"))
    return configs


#: what to do about a compiler that links libstdc++ statically (both checks below say it)
USE_ANOTHER_CXX = ("set --backend-option aoti.cxx=PATH to a compiler that links libstdc++ dynamically, "
                   "e.g. /usr/bin/g++")


def links_libstdcxx_statically(readelf: str, library: str | Path) -> bool:
    """Whether a shared library lacks a NEEDED entry for libstdc++ (``readelf -d``): built with
    ``-static-libstdc++``. False where readelf cannot read it."""
    needed = subprocess.run([readelf, "-d", str(library)], capture_output=True, text=True)
    return needed.returncode == 0 and "libstdc++" not in needed.stdout


def static_libstdcxx(package: Path) -> list[str]:
    """The shared libraries in the package that do not link libstdc++ dynamically, i.e. built with
    ``-static-libstdc++``. Empty when every one does, or where there is no readelf (binutils, which the compiler's
    linker comes with) to ask."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return []
    with tempfile.TemporaryDirectory(prefix="densebench-aoti-elf-") as tmp, zipfile.ZipFile(package) as archive:
        return [Path(name).name for name in archive.namelist()
                if name.endswith(".so") and links_libstdcxx_statically(readelf, archive.extract(name, tmp))]


def check_linkage(package: Path, ctx) -> None:
    """Refuse, before loading it, a package whose libraries would bring a second libstdc++ into this process."""
    static = static_libstdcxx(package)
    if static:
        raise RuntimeError(
            f"aoti: {static[0]} in {package.name} links libstdc++ statically (built by {_compiler(ctx)}); loading "
            "it would bring a second libstdc++ into this process, which crashes AOTInductor's runtime (SIGSEGV in "
            f"std::regex on the H200, docs/perf-notes.md): {USE_ANOTHER_CXX}"
        )


def package_name(ctx) -> str:
    """``aoti_bs2.pt2``; a recipe keeps its name (``channels_last+fp16+aoti_bs1.pt2``), as ``trt`` names its files."""
    return f"{ctx.backend}_bs{ctx.batch_size}.pt2"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__


def _where(exc: BaseException) -> str:
    """``at model.py:12 in forward: if y.sum() > 0:`` when torch.export said which call raised, else ``""``."""
    lines = str(exc).splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "The following call raised this error:" and i + 2 < len(lines):
            place, code = lines[i + 1].strip(), lines[i + 2].strip()
            if place.startswith("File "):
                parts = [p.strip() for p in place.removeprefix("File ").split(",")]
                if len(parts) == 3:
                    file, line_no, func = Path(parts[0].strip('"')).name, parts[1].removeprefix("line "), parts[2]
                    return f" (at {file}:{line_no} {func}: {code})"
    return ""


# -- availability ---------------------------------------------------------------------------------------------
def aoti_api_problem() -> str | None:
    """Why this torch has no AOTInductor packaging, or None."""
    import torch._inductor

    export = getattr(getattr(torch, "export", None), "export", None)
    if export is None:
        return f"torch {torch.__version__} has no torch.export.export"
    for name in ("aoti_compile_and_package", "aoti_load_package"):
        if not hasattr(torch._inductor, name):
            return f"torch {torch.__version__} has no torch._inductor.{name} (AOTInductor packaging needs torch >= 2.6)"
    return None


def compiler_problem() -> str | None:
    """Why AOTInductor would find no C++ compiler here (it compiles the package with one), or None."""
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001 - InvalidCxxCompiler, or anything else the search raises
        config = getattr(getattr(torch, "_inductor", None), "config", None)
        tried = getattr(getattr(config, "cpp", None), "cxx", None)
        tried = ", ".join(str(c) for c in (tried if isinstance(tried, (list, tuple)) else (tried,)) if c)
        return (
            f"no C++ compiler found for AOTInductor (tried {tried or 'none'}; install g++ or set CXX): "
            f"{_first_line(exc)}"
        )
    return None


#: a shared library that needs libstdc++ (std::string, operator new): how the compiler links it tells how it will
#: link the package's libraries
PROBE_SOURCE = """#include <string>
extern "C" int densebench_probe(const char *text) { return static_cast<int>(std::string(text).size()); }
"""


def _compiler(ctx) -> str | None:
    """The compiler AOTInductor will use for this row: ``aoti.cxx``, else Inductor's own choice."""
    if ctx.option(NAME, "cxx"):
        return ctx.option(NAME, "cxx")
    try:
        from torch._inductor import cpp_builder

        return cpp_builder.get_cpp_compiler()
    except Exception:  # noqa: BLE001 - none found: compiler_problem says so
        return None


def linkage_problem(ctx) -> str | None:
    """Why the row's compiler would build a package that cannot be loaded safely, or None: a small shared library
    built with it must link libstdc++ dynamically. About a second, instead of finding out after minutes of
    compiling (``check_linkage`` checks the package itself again). Without readelf, or when the probe does not
    build, nothing is said here."""
    readelf, compiler = shutil.which("readelf"), _compiler(ctx)
    if readelf is None or compiler is None:
        return None
    with tempfile.TemporaryDirectory(prefix="densebench-aoti-probe-") as tmp:
        source, library = Path(tmp) / "probe.cpp", Path(tmp) / "probe.so"
        source.write_text(PROBE_SOURCE)
        try:
            built = subprocess.run([compiler, "-shared", "-fPIC", str(source), "-o", str(library)],
                                   capture_output=True, text=True, timeout=120)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return None
        if built.returncode != 0:
            return None
        static = links_libstdcxx_statically(readelf, library)
    if static:
        return (f"{compiler} links libstdc++ statically into shared libraries, so its packages would bring a second "
                "libstdc++ into the process and crash AOTInductor's runtime (docs/perf-notes.md, session 7): "
                f"{USE_ANOTHER_CXX}")
    return None


# -- export, compile, load ------------------------------------------------------------------------------------
def _static_dim():
    return getattr(torch.export.Dim, "STATIC", None)


def export_program(model, example_inputs, dynamic_batch: bool):
    """``torch.export.export(model, (example,))``; a failure becomes ``RuntimeError("torch.export failed: ...")``.

    With ``dynamic_batch`` the batch dimension is a ``Dim`` of at least 1; a batch of one is exported from the
    example repeated twice (torch.export specialises a dimension of size 1), so the program is not tied to it.
    """
    example = example_inputs
    dynamic_shapes = None
    if dynamic_batch:
        if example.shape[0] == 1:
            example = torch.cat([example, example])  # keeps the memory format (channels-last stays channels-last)
        static = _static_dim()
        dynamic_shapes = ((torch.export.Dim("batch", min=1), *([static] * (example.dim() - 1))),)
    try:
        with torch.no_grad():
            return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
    except Exception as exc:
        raise RuntimeError(f"torch.export failed: {_first_line(exc)}{_where(exc)}") from exc


def load_package(path, ctx):
    """``torch._inductor.aoti_load_package`` on this row's device."""
    import torch._inductor

    kwargs = {}
    if ctx.is_cuda and ctx.device.index is not None:
        if "device_index" in inspect.signature(torch._inductor.aoti_load_package).parameters:
            kwargs["device_index"] = ctx.device.index
    return torch._inductor.aoti_load_package(str(path), **kwargs)


def _package_path(ctx) -> Path:
    """Into the run's models folder when the row exports, else into a temporary folder kept for the row."""
    state = ctx.state.setdefault(NAME, {})
    if ctx.job.export and ctx.models_dir is not None:
        directory = ctx.models_dir
        directory.mkdir(parents=True, exist_ok=True)
    else:
        state["tmpdir"] = tempfile.TemporaryDirectory(prefix="densebench-aoti-")  # removed with the row's context
        directory = Path(state["tmpdir"].name)
    return directory / package_name(ctx)


# -- hooks ----------------------------------------------------------------------------------------------------
@hookimpl
def backend_info():
    return BackendInfo(
        "torch.export + AOTInductor ahead of time into a .pt2 package; measures the package as loaded by "
        "aoti_load_package",
        modes=("inference",), stage="compiler", options=OPTIONS, check_recipe=check_recipe,
        artifact_per_batch_size=True,
    )  # fmt: skip


@hookimpl
def check_available(ctx):
    return aoti_api_problem() or compiler_problem() or linkage_problem(ctx)


@hookimpl
def prepare_model(model, example_inputs, ctx):
    import torch._inductor

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"aoti exports a torch.nn.Module with torch.export; an earlier recipe member returned "
                        f"{type(model).__name__}")  # fmt: skip
    dynamic = ctx.option(NAME, "dynamic_batch")
    configs = inductor_configs(ctx)
    model.eval()
    program = export_program(model, example_inputs, dynamic)
    path = _package_path(ctx)
    started = time.perf_counter()
    written = torch._inductor.aoti_compile_and_package(
        program, package_path=str(path), inductor_configs=dict(configs)
    )  # it adds its own keys
    compile_s = time.perf_counter() - started
    path = Path(written)
    check_linkage(path, ctx)
    loaded = load_package(path, ctx)
    state = ctx.state.setdefault(NAME, {})
    state.update(package=path, configs=configs, dynamic_batch=dynamic, compile_s=compile_s)
    batch = "dynamic batch" if dynamic else f"static batch {ctx.batch_size}"
    settings = ", ".join(f"{key}={str(value).lower()}" for key, value in configs.items() if key != "cpp.cxx")
    if "cpp.cxx" in configs:
        settings += f", cxx={configs['cpp.cxx'][1]}"
    ctx.notes.append(f"aoti: torch.export ({batch}), AOTInductor ({settings}) in {compile_s:.1f} s; measured: "
                     f"{path.name} ({path.stat().st_size / 2**20:.1f} MB) loaded by aoti_load_package")  # fmt: skip
    return loaded


@hookimpl
def export(ctx, directory):
    """The package ``prepare_model`` compiled (and measured): already in ``directory``, or copied there."""
    path = ctx.state.get(NAME, {}).get("package")
    if path is None or not Path(path).is_file():
        raise RuntimeError("aoti: no compiled package in this row (prepare_model did not run)")
    target = Path(directory) / Path(path).name
    if Path(path).resolve() != target.resolve():
        shutil.copyfile(path, target)
    return target


@hookimpl
def load_artifact(path, ctx):
    check_linkage(Path(path), ctx)
    return load_package(path, ctx)
