"""Build ``report.md``, ``report.html`` and ``plots/*.png`` in a results folder from its CSV (and JSON).

Every sentence about which backend wins, and what it costs, is computed from the rows; nothing names a winner in
advance. Missing data (no baseline, only skipped rows, one batch size, empty cells) changes what is said, not
whether a report is written.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from densebench_core.report import analysis, plots
from densebench_core.report.analysis import BASELINE, Pick, Scenario, isnum
from densebench_core.report.data import Results, load_results
from densebench_core.report.render import Doc, Image, code, one_line

NOISY_CV = 0.10  # rows whose std is above this share of the mean are listed as noisy
TAIL_RATIO = 3.0  # a pick whose p99 exceeds this multiple of its p50 gets a warning


# -- number formatting -------------------------------------------------------------------------------------------
def num(value: Any, unit: str = "") -> str:
    if not isnum(value):
        return "—"
    v = float(value)
    a = abs(v)
    if a >= 1000:
        text = f"{v:,.0f}"
    elif a >= 100:
        text = f"{v:.1f}"
    elif a == 0:
        text = "0"
    else:
        text = f"{v:#.3g}"
    return text + unit


def sci(value: Any) -> str:
    if not isnum(value):
        return "—"
    return "0" if value == 0 else f"{value:.2e}"


def pct(value: Any, signed: bool = True) -> str:
    if not isnum(value):
        return "—"
    value = round(float(value), 1) + 0.0  # no "-0.0%"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def times(value: Any) -> str:
    return "—" if not isnum(value) else f"{value:.2f}×"


def images(value: Any) -> str:
    if value == math.inf:
        return "never"
    if not isnum(value):
        return "—"
    return f"{math.ceil(value):,} images"


def agree(value: Any) -> str:
    return "—" if not isnum(value) else f"{100 * value:.1f}%"


def _and(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# -- the report --------------------------------------------------------------------------------------------------
def build_report(results_dir: Path | str) -> dict[str, Any]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``results_dir``; return what was written.

    Returns a dict with ``report_md`` and ``report_html`` (Paths), ``plots`` (list of Paths), ``fastest`` (one dict
    per scenario and batch size: mode, device, image_size, batch_size, backend, throughput_ips), ``choices``
    (latency- and throughput-bound picks) and ``counts`` (rows per status). Raises
    :class:`~densebench_core.errors.BadInput` when the folder or its CSV is missing or unreadable.
    """
    results = load_results(results_dir)
    directory = results.directory
    frame = results.frame
    ok, duplicates = analysis.dedupe_ok(frame)
    if duplicates:
        results.notes.append(f"{duplicates} ok row(s) measured the same configuration twice; the last one is used.")
    rows = analysis.with_baseline(ok) if not ok.empty else ok
    scenarios = analysis.scenarios(rows) if not ok.empty else []
    colour = plots.colours(list(dict.fromkeys(rows["backend"]))) if not ok.empty else {}

    plot_dir = directory / "plots"
    plots.remove_stale(plot_dir)
    made: dict[tuple[str, str], plots.Plot] = {}
    for scenario in scenarios:
        for make in plots.ALL:
            plot = make(rows, scenario, colour, plot_dir)
            if plot is not None:
                made[(make.__name__, scenario.slug)] = plot

    def figure(doc: Doc, kind: str, scenario: Scenario) -> None:
        plot = made.get((kind, scenario.slug))
        if plot is not None:
            doc.image(Image(plot.path, f"plots/{plot.path.name}", plot.title, plot.caption))

    doc = Doc("DenseNet-121 benchmark report")
    counts = Counter(frame["status"])
    winners = {s.slug: analysis.fastest(rows, s) for s in scenarios}
    choices = {
        "latency": [p for p in (analysis.pick(rows, s, "latency") for s in scenarios) if p],
        "throughput": [p for p in (analysis.pick(rows, s, "throughput") for s in scenarios) if p],
    }

    _intro(doc, results, counts, rows, scenarios, choices)
    _summary(doc, rows, scenarios)
    _performance(doc, rows, scenarios, winners, figure)
    _tradeoffs(doc, rows, scenarios, choices, figure)
    _where_time_goes(doc, results, rows, scenarios)
    _not_measured(doc, frame)
    _environment(doc, results)

    md_path, html_path = directory / "report.md", directory / "report.html"
    md_path.write_text(doc.to_markdown())
    html_path.write_text(doc.to_html())
    return {
        "report_md": md_path,
        "report_html": html_path,
        "plots": [image.path for image in doc.images()],
        "fastest": [
            {"mode": w.scenario.mode, "device": w.scenario.device,
             "image_size": int(w.scenario.image_size) if isnum(w.scenario.image_size) else None,
             "batch_size": w.batch_size, "backend": w.backend, "throughput_ips": w.throughput_ips}
            for ws in winners.values() for w in ws
        ],
        "choices": {
            kind: [{"scenario": p.scenario.label, "batch_size": p.batch_size, "backend": p.row["backend"]}
                   for p in picks]
            for kind, picks in choices.items()
        },
        "counts": dict(counts),
    }


def _intro(doc: Doc, results: Results, counts: Counter, rows: pd.DataFrame, scenarios: list[Scenario],
           choices: dict[str, list[Pick]]) -> None:
    frame = results.frame
    run_ids = [r for r in dict.fromkeys(frame["run_id"]) if r]
    env = results.environment
    device_name = env.get("device_name") or next((d for d in frame.get("device_name", []) if d), "")
    devices = _and([code(d) for d in dict.fromkeys(frame["device"]) if d])
    torch_version = env.get("torch") or next((t for t in frame.get("torch_version", []) if t), "")
    facts = []
    if run_ids:
        facts.append(f"Run {_and([code(r) for r in run_ids])}")
    if devices:
        facts.append(f"on {devices}" + (f" ({device_name})" if device_name else ""))
    if torch_version:
        facts.append(f"with torch {torch_version}")
    sources = code(results.csv_path.name) + (f" and {code(results.json_path.name)}" if results.json_path else "")
    doc.para(" ".join(facts) + (". " if facts else "") + f"Generated from {sources} by `densebench report`.")
    status_text = _and([f"{counts[s]} {s}" for s in ("ok", "skipped", "failed", "timeout") if counts.get(s)])
    doc.para(f"Rows: {status_text}.")
    for note in results.notes:
        doc.para(f"Note: {note}")
    if rows.empty:
        doc.para("**No backend produced a measurement**, so there is nothing to compare; the reasons are listed "
                 "under \"Skipped and failed runs\" below.")
        return
    items = []
    for p in choices["latency"]:
        if p.scenario.mode == "inference" or len(scenarios) == 1:
            items.append(f"Lowest latency ({p.scenario.label}, batch {p.batch_size}): **{code(p.row['backend'])}** "
                         f"at {num(p.row['latency_p50_ms'], ' ms')} p50" + _tie(p))
    for p in choices["throughput"]:
        items.append(f"Highest throughput ({p.scenario.label}, batch {p.batch_size}): **{code(p.row['backend'])}** "
                     f"at {num(p.row['throughput_ips'], ' img/s')}" + _vs_base(p.row) + _tie(p))
    if BASELINE not in set(rows["backend"]):
        items.append("No ok `baseline` row: speed-ups and break-even points cannot be computed.")
    if items:
        doc.heading(1, "At a glance")
        doc.bullets(items)


def _tie(p: Pick) -> str:
    if p.within_noise and p.runner_up is not None:
        return f" (within measurement spread of {code(p.runner_up['backend'])})"
    return ""


def _vs_base(row: dict) -> str:
    if row["backend"] == BASELINE or not isnum(row.get("speedup")):
        return ""
    return f", {times(row['speedup'])} baseline"


def _summary(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario]) -> None:
    doc.heading(1, "Summary")
    if rows.empty:
        doc.para("No ok rows.")
        return
    doc.para("All ok rows, fastest first within each mode and batch size. Speed-up and accuracy are relative to "
             "the fp32 eager `baseline` at the same batch size; break-even is the number of images after which the "
             "backend's prepare time is paid back by its speed-up (\"never\": not faster than the baseline).")
    headers = ["Backend", "Mode", "Batch", "p50 (ms)", "p99 (ms)", "Throughput (img/s)", "Speed-up",
               "Peak mem (MB)", "Prepare (s)", "Max abs err", "Cosine", "Top-1 agree", "Break-even"]  # fmt: skip
    table = []
    for scenario in scenarios:
        mine = analysis.rows_of(rows, scenario)
        mine = mine.sort_values(["batch_size", "throughput_ips"], ascending=[True, False], kind="stable")
        for r in mine.to_dict("records"):
            table.append([
                code(r["backend"]), scenario.label, str(int(r["batch_size"])), num(r["latency_p50_ms"]),
                num(r["latency_p99_ms"]), num(r["throughput_ips"]), times(r["speedup"]), num(r["peak_mem_mb"]),
                num(r["prepare_s"]), sci(r["max_abs_err"]),
                "—" if not isnum(r["cosine_sim"]) else f"{r['cosine_sim']:.6f}", agree(r["top1_agree"]),
                "—" if r["backend"] == BASELINE else images(r["break_even_images"]),
            ])  # fmt: skip
    doc.table(headers, table, "llrrrrrrrrrrr")


def _performance(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario], winners: dict, figure) -> None:
    doc.heading(1, "Performance Analysis")
    if rows.empty:
        doc.para("Nothing was measured.")
        return
    all_winners = [w for ws in winners.values() for w in ws]
    if not all_winners:
        doc.para("No ok row recorded a throughput, so there is no fastest backend to name.")
        return
    doc.heading(2, "Fastest backend per batch size")
    doc.table(
        ["Mode", "Batch size", "Fastest", "Throughput (img/s)", "vs baseline", "Runner-up", "Lead"],
        [[w.scenario.label, str(w.batch_size), code(w.backend), num(w.throughput_ips), times(w.speedup),
          code(w.runner_up) if w.runner_up else "—",
          "—" if w.runner_up is None else pct(w.lead_pct) + (" (within spread)" if w.within_noise else "")]
         for w in all_winners],
        "lrlrrlr",
    )  # fmt: skip
    doc.para("Lead is how much more throughput the fastest backend has than the runner-up; \"within spread\" means "
             "the lead is smaller than the two rows' combined run-to-run variation (std/mean of per-iteration "
             "latency, at least 2%), so the two should be treated as tied.")
    for scenario in scenarios:
        ws = winners[scenario.slug]
        mine = analysis.rows_of(rows, scenario)
        doc.heading(2, scenario.label.capitalize())
        sentences = []
        for w in ws:
            text = (f"At batch size {w.batch_size}, {code(w.backend)} is fastest with {num(w.throughput_ips)} img/s"
                    + (f" ({times(w.speedup)} the baseline)" if isnum(w.speedup) and w.backend != BASELINE else ""))
            if w.runner_up is None:
                text += ", the only backend measured there."
            elif w.within_noise:
                text += (f", but only {pct(w.lead_pct, False)} ahead of {code(w.runner_up)} — less than the "
                         f"measurement spread (±{w.noise_pct:.0f}%), so call it a tie.")
            else:
                text += f", {pct(w.lead_pct, False)} ahead of {code(w.runner_up)}."
            sentences.append(text)
        doc.bullets(sentences)
        names = [w.backend for w in ws]
        if len(ws) > 1:
            if len(set(names)) == 1:
                doc.para(f"{code(names[0])} is the fastest at every measured batch size "
                         f"({_and([str(w.batch_size) for w in ws])}).")
            else:
                doc.para("The fastest backend changes with batch size: "
                         + "; ".join(f"batch {w.batch_size}: {code(w.backend)}" for w in ws) + ".")
            _scaling(doc, mine)
        if BASELINE in set(mine["backend"]):
            _slower_than_baseline(doc, mine)
        else:
            doc.para("No ok `baseline` row in this mode, so no speed-up is reported.")
        figure(doc, "throughput", scenario)
        figure(doc, "speedup", scenario)
        _latency_text(doc, mine)
        figure(doc, "latency", scenario)
        noisy = [r for r in mine.to_dict("records") if isnum(r["cv"]) and r["cv"] > NOISY_CV]
        if noisy:
            doc.para(f"Noisy measurements (std above {100 * NOISY_CV:.0f}% of the mean; rerun with a larger "
                     "`--min-time` before trusting small differences): "
                     + ", ".join(f"{code(r['backend'])} batch {int(r['batch_size'])} ({100 * r['cv']:.0f}%)"
                                 for r in noisy) + ".")  # fmt: skip


def _scaling(doc: Doc, mine: pd.DataFrame) -> None:
    small, large = mine["batch_size"].min(), mine["batch_size"].max()
    gains = []
    for backend, g in mine.groupby("backend", sort=False):
        a = g[g["batch_size"] == small]["throughput_ips"]
        b = g[g["batch_size"] == large]["throughput_ips"]
        if len(a) and len(b) and isnum(a.iloc[0]) and isnum(b.iloc[0]) and a.iloc[0] > 0:
            gains.append((b.iloc[0] / a.iloc[0], backend))
    if len(gains) < 1:
        return
    gains.sort(reverse=True)
    text = (f"Going from batch {int(small)} to {int(large)} multiplies throughput by {gains[0][0]:.2f}× for "
            f"{code(gains[0][1])}" + (" (the most)" if len(gains) > 1 else ""))
    if len(gains) > 1:
        text += f" and by {gains[-1][0]:.2f}× for {code(gains[-1][1])} (the least)"
    doc.para(text + ".")


def _slower_than_baseline(doc: Doc, mine: pd.DataFrame) -> None:
    slower = []
    for backend, g in mine[mine["backend"] != BASELINE].groupby("backend", sort=False):
        s = g["speedup"].dropna()
        if len(s) and (s < 1.0).all():
            slower.append(f"{code(backend)} ({times(s.min())}–{times(s.max())})" if len(s) > 1
                          else f"{code(backend)} ({times(s.iloc[0])})")
    if slower:
        doc.para(f"Slower than the baseline at every batch size measured: {_and(slower)}.")


def _latency_text(doc: Doc, mine: pd.DataFrame) -> None:
    batch = mine["batch_size"].min()
    at = mine[(mine["batch_size"] == batch) & mine["latency_p50_ms"].notna()].sort_values("latency_p50_ms")
    if at.empty:
        return
    best = at.iloc[0]
    text = (f"Latency at batch size {int(batch)}: {code(best['backend'])} has the lowest median, "
            f"{num(best['latency_p50_ms'], ' ms')} (p99 {num(best['latency_p99_ms'], ' ms')})")
    base = at[at["backend"] == BASELINE]
    if not base.empty and best["backend"] != BASELINE:
        text += f", against {num(base.iloc[0]['latency_p50_ms'], ' ms')} for the baseline"
    tail = at[at["latency_p99_ms"].notna()]
    if not tail.empty:
        ratio = tail["latency_p99_ms"] / tail["latency_p50_ms"]
        worst = tail.loc[ratio.idxmax()]
        if ratio.max() > 1.5:
            text += (f". The widest tail is {code(worst['backend'])}'s: p99 is {ratio.max():.1f}× its p50")
    doc.para(text + ".")


def _tradeoffs(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario], choices: dict, figure) -> None:
    doc.heading(1, "Trade-offs Discussion")
    if rows.empty:
        doc.para("Nothing was measured.")
        return
    doc.para(f"What each backend costs, against the fp32 eager baseline: accuracy (same seeded inputs and weights; "
             f"an accuracy cost is any top-1 disagreement or a cosine similarity below {analysis.COSINE_OK}), "
             "memory, and start-up (prepare) time with the number of images it takes to pay that back.")
    for scenario in scenarios:
        summary = analysis.backend_summary(rows, scenario)
        has_base = BASELINE in {s["backend"] for s in summary}
        doc.heading(2, f"Costs ({scenario.label})")
        table = []
        for s in summary:
            be = "—" if s["backend"] == BASELINE else (
                "; ".join(f"bs{b}: {images(v).replace(' images', '')}" for b, v in s["break_even"])
                if has_base else "— (no baseline)")
            table.append([
                code(s["backend"]), _range(s["speedup_min"], s["speedup_max"], times),
                sci(s["max_abs_err"]), sci(max(0.0, 1 - s["cosine_min"])) if isnum(s["cosine_min"]) else "—",
                agree(s["top1_min"]), _range(s["mem_delta_pct_min"], s["mem_delta_pct_max"], pct),
                num(s["prepare_s"]), num(s["artifact_mb"]), be,
            ])  # fmt: skip
        doc.table(["Backend", "Speed-up", "Max abs err", "1 − cosine", "Top-1 agree", "Peak mem vs baseline",
                   "Prepare (s)", "Artifact (MB)", "Break-even (images)"], table, "lrrrrrrrl")  # fmt: skip
        doc.bullets([_backend_sentence(s, scenario, has_base) for s in summary if s["backend"] != BASELINE])
        figure(doc, "memory", scenario)
        figure(doc, "accuracy", scenario)
        figure(doc, "prepare", scenario)

    doc.heading(2, "Which to choose")
    inference = [s for s in scenarios if s.mode == "inference"]
    serving = [p for p in choices["latency"] + choices["throughput"] if p.scenario in inference]
    if not inference:
        doc.para("No inference rows were measured, so there is no serving recommendation.")
    elif not serving:
        doc.para("No inference row recorded latency or throughput, so there is no serving recommendation.")
    items = []
    for kind, label in (("latency", "Latency-bound serving"), ("throughput", "Throughput-bound serving")):
        for p in choices[kind]:
            if p.scenario in inference:
                items.append(_pick_sentence(p, label))
    for p in choices["throughput"]:
        if p.scenario.mode == "training":
            items.append(_pick_sentence(p, "Training"))
    doc.bullets(items)


def _range(low: Any, high: Any, fmt) -> str:
    if not isnum(low) and not isnum(high):
        return "—"
    if not isnum(low) or not isnum(high) or fmt(low) == fmt(high):
        return fmt(high if isnum(high) else low)
    return f"{fmt(low)} … {fmt(high)}"


def _backend_sentence(s: dict, scenario: Scenario, has_base: bool) -> str:
    parts = []
    if isnum(s["speedup_max"]):
        if s["speedup_min"] >= 1.0:
            parts.append(f"faster than the baseline ({_range(s['speedup_min'], s['speedup_max'], times)})")
        elif s["speedup_max"] < 1.0:
            parts.append(f"slower than the baseline ({_range(s['speedup_min'], s['speedup_max'], times)})")
        else:
            parts.append(f"{_range(s['speedup_min'], s['speedup_max'], times)} the baseline depending on batch size")
    cost = analysis.accuracy_cost({"top1_agree": s["top1_min"], "cosine_sim": s["cosine_min"]})
    if cost:
        parts.append(f"accuracy cost: {cost}, max abs err {sci(s['max_abs_err'])}")
    elif isnum(s["max_abs_err"]):
        parts.append(f"no accuracy cost (same top-1, max abs err {sci(s['max_abs_err'])})")
    if isnum(s["mem_delta_pct_max"]):
        parts.append(f"peak memory {_range(s['mem_delta_pct_min'], s['mem_delta_pct_max'], pct)} vs baseline")
    if isnum(s["prepare_s"]):
        startup = f"{num(s['prepare_s'], ' s')} to prepare"
        if s["never_pays_off"]:
            startup += ", never paid back"
        elif s["pays_off_somewhere"]:
            finite = [(b, v) for b, v in s["break_even"] if isnum(v)]
            b, v = min(finite, key=lambda bv: bv[1])
            startup += f", paid back after {images(v)} at batch {b}"
        parts.append(startup)
    if not parts:
        return ""
    return f"{code(s['backend'])}: " + "; ".join(parts) + "."


def _pick_sentence(p: Pick, label: str) -> str:
    r = p.row
    if p.kind == "latency":
        text = (f"**{label}** (batch {p.batch_size}, {p.scenario.label}): {code(r['backend'])}, "
                f"p50 {num(r['latency_p50_ms'], ' ms')}, p99 {num(r['latency_p99_ms'], ' ms')}")
        if isnum(r.get("baseline_p50_ms")) and r["backend"] != BASELINE:
            text += f" (baseline p50 {num(r['baseline_p50_ms'], ' ms')})"
    else:
        text = (f"**{label}** (batch {p.batch_size}, {p.scenario.label}): {code(r['backend'])}, "
                f"{num(r['throughput_ips'], ' img/s')}" + _vs_base(r))
    if p.runner_up is None:
        text += "; the only backend measured there"
    else:
        if p.within_noise:
            text += f"; {code(p.runner_up['backend'])} is within the measurement spread, so either will do"
        else:
            text += f"; next best {code(p.runner_up['backend'])}"
    costs = []
    cost = analysis.accuracy_cost(r)
    if cost:
        costs.append(f"it {cost}" if cost.startswith("agrees") else f"accuracy: {cost}")
    if isnum(r.get("latency_p99_ms")) and isnum(r.get("latency_p50_ms")) and r["latency_p50_ms"] > 0 \
            and r["latency_p99_ms"] > TAIL_RATIO * r["latency_p50_ms"]:
        costs.append(f"an unstable tail (p99 is {r['latency_p99_ms'] / r['latency_p50_ms']:.1f}× its p50)")
    if isnum(r.get("mem_delta_pct")) and r["mem_delta_pct"] > 10:
        costs.append(f"{pct(r['mem_delta_pct'])} peak memory")
    if r["backend"] != BASELINE and isnum(r.get("prepare_s")):
        costs.append(f"{num(r['prepare_s'], ' s')} to prepare"
                     + (f", paid back after {images(r['break_even_images'])}" if isnum(r.get("break_even_images"))
                        else ""))  # fmt: skip
    if costs:
        text += ". Cost: " + "; ".join(costs)
    if p.exact_alternative is not None:
        alt = p.exact_alternative
        metric = (f"p50 {num(alt['latency_p50_ms'], ' ms')}" if p.kind == "latency"
                  else f"{num(alt['throughput_ips'], ' img/s')}")
        text += (f". If predictions must match the baseline exactly, {code(alt['backend'])} is the best option "
                 f"that does ({metric})")
    return text + "."


def _where_time_goes(doc: Doc, results: Results, rows: pd.DataFrame, scenarios: list[Scenario]) -> None:
    doc.heading(1, "Where the time goes")
    found = False
    for scenario in scenarios:
        mine = analysis.rows_of(rows, scenario)
        table, leaders = [], []
        found = _gpu_busy(doc, results, mine, scenario) or found
        for backend in dict.fromkeys(mine["backend"]):
            g = mine[mine["backend"] == backend].sort_values("batch_size", ascending=False)
            for r in g.to_dict("records"):
                extra = results.extras.get(_key(r)) or {}
                profile = extra.get("profile")
                cpu = analysis.top_operators(profile, "cpu")
                gpu = analysis.top_operators(profile, "cuda")
                if not cpu and not gpu:
                    continue
                for kind, ops in (("GPU kernels", gpu), ("CPU operators", cpu)):
                    if ops:
                        table.append([code(backend), str(int(r["batch_size"])), kind,
                                      ", ".join(f"{code(o['name'])} {o.get('self_time_pct', 0):.1f}%"
                                                for o in ops)])  # fmt: skip
                top = (gpu or cpu)[0]
                leaders.append((top.get("self_time_pct") or 0.0, backend, top["name"], "GPU" if gpu else "CPU",
                                int(r["batch_size"])))  # fmt: skip
                break  # the largest profiled batch size per backend
        if table:
            found = True
            doc.heading(2, f"Top operators ({scenario.label})")
            doc.para("From the short profiled pass after each measurement (never inside the timed loop), at the "
                     "largest profiled batch size per backend: share of self time, top five.")
            doc.table(["Backend", "Batch", "Kind", "Top operators (share of self time)"], table, "lrll")
            leaders.sort(reverse=True)
            doc.bullets([f"{code(b)}: {code(name)} takes {share:.1f}% of {where} self time at batch {batch}"
                         for share, b, name, where, batch in leaders])
    if found:
        doc.para("Full traces: `densebench tensorboard`, then the PyTorch Profiler tab (port 6007).")
    else:
        doc.para("No profiler summaries in these results (they come from `densebench run --profile`)."
                 if results.json_path else
                 "No profiler summaries: they are kept in the JSON file, and there is none beside the CSV.")


def _gpu_busy(doc: Doc, results: Results, mine: pd.DataFrame, scenario: Scenario) -> bool:
    """A table of how busy the GPU was in each profiled row, and which rows are host-bound; False if none."""
    busy = []
    for r in mine.sort_values(["backend", "batch_size"]).to_dict("records"):
        profile = (results.extras.get(_key(r)) or {}).get("profile")
        pct = analysis.gpu_busy_pct(profile, r.get("latency_mean_ms"))
        if pct is not None:
            busy.append((r["backend"], int(r["batch_size"]), profile["device_ms_per_step"], r["latency_mean_ms"], pct))
    if not busy:
        return False
    doc.heading(2, f"GPU busy ({scenario.label})")
    doc.para("Device time of the profiled pass's kernels, copies and memsets per step, against the mean step time "
             "of the timed loop: the share of a step the GPU was working.")  # fmt: skip
    doc.table(["Backend", "Batch", "GPU work (ms/step)", "Step (ms)", "GPU busy"],
              [[code(b), str(n), num(work), num(step), f"{pct:.0f}%"] for b, n, work, step, pct in busy], "lrrrr")  # fmt: skip
    limit = analysis.HOST_BOUND_BUSY_PCT
    bound = [f"{code(b)} batch {n} ({pct:.0f}%)" for b, n, _, _, pct in busy if pct < limit]
    if bound:
        doc.para(f"Host-bound (GPU busy under {limit:.0f}% of a step: it waits for the CPU to launch kernels, so "
                 "faster kernels will not help, fewer launches will; CUDA graphs, e.g. `compile.mode=reduce-overhead`, "
                 "replay a whole step with one launch): " + ", ".join(bound) + ".")  # fmt: skip
    else:
        doc.para(f"No row is host-bound: the GPU is busy at least {limit:.0f}% of every profiled step.")
    return True


def _key(row: dict) -> tuple:
    from densebench_core.report.data import row_key

    return row_key(row)


def _not_measured(doc: Doc, frame: pd.DataFrame) -> None:
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


def _environment(doc: Doc, results: Results) -> None:
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
            values = [v for v in dict.fromkeys(frame.get(column, [])) if v]
            if values:
                rows.append([column, ", ".join(values)])
        stamps = sorted(t for t in frame.get("timestamp", []) if t)
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
