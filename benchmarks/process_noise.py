"""How much the same row differs from one fresh process to the next (an A/A test).

Each row of ``densebench run`` is measured in one process, and its 95% interval describes that process only. Code
and data placement (address-space layout, thread placement, clocks) differ between processes, so the same
backend measured in two processes can differ by more than either interval says. This script measures that:
``--processes`` runs of ``densebench run`` with the same settings, one after another, then, per row, the medians
of every process and their spread (largest over smallest). The noise floor of densebench's significance rule
(``densebench_core/significance.py``) is set from what this printed on each kind of device.

    python benchmarks/process_noise.py --processes 6 -- --backend baseline --device cpu --batch-sizes 2 \\
        --image-size 32 --min-time 1 --no-profile --no-export

Writes ``--out`` (JSON: every process's median per row, and the spread) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from densebench_core.schema import CSV_NAME, read_results_csv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=6, help="fresh runs of the same settings")
    parser.add_argument("--out", type=Path, default=Path("process_noise.json"))
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the arguments of `densebench run`")
    args = parser.parse_args()
    run_args = [a for a in args.run_args if a != "--"]
    medians: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.processes):
            out = Path(tmp) / f"run{index}"
            cmd = [sys.executable, "-m", "densebench_core.cli", "run", *run_args, "--output-dir", str(out),
                   "--log-dir", str(Path(tmp) / "logs")]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr, file=sys.stderr)
                return proc.returncode
            frame = read_results_csv(out / CSV_NAME)
            for row in frame[frame["status"] == "ok"].to_dict("records"):
                key = f"{row['backend']} {row['mode']} bs{int(row['batch_size'])}"
                medians.setdefault(key, []).append(row["latency_p50_ms"])
    summary = {key: {"medians_ms": values, "spread": max(values) / min(values) - 1.0}
               for key, values in medians.items()}  # fmt: skip
    args.out.write_text(json.dumps({"run_args": run_args, "processes": args.processes, "rows": summary}, indent=1))
    for key, item in summary.items():
        values = ", ".join(f"{v:.3f}" for v in item["medians_ms"])
        print(f"{key}: medians {values} ms; largest/smallest - 1 = {100 * item['spread']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
