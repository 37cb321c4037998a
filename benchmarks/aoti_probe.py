"""Why does ``aoti_load_package`` crash (SIGSEGV) on the H200, and what works? A matrix of small experiments.

Each case runs in its own child process (``faulthandler`` on, a time limit), so a crash is a result, not the end
of the probe: it records the exit signal and the last lines of the child's stderr (the Python stack of the crash).

    python3 benchmarks/aoti_probe.py --out DIR [--deadline SECONDS]

Cases, cheapest first: a tiny conv net on CPU and on CUDA (compile + load in the same process, load in a fresh
process, load with ``run_single_threaded``), then DenseNet-121 fp32 bs 1 on CUDA. Beside them: the toolchain
(gcc, the .so inside the package and what it links against, from ``ldd``). Results: DIR/aoti_probe.json.
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
    out["output_sum"] = float(y.float().sum().item())
    print("RAN", flush=True)
print("RESULT " + json.dumps(out), flush=True)
'''


def run_case(case: dict, limit: float) -> dict:
    started = time.monotonic()
    env = dict(os.environ, PYTHONFAULTHANDLER="1", **case.get("env", {}))
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
    if case["step"] == "loader":
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=540.0, help="seconds for the whole probe")
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
    results = []
    for case in cases:
        left = end - time.monotonic()
        if left < 20:
            results.append({**case, "outcome": "not run: deadline"})
            continue
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
