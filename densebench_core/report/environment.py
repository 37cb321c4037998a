"""The report's closing sections: "Skipped and failed runs" and "Environment" (machine, installed backends, run
settings)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from densebench_core.report.render import Doc, code, one_line
from densebench_core.schema import Results


def write_not_measured(doc: Doc, frame: pd.DataFrame) -> None:
    doc.heading(1, "Skipped and failed runs")
    bad = frame[frame["status"] != "ok"]
    if bad.empty:
        doc.para("None: every requested row was measured.")
        return
    groups: dict[tuple, list[int]] = {}
    for r in bad.to_dict("records"):
        reason = one_line(r.get("reason") or "") or "(no reason recorded)"
        groups.setdefault((r["backend"], r["mode"], r["status"], reason), []).append(int(r["batch_size"]))
    table = [[code(b), m, st, ", ".join(str(x) for x in sorted(set(bs))), reason[:300]]
             for (b, m, st, reason), bs in groups.items()]  # fmt: skip
    doc.table(["Backend", "Mode", "Status", "Batch sizes", "Reason"], table)


def write(doc: Doc, results: Results) -> None:
    doc.heading(1, "Environment")
    env, frame = results.environment, results.frame
    rows = []
    for key, value in env.items():
        if key == "plugins":
            continue
        if key == "gpus" and isinstance(value, list):
            value = "; ".join(_gpu(g) for g in value) or "none"
        elif isinstance(value, (dict, list)):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) \
                else ", ".join(str(v) for v in value)
        rows.append([key, str(value)])
    if not rows:  # no JSON: what the CSV knows
        for column in ("torch_version", "device_name", "device"):
            values = [v for v in dict.fromkeys(frame[column]) if v]
            if values:
                rows.append([column, ", ".join(values)])
        stamps = sorted(t for t in frame["timestamp"] if t)
        if stamps:
            rows.append(["measured", f"{stamps[0]} … {stamps[-1]}" if stamps[0] != stamps[-1] else stamps[0]])
    doc.table(["", "value"], rows)
    plugins = [p for p in env.get("plugins") or [] if isinstance(p, dict)]
    if plugins:
        doc.heading(2, "Backends installed")
        doc.table(["Backend", "Distribution", "Version", "Status", "Description or reason"],
                  [[code(p.get("name", "?")), str(p.get("distribution", "")), str(p.get("version", "")),
                    str(p.get("status", "")), one_line(p.get("reason") or p.get("description") or "")]
                   for p in plugins])  # fmt: skip
    if results.config:
        doc.heading(2, "Run settings")
        doc.table(["setting", "value"], [[k, one_line(v if not isinstance(v, (dict, list)) else str(v) or "—")]
                                        for k, v in results.config.items()])  # fmt: skip


def _gpu(gpu: Any) -> str:
    if isinstance(gpu, dict):
        return ", ".join(f"{k}={v}" for k, v in gpu.items())
    return str(gpu)
