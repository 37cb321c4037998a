"""DenseNet-121 side by side: the suite's row, a bare loop over the same prepared model, and timm's best recipe.

Rows (``--rows``, batch size ``--bs ROW=N``): latency (bs 1, preset fastest-latency, p50 ms), throughput (bs 256,
fastest-throughput, img/s), training (bs 128, fastest-training, img/s). Each cell is one child process with a time
limit, so a failure is a recorded cell:
  * suite: ``python -m densebench_core.cli run --backend PRESET``, read from its CSV (p50 or throughput, accuracy);
  * bare: the job ``densebench run`` plans for the preset, prepared by the worker's own phases (``Worker.build``,
    ``prepare``, ``warm_up``: the model and step the suite times), timed by a bare loop: ``--rounds`` rounds of K
    iterations, each timed as a whole with CUDA events (``harness_overhead.bare_loop_ms``); median ms/iteration;
  * timm: ``timm.create_model("densenet121")``, channels_last, fp16 weights or AMP, ``torch.compile`` default and
    reduce-overhead (training: AMP, GradScaler, SGD lr 1e-3 momentum 0.9), the same bare loop; best recipe shown.
Order: per row suite, bare, timm's likeliest recipe; then timm's other recipes. ``--deadline`` skips what would not
fit (the cell says so). ``--out DIR`` gets side_by_side.json (every measurement, environment) and side_by_side.md;
rows not run now are kept from DIR/side_by_side.json and ``--merge`` files, so rows can be split over device calls.

    python3 benchmarks/side_by_side.py --out $OUT/sbs --deadline 540
    python benchmarks/side_by_side.py --device cpu --image-size 32 --bs throughput=2 --bs training=2 --warmup 2 \\
        --suite-backend channels_last --timm-compile-backend eager --rounds 3 --round-time 0.05 \\
        --suite-args="--min-time 0.1 --min-iters 5 --eval-images 2" --out /tmp/sbs            # CPU smoke check
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.metadata
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROWS = {"latency": ("fastest-latency", "inference", 1), "throughput": ("fastest-throughput", "inference", 256),
        "training": ("fastest-training", "training", 128)}  # fmt: skip
#: timm recipes (precision/compile mode), the likeliest best first
TIMM = {"inference": ["fp16/reduce-overhead", "amp/reduce-overhead", "fp16/default", "amp/default"],
        "training": ["amp/reduce-overhead", "amp/default"]}  # fmt: skip


# -- in the child processes ------------------------------------------------------------------------------------
def timed_rounds(step, device, rounds: int, round_time: float) -> dict:
    """``rounds`` rounds of K iterations (K: about ``round_time`` s), each timed as a whole; ms per iteration."""
    from harness_overhead import bare_loop_ms  # benchmarks/, beside this script

    iterations = max(1, round(round_time * 1000.0 / max(bare_loop_ms(step, 3, device), 1e-3)))
    per_iteration = [bare_loop_ms(step, iterations, device) for _ in range(rounds)]
    return {"ms": statistics.median(per_iteration), "rounds_ms": [round(x, 4) for x in per_iteration],
            "iterations_per_round": iterations}  # fmt: skip


def bare_child(spec: dict) -> dict:
    """The suite's job for this row, prepared by the worker's phases, timed by the bare loop."""
    import torch

    from densebench_core import hook_checks, worker
    from densebench_core.benchmark import RunConfig, plan
    from densebench_core.plugins import build_registry

    config = RunConfig(backends=[spec["backend"]], device=spec["device"], mode=spec["mode"], weights="random",
                       batch_sizes=(spec["bs"],), image_size=spec["image_size"], warmup=spec["warmup"], eval_images=1,
                       profile=False, export=False)  # fmt: skip
    config.resolve()
    (job,) = plan(config, build_registry())
    if job.decided:
        return dict(job.decided)
    job = job.replace(weights="random", cache_dir=spec["cache_dir"])  # as benchmark.execute completes it
    w = worker.Worker(job, set_phase=lambda phase: None, publish=lambda result: None)
    w.registry = build_registry(only=set(job.members))
    try:
        w.check_available()
    except worker.Skip as exc:
        return {"status": "skipped", "reason": str(exc)}
    model, inputs, _, _ = w.build()
    with contextlib.nullcontext() if job.training else torch.no_grad():
        model, inputs, step, _ = w.prepare(model, inputs)
        w.warm_up(step, model, inputs)  # the plugins' warm-up and before_measure hooks, as in the worker
        timing = timed_rounds(step, w.ctx.device, spec["rounds"], spec["round_time"])
        problems = [hook_checks.reason(name, "after_measure", fn(model=model, ctx=w.ctx))  # e.g. a recompilation
                    for name, fn in w.registry.impls(job.members, "after_measure")]  # fmt: skip
    problems = [p for p in problems if p]
    return {"status": "failed" if problems else "ok", "reason": "; ".join(problems), **timing,
            "recipe": "+".join(job.members), "options": job.options, "precision": w.ctx.precision,
            "prepare_s": round(w.result["prepare_s"], 2), "notes": w.ctx.notes}  # fmt: skip


def timm_child(spec: dict) -> dict:
    import torch

    try:
        import timm
    except ImportError:
        return {"status": "skipped", "reason": "timm not installed"}
    device, bs, size, backend = torch.device(spec["device"]), spec["bs"], spec["image_size"], spec["compile_backend"]
    precision, mode = spec["recipe"].split("/")
    training, amp = spec["mode"] == "training", precision == "amp"
    torch.backends.cudnn.benchmark = spec["cudnn_benchmark"]  # timm's benchmark.py default
    model = timm.create_model("densenet121", pretrained=False).to(device, memory_format=torch.channels_last)
    x = torch.randn(bs, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    if not amp:
        model, x = model.half(), x.half()
    model.train(training)
    compile_args = {"backend": backend, **({"mode": mode} if backend == "inductor" else {})}
    runnable = model if backend == "none" else torch.compile(model, **compile_args)
    autocast = lambda: torch.autocast(device.type, dtype=torch.float16, enabled=amp)
    if training:
        targets = torch.randint(0, 1000, (bs,), device=device)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        scaler, loss_fn = torch.amp.GradScaler(device.type, enabled=amp), torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                output = runnable(x)
            scaler.scale(loss_fn(output.float(), targets)).backward()
            scaler.step(optimizer)
            scaler.update()
    else:

        def step():
            with torch.no_grad(), autocast():
                return runnable(x)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for _ in range(3):  # compilation, then CUDA-graph warm-up and recording
        step()
    sync()
    compile_s = round(time.perf_counter() - t0, 2)
    for _ in range(spec["warmup"]):
        step()
    sync()
    return {"status": "ok", "reason": "", "compile_s": compile_s, "compile_backend": backend,
            **timed_rounds(step, device, spec["rounds"], spec["round_time"])}  # fmt: skip


def child_main(kind: str, spec: str) -> int:
    try:
        result = (bare_child if kind == "bare" else timm_child)(json.loads(spec))
    except Exception as exc:  # noqa: BLE001 - one failed recipe is a result, not a crash
        import traceback

        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


# -- the parent ------------------------------------------------------------------------------------------------
def run_process(cmd: list[str], timeout: float, log: Path) -> tuple[int | None, str]:
    """``cmd`` in its own process group (a timeout also ends Inductor's compile workers): (rc, None on timeout; stdout)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    rc = None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    log.write_text(f"$ {shlex.join(cmd)}\n--- stdout\n{stdout[-20000:]}\n--- stderr\n{stderr[-20000:]}")
    return rc, stdout


def measure(args, row: str, entry: dict, cell: str, timeout: float) -> dict:
    """One cell: the suite's row through the CLI, or a bare or timm child."""
    name = f"{row}_{cell.replace(':', '_').replace('/', '_')}"
    log = args.out / "logs" / f"{name}.log"
    if cell == "suite":
        out = args.out / f"suite_{row}"
        (out / "benchmark_results.csv").unlink(missing_ok=True)  # never read an earlier invocation's row
        cmd = ["-m", "densebench_core.cli", "run", "--backend", entry["backend"], "--mode", entry["mode"],
               "--batch-sizes", str(entry["batch_size"]), "--device", args.device, "--image-size",
               str(args.image_size), "--weights", "random", "--warmup", str(args.warmup), "--output-dir", str(out),
               "--log-dir", str(out / "tensorboard"), "--no-profile", "--no-export",
               "--timeout", str(max(1, int(timeout) - 5)), *shlex.split(args.suite_args)]  # fmt: skip
    else:
        spec = {"cache_dir": str((args.out / "cache").resolve()), "device": args.device, "mode": entry["mode"],
                "bs": entry["batch_size"], "image_size": args.image_size, "warmup": args.warmup,
                "rounds": args.rounds, "round_time": args.round_time, "backend": entry["backend"],
                "recipe": cell[5:], "compile_backend": args.timm_compile_backend,
                "cudnn_benchmark": args.cudnn_benchmark}  # fmt: skip
        cmd = [__file__, "--child", cell.split(":")[0], json.dumps(spec)]
    rc, stdout = run_process([sys.executable, *cmd], timeout, log)
    if rc is None:
        return {"status": "timeout", "reason": f"over {timeout:.0f} s (logs/{log.name})"}
    if cell != "suite":
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        return json.loads(lines[-1][7:]) if lines else {"status": "failed", "reason": f"exit {rc} (logs/{log.name})"}
    try:
        with open(out / "benchmark_results.csv", newline="") as handle:
            found = list(csv.DictReader(handle))[-1]
    except (OSError, IndexError):
        return {"status": "failed", "reason": f"exit {rc}, no row (logs/{log.name})"}
    result = {k: v for k, v in found.items() if v}  # the CSV row's filled cells
    for key in ("latency_p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "throughput_ips"):
        result[key] = float(result[key]) if key in result else None
    return {**result, "ms": result["latency_p50_ms"]}


def value(cell: dict | None, row: str, bs: int) -> float | None:
    """The row's metric: p50 latency in ms for ``latency``, images/s otherwise (the suite's own throughput)."""
    if not cell or cell.get("status") != "ok" or not cell.get("ms"):
        return None
    return cell["ms"] if row == "latency" else cell.get("throughput_ips") or bs * 1000.0 / cell["ms"]


def shown(cell: dict | None, row: str, bs: int) -> str:
    v = value(cell, row, bs)
    if v is None:
        return "not run" if cell is None else f"{cell.get('status')}: {str(cell.get('reason', ''))[:90]}"
    text = f"{v:.3f} ms" if row == "latency" else f"{v:,.0f} img/s"
    if row == "latency" and cell.get("p50_ci_low_ms"):  # the suite's 95% interval of its median
        text += f" [{cell['p50_ci_low_ms']:.3f}, {cell['p50_ci_high_ms']:.3f}]"
    return text + (" (accuracy NOT ok)" if cell.get("accuracy_ok") == "false" else "")


def table(report: dict) -> str:
    ratio = lambda a, b: f"{a / b:.2f}" if a and b else "-"
    lines = ["| row | densebench (suite) | bare loop, same model | timm best | suite/timm | bare/suite |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    tried = []
    for row, entry in report["rows"].items():
        bs, cells = entry["batch_size"], entry["cells"]
        timm = {k[5:]: c for k, c in cells.items() if k.startswith("timm:")}
        ok = {k: v for k, c in timm.items() if (v := value(c, row, bs))}
        best = (min if row == "latency" else max)(ok, key=ok.get) if ok else None
        timm_text = f"{shown(timm[best], row, bs)} ({best})" if best else "none measured"
        suite, bare = value(cells.get("suite"), row, bs), value(cells.get("bare"), row, bs)
        lines.append(f"| {row} (bs {bs}, {entry['backend']}) | {shown(cells.get('suite'), row, bs)} | "
                     f"{shown(cells.get('bare'), row, bs)} | {timm_text} | {ratio(suite, ok.get(best))} | "
                     f"{ratio(bare, suite)} |")  # fmt: skip
        tried += [f"- {row}, timm {k}: {shown(c, row, bs)}" + (f", compile {c['compile_s']} s" if "compile_s" in c
                  else "") for k, c in timm.items()]  # fmt: skip
    return "\n".join([*lines, "", "Ratios are of the row's metric: ms (lower is better) or img/s (higher is better). "
                      "Suite: median of per-iteration times; bare and timm: median over rounds of the mean.", "",
                      "timm recipes:", *tried]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--rows", default="latency,throughput,training")
    add("--bs", action="append", default=[], metavar="ROW=N", help="a row's batch size")
    add("--device", default="cuda")
    add("--image-size", type=int, default=224)
    add("--suite-backend", help="a backend or recipe for suite and bare instead of each row's preset (CPU check)")
    add("--suite-args", default="", help="more `densebench run` flags, e.g. --suite-args='--min-time 1'")
    add("--warmup", type=int, default=10, help="warm-up steps (suite, bare and timm)")
    add("--rounds", type=int, default=10, help="timed rounds of the bare and timm loops")
    add("--round-time", type=float, default=0.5, help="seconds per round")
    add("--timm-compile-backend", default="inductor", help="inductor, eager, aot_eager, or none (no compile)")
    add("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false", help="timm: cudnn.benchmark off")
    add("--timeout", type=float, default=300.0, help="seconds per cell")
    add("--deadline", type=float, default=None, help="seconds for the whole invocation")
    add("--min-left", type=float, default=60.0, help="start a cell only with this many seconds left")
    add("--merge", type=Path, action="append", default=[], help="an earlier side_by_side.json (repeatable)")
    add("--out", type=Path, default=Path("side-by-side"))
    add("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(*args.child)
    end = time.monotonic() + (args.deadline or float("inf"))
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    sizes = {key: int(n) for key, _, n in (pair.partition("=") for pair in args.bs)}
    if set(rows) - set(ROWS) or set(sizes) - set(ROWS):
        parser.error(f"rows are {', '.join(ROWS)}")
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    from densebench_core import envinfo

    environment = envinfo.collect(args.device)
    try:
        environment["timm"] = importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        environment["timm"] = "not installed"
    report = {"environment": environment, "settings": {k: str(v) for k, v in vars(args).items()}, "rows": {}}
    for row in rows:
        preset, mode, bs = ROWS[row]
        report["rows"][row] = {"backend": args.suite_backend or preset, "mode": mode, "batch_size": sizes.get(row, bs),
                               "cells": {}}  # fmt: skip
    tasks = [(row, cell) for row in rows for cell in ("suite", "bare", "timm:" + TIMM[ROWS[row][1]][0])]
    tasks += [(row, "timm:" + recipe) for row in rows for recipe in TIMM[ROWS[row][1]][1:]]
    for row, cell in tasks:
        entry, left = report["rows"][row], end - time.monotonic()
        started = time.monotonic()
        if left < args.min_left:
            result = {"status": "not run", "reason": f"{max(left, 0):.0f} s left before --deadline"}
        else:
            result = measure(args, row, entry, cell, min(args.timeout, left))
        entry["cells"][cell] = {**result, "wall_s": round(time.monotonic() - started, 1)}
        print(f"{row:10} {cell:26} {shown(result, row, entry['batch_size'])} ({time.monotonic() - started:.1f} s)",
              flush=True)  # fmt: skip
    json_path = args.out / "side_by_side.json"
    for earlier in [json_path, *args.merge]:  # rows measured earlier and not now
        if earlier.is_file():
            for row, entry in json.loads(earlier.read_text()).get("rows", {}).items():
                report["rows"].setdefault(row, entry)
    report["rows"] = {row: report["rows"][row] for row in ROWS if row in report["rows"]}
    json_path.write_text(json.dumps(report, indent=1, default=str))
    text = table(report)
    title = f"# DenseNet-121 side by side ({environment.get('device_name')}, {args.image_size} px)\n\n"
    (args.out / "side_by_side.md").write_text(title + text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
