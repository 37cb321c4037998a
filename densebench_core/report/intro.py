"""The report's opening (which run, how many rows, warnings, "At a glance") and its "Summary" table."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from densebench_core import schema
from densebench_core.report import analysis
from densebench_core.report.analysis import BASELINE, Pick, Scenario
from densebench_core.report.fmt import (
    accuracy_verdict,
    agree,
    and_list,
    images,
    num,
    p50_with_ci,
    row_names,
    sci,
    section,
    speedup,
    vs_base,
    winners,
)
from densebench_core.report.render import Doc, code
from densebench_core.schema import Results


def write(doc: Doc, results: Results, counts: Counter, rows: pd.DataFrame, scenarios: list[Scenario],
          choices: dict[str, list[Pick]]) -> None:
    frame = results.frame
    run_ids = [r for r in dict.fromkeys(frame["run_id"]) if r]
    env = results.environment
    device_name = env.get("device_name") or next((d for d in frame["device_name"] if d), "")
    devices = and_list([code(d) for d in dict.fromkeys(frame["device"]) if d])
    torch_version = env.get("torch") or next((t for t in frame["torch_version"] if t), "")
    facts = []
    if run_ids:
        facts.append(f"Run {and_list([code(r) for r in run_ids])}")
    if devices:
        facts.append(f"on {devices}" + (f" ({device_name})" if device_name else ""))
    if torch_version:
        facts.append(f"with torch {torch_version}")
    sources = code(results.csv_path.name) + (f" and {code(results.json_path.name)}" if results.json_path else "")
    doc.para(" ".join(facts) + (". " if facts else "") + f"Generated from {sources} by `densebench report`.")
    doc.para(f"Rows: {and_list([f'{counts[s]} {s}' for s in schema.STATUSES if counts.get(s)])}.")
    for note in results.notes:
        doc.para(f"Note: {note}")
    if rows.empty:
        doc.para("**No backend produced a measurement**, so there is nothing to compare; the reasons are listed "
                 "under \"Skipped and failed runs\" below.")
        return
    busy = [r for r in rows.to_dict("records") if r.get("busy")]
    if busy:
        doc.para(f"**Warning: the machine was busy.** Other programs used the CPU while {len(busy)} of "
                 f"{len(rows)} rows were timed ({and_list(row_names(busy[:6]))}"
                 f"{', ...' if len(busy) > 6 else ''}). Their timings say more about the other programs than about "
                 "the backends, so they are **not judged**: no verdict calls them faster or slower than anything "
                 "(they count as tied). Rerun on a quiet machine.")
    items = []
    for p in choices["latency"]:
        if p.scenario.mode == "inference" or len(scenarios) == 1:
            items.append(f"Lowest latency ({p.scenario.label}, batch {p.batch_size}): {winners(p.ranking)} "
                         f"at {num(p.row['latency_p50_ms'], ' ms')} p50")
    for p in choices["throughput"]:
        items.append(f"Highest throughput ({p.scenario.label}, batch {p.batch_size}): {winners(p.ranking)} "
                     f"at {num(p.row['throughput_ips'], ' img/s')}" + vs_base(p.row))
    if BASELINE not in set(rows["backend"]):
        items.append("No ok `baseline` row: speed-ups and break-even points cannot be computed.")
    failing = [r for r in rows.to_dict("records") if analysis.accuracy_failed(r)]
    if failing:
        items.append(f"Outside the accuracy tolerance (never recommended): {and_list(row_names(failing))}.")
    if items:
        doc.heading(1, "At a glance")
        doc.bullets(items)


def write_summary(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario]) -> None:
    if not section(doc, "Summary", rows, "No ok rows."):
        return
    doc.para("All ok rows, fastest (lowest median latency) first within each mode and batch size. p50 comes with "
             "its 95% confidence interval; a percentile is shown only from enough samples (p99: 100). Speed-up is "
             "the fp32 eager `baseline`'s median latency over the row's at the same batch size, with its 95% "
             "interval; \"≈\" marks no significant difference from the baseline. Accuracy is measured on the "
             "seeded evaluation set against the fp32 reference; break-even is the number of images after which "
             "the backend's prepare time is paid back by its speed-up (\"never\": not significantly faster than the baseline).")
    headers = ["Backend", "Mode", "Batch", "p50 (ms) [95% CI]", "p99 (ms)", "Throughput (img/s)", "Speed-up",
               "Peak mem (MB)", "Prepare (s)", "rel_err", "Top-1 agree", "Accuracy", "Break-even"]  # fmt: skip
    table = []
    for scenario in scenarios:
        for ranked in analysis.fastest(rows, scenario):
            for name in ranked.order():
                r = ranked.records[name]
                table.append([
                    code(r["backend"]), scenario.label, str(int(r["batch_size"])), p50_with_ci(r),
                    num(r["latency_p99_ms"]), num(r["throughput_ips"]),
                    ("≈ " if r.get("vs_baseline") == "tie" and r["backend"] != BASELINE else "") + speedup(r),
                    num(r["peak_mem_mb"]), num(r["prepare_s"]), sci(r.get("rel_err")), agree(r["top1_agree"]),
                    accuracy_verdict(r), "—" if r["backend"] == BASELINE else images(r["break_even_images"]),
                ])  # fmt: skip
    doc.table(headers, table, "llrrrrrrrrrlr")
