"""Why does ``aoti_load_package`` crash (SIGSEGV) on the H200, and what works? A matrix of small experiments.

Each case runs in its own child process (``faulthandler`` on, a time limit), so a crash is a result, not the end
of the probe: it records the exit signal and the last lines of the child's stderr (the Python stack of the crash).

    python3 benchmarks/aoti_probe.py --out DIR [--deadline SECONDS]

Cases, cheapest first: a tiny conv net on CPU and on CUDA (compile + load in the same process, load in a fresh
process, load with ``run_single_threaded``), then DenseNet-121 fp32 bs 1 on CUDA. Beside them: the toolchain
(gcc, the .so inside the package and what it links against, from ``ldd``). Results: DIR/aoti_probe.json.
``--second``: the loader directly, another TMPDIR, the older ``.so`` path. ``--third``: the environment and every
command the compile runs, ``dlopen`` alone, and the loader under a native SIGSEGV handler (its C stack).
``--fourth``: packages built with ``CXX=/usr/bin/g++``, DenseNet-121 fp16 channels_last at bs 1 and 256 on CUDA,
timed with CUDA events (docs/perf-notes.md, "Session 7").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = r'''
import faulthandler, json, sys, time
if not json.loads(sys.argv[1]).get("backtrace"):
    faulthandler.enable()
import torch
case = json.loads(sys.argv[1])
out = {}
def model():
    if case["model"] == "tiny":
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    import torchvision
    return torchvision.models.densenet121(weights=None).eval()
device = case["device"]
size = 32 if case["model"] == "tiny" else 224
x = torch.randn(case.get("batch", 1), 3, size, size, device=device)
_model = model
if case.get("fp16_cl"):  # fp16 weights and inputs, channels_last
    x = x.half().contiguous(memory_format=torch.channels_last)
    model = lambda: _model().half().to(memory_format=torch.channels_last)
if case.get("log_commands"):  # every command the compile runs (compiler flags, include paths)
    import subprocess
    _init = subprocess.Popen.__init__
    def _logged(self, args, *a, **k):
        with open(case["log_commands"], "a") as f:
            f.write(json.dumps(args if isinstance(args, str) else [str(x) for x in args]) + "\n")
        _init(self, args, *a, **k)
    subprocess.Popen.__init__ = _logged
if case["step"] in ("compile", "compile+load"):
    m = model().to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        ep = torch.export.export(m, (x,))
        path = torch._inductor.aoti_compile_and_package(ep, package_path=case["package"])
    out["compile_s"] = time.perf_counter() - t0
    out["package_mb"] = __import__("os").path.getsize(path) / 2**20
    with torch.no_grad():
        out["reference"] = m(x).float().sum().item()
    print("COMPILED", flush=True)
if case["step"] == "so":  # the older path: a bare .so and torch._export.aot_load
    m = model().to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        so = torch._export.aot_compile(m, (x,))
    out["compile_s"] = time.perf_counter() - t0
    print("COMPILED", flush=True)
    runner = torch._export.aot_load(so, device)
    print("LOADED", flush=True)
    with torch.no_grad():
        out["output_sum"] = float(runner(x).float().sum().item())
    print("RAN", flush=True)
if case["step"] == "dlopen":  # only dlopen the package's wrapper .so (its static initializers run)
    import ctypes
    ctypes.CDLL(case["so"], mode=ctypes.RTLD_LOCAL | 2)  # RTLD_NOW
    print("LOADED", flush=True)
if case.get("backtrace"):  # a native SIGSEGV handler (backtrace_symbols_fd), installed last
    import ctypes
    ctypes.CDLL(case["backtrace"]).install_handler()
if case["step"] == "loader":  # the package loader itself, without the Python wrapper
    loader = torch._C._aoti.AOTIModelPackageLoader(case["package"], "model", False, 1, -1)
    print("LOADED", flush=True)
if case["step"] in ("load", "compile+load"):
    t0 = time.perf_counter()
    kwargs = {"run_single_threaded": True} if case.get("single_threaded") else {}
    loaded = torch._inductor.aoti_load_package(case["package"], **kwargs)
    out["load_s"] = time.perf_counter() - t0
    print("LOADED", flush=True)
    with torch.no_grad():
        y = loaded(x)
    if device == "cuda":
        torch.cuda.synchronize()
    out["first_answer_s"] = time.perf_counter() - t0  # load plus the first answer: the cold start
    out["output_sum"] = float(y.float().sum().item())
    print("RAN", flush=True)
    if case.get("time") and device == "cuda":  # ms per call of the loaded package, CUDA events
        with torch.no_grad():
            for _ in range(20):
                loaded(x)
            ms = []
            for _ in range(5):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(50):
                    loaded(x)
                end.record()
                torch.cuda.synchronize()
                ms.append(start.elapsed_time(end) / 50)
        out["ms_per_call"] = sorted(ms)
        if case["step"] == "compile+load":
            with torch.no_grad():
                ref = m(x).float()
            out["max_abs_diff_vs_eager"] = float((loaded(x).float() - ref).abs().max())
print("RESULT " + json.dumps(out), flush=True)
'''


def run_case(case: dict, limit: float) -> dict:
    started = time.monotonic()
    env = dict(os.environ, **({} if case.get("backtrace") else {"PYTHONFAULTHANDLER": "1"}), **case.get("env", {}))
    command = [sys.executable, "-c", CHILD, json.dumps(case)]
    if case["step"] == "loader" and shutil.which("gdb"):  # the native stack of the crash
        command = ["gdb", "-batch", "-ex", "run", "-ex", "bt 30", "--args", *command]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired as exc:
        return {**case, "outcome": f"timeout after {limit:.0f} s", "stdout": (exc.stdout or b"")[-2000:].__str__()}
    record = {**case, "seconds": round(time.monotonic() - started, 1), "returncode": proc.returncode}
    if proc.returncode < 0:
        record["outcome"] = f"killed by {signal.Signals(-proc.returncode).name}"
    else:
        record["outcome"] = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    record["reached"] = [w for w in ("COMPILED", "LOADED", "RAN") if w in proc.stdout]
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            record.update(json.loads(line[7:]))
    record["stderr_tail"] = proc.stderr[-3000:]
    if case["step"] == "loader" or case.get("backtrace"):
        record["stderr_tail"] = proc.stderr[-12000:]
        record["stdout_tail"] = proc.stdout[-4000:]  # gdb's backtrace
    return record


def toolchain(package: Path) -> dict:
    info = {}
    for name, cmd in (("gcc", ["gcc", "--version"]), ("nvcc", ["nvcc", "--version"]),
                      ("ldconfig_cuda", ["sh", "-c", "ldconfig -p | grep -E 'libcuda\\.so|libcudart' | head"])):
        try:
            info[name] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout[-800:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            info[name] = f"unavailable: {exc}"
    if package.exists():
        import zipfile

        unpacked = package.with_suffix(".unzipped")
        with zipfile.ZipFile(package) as archive:
            info["package_files"] = [f"{i.filename} {i.file_size}" for i in archive.infolist()][:40]
            archive.extractall(unpacked)
        for so in unpacked.rglob("*.so"):
            info[f"ldd {so.name}"] = subprocess.run(["ldd", str(so)], capture_output=True, text=True).stdout[-2000:]
    return info


SEGV_HANDLER = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <execinfo.h>
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>
static void on_signal(int sig, siginfo_t *info, void *uc) {
    void *frames[64];
    int n = backtrace(frames, 64);
    dprintf(2, "NATIVE BACKTRACE signal %d address %p\n", sig, info->si_addr);
    for (int i = 0; i < n; i++) {
        Dl_info d;
        if (dladdr(frames[i], &d) && d.dli_fname)
            dprintf(2, "#%d %s+0x%lx %s\n", i, d.dli_fname, (unsigned long)((char *)frames[i] - (char *)d.dli_fbase),
                    d.dli_sname ? d.dli_sname : "?");
        else
            dprintf(2, "#%d %p\n", i, frames[i]);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}
void install_handler(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, 0);
    sigaction(SIGABRT, &sa, 0);
    sigaction(SIGBUS, &sa, 0);
}
"""

ENVIRONMENT = r"""
import json, os, sys, subprocess, torch
out = {k: os.environ.get(k) for k in ("CPATH", "CPLUS_INCLUDE_PATH", "C_INCLUDE_PATH", "LIBRARY_PATH",
       "LD_LIBRARY_PATH", "LD_PRELOAD", "CC", "CXX", "CFLAGS", "CXXFLAGS", "LDFLAGS", "CUDA_HOME", "TMPDIR")}
out["torch_cxx11_abi"] = torch._C._GLIBCXX_USE_CXX11_ABI
out["torch_compiled_with_cxx11_abi"] = torch.compiled_with_cxx11_abi()
out["torch_file"] = torch.__file__
out["maps_libstdcxx"] = sorted({l.split()[-1] for l in open("/proc/self/maps") if "libstdc++" in l or "libgomp" in l})
for tool in ("c++", "g++", "gcc", "clang++", "cmake", "ld"):
    p = subprocess.run(["sh", "-c", f"which -a {tool}; {tool} --version 2>&1 | head -1"], capture_output=True, text=True)
    out[tool] = p.stdout.strip()
from torch._inductor import config
out["cpp_cxx"] = getattr(config.cpp, "cxx", None)
print(json.dumps(out, indent=1, default=str))
"""


def third_round(out: Path, tiny_cpu: str) -> list[dict]:
    """The environment, then the cases: compile with its commands logged, dlopen alone, the loader with a native stack."""
    env = subprocess.run([sys.executable, "-c", ENVIRONMENT], capture_output=True, text=True)
    (out / "environment.json").write_text(env.stdout + env.stderr[-3000:])
    print(env.stdout + env.stderr[-2000:], flush=True)
    src = out / "segv.c"
    src.write_text(SEGV_HANDLER)
    handler = out / "libsegv.so"
    built = subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(handler), str(src)], capture_output=True,
                           text=True)
    print("handler build:", built.returncode, built.stderr[-500:], flush=True)
    log = str(out / "compile_commands.jsonl")
    cases = [{"name": "tiny cpu, compile only, commands logged", "model": "tiny", "device": "cpu", "step": "compile",
              "package": tiny_cpu, "log_commands": log},
             {"name": "tiny cpu, dlopen of the wrapper .so after import torch", "model": "tiny", "device": "cpu",
              "step": "dlopen", "package": tiny_cpu, "so": "FIRST_SO", "backtrace": str(handler)},
             {"name": "tiny cpu, AOTIModelPackageLoader, native stack", "model": "tiny", "device": "cpu",
              "step": "loader", "package": tiny_cpu, "backtrace": str(handler)},
             {"name": "tiny cpu, aoti_load_package, native stack", "model": "tiny", "device": "cpu", "step": "load",
              "package": tiny_cpu, "backtrace": str(handler)}]
    return cases


def first_so(package: str) -> str:
    import zipfile

    unpacked = Path(package).with_suffix(".unzipped_so")
    with zipfile.ZipFile(package) as archive:
        archive.extractall(unpacked)
    found = sorted(unpacked.rglob("*.so"))
    return str(found[0]) if found else "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds for the whole probe")
    parser.add_argument("--fourth", action="store_true",
                        help="the fourth round: packages compiled with the system g++ (CXX=/usr/bin/g++), CPU and "
                             "DenseNet-121 fp16 channels_last at bs 1 and 256 on CUDA, timed")
    parser.add_argument("--third", action="store_true",
                        help="the third round: the environment and compiler commands, dlopen alone, the loader "
                             "under a native backtrace handler")
    parser.add_argument("--second", action="store_true",
                        help="the second round: the loader directly (under gdb where there is one), another TMPDIR, "
                             "the older .so path (aot_compile + aot_load)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + args.deadline
    tiny_cpu, tiny_cuda, dense = (str(args.out / n) for n in ("tiny_cpu.pt2", "tiny_cuda.pt2", "densenet.pt2"))
    cases = [
        {"name": "tiny cpu, compile+load", "model": "tiny", "device": "cpu", "step": "compile+load",
         "package": tiny_cpu},
        {"name": "tiny cpu, load fresh", "model": "tiny", "device": "cpu", "step": "load", "package": tiny_cpu},
        {"name": "tiny cuda, compile only", "model": "tiny", "device": "cuda", "step": "compile", "package": tiny_cuda},
        {"name": "tiny cuda, load fresh", "model": "tiny", "device": "cuda", "step": "load", "package": tiny_cuda},
        {"name": "tiny cuda, load fresh single-threaded", "model": "tiny", "device": "cuda", "step": "load",
         "package": tiny_cuda, "single_threaded": True},
        {"name": "densenet cuda bs1, compile+load", "model": "densenet", "device": "cuda", "step": "compile+load",
         "package": dense},
        {"name": "densenet cuda bs1, load fresh", "model": "densenet", "device": "cuda", "step": "load",
         "package": dense},
    ]  # fmt: skip
    if args.second:
        cases = [
            {"name": "tiny cpu, compile only", "model": "tiny", "device": "cpu", "step": "compile", "package": tiny_cpu},
            {"name": "tiny cpu, AOTIModelPackageLoader directly", "model": "tiny", "device": "cpu", "step": "loader",
             "package": tiny_cpu},
            {"name": "tiny cpu, load fresh, TMPDIR=/dev/shm", "model": "tiny", "device": "cpu", "step": "load",
             "package": tiny_cpu, "env": {"TMPDIR": "/dev/shm"}},
            {"name": "tiny cpu, aot_compile .so + aot_load", "model": "tiny", "device": "cpu", "step": "so",
             "package": tiny_cpu},
            {"name": "tiny cuda, aot_compile .so + aot_load", "model": "tiny", "device": "cuda", "step": "so",
             "package": tiny_cuda},
        ]  # fmt: skip
    if args.third:
        cases = third_round(args.out, tiny_cpu)
    if args.fourth:  # the system compiler, whose libstdc++ is the one loaded at run time (perf-notes)
        gxx = {"CXX": "/usr/bin/g++"}
        cases = [
            {"name": "tiny cpu, CXX=/usr/bin/g++, compile+load", "model": "tiny", "device": "cpu",
             "step": "compile+load", "package": tiny_cpu, "env": gxx},
            {"name": "densenet cuda fp16 CL bs1, CXX=/usr/bin/g++, compile+load", "model": "densenet",
             "device": "cuda", "step": "compile+load", "package": dense, "env": gxx, "fp16_cl": True, "time": True},
            {"name": "densenet cuda fp16 CL bs1, load fresh", "model": "densenet", "device": "cuda", "step": "load",
             "package": dense, "env": gxx, "fp16_cl": True, "time": True},
            {"name": "densenet cuda fp16 CL bs256, CXX=/usr/bin/g++, compile+load", "model": "densenet",
             "device": "cuda", "step": "compile+load", "package": str(args.out / "densenet256.pt2"), "env": gxx,
             "fp16_cl": True, "time": True, "batch": 256},
        ]  # fmt: skip
    results = []
    for case in cases:
        left = end - time.monotonic()
        if left < 20:
            results.append({**case, "outcome": "not run: deadline"})
            continue
        if case.get("so") == "FIRST_SO":
            case = {**case, "so": first_so(case["package"])}
        record = run_case(case, min(left, 300))
        results.append(record)
        print(f"{case['name']}: {record['outcome']} reached={record.get('reached')} {record.get('seconds')} s",
              flush=True)
        if record["outcome"] != "ok":
            print("   " + record.get("stderr_tail", "")[-1200:].replace("\n", "\n   "), flush=True)
    document = {"torch": __import__("torch").__version__, "cases": results, "toolchain": toolchain(Path(tiny_cuda))}
    (args.out / "aoti_probe.json").write_text(json.dumps(document, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
