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

from densebench_core import significance
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
    count = math.ceil(value)
    return f"{count:,} image{'s' if count != 1 else ''}"


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
    (latency- and throughput-bound picks), each with the backends ``tied`` with it, and ``counts`` (rows per
    status). Raises
    :class:`~densebench_core.errors.BadInput` when the folder or its CSV is missing or unreadable.
    """
    results = load_results(results_dir)
    directory = results.directory
    frame = results.frame
    ok, duplicates = analysis.dedupe_ok(frame)
    if duplicates:
        results.notes.append(f"{duplicates} ok row(s) measured the same configuration twice; the last one is used.")
    rows = analysis.with_baseline(ok, results.extras) if not ok.empty else ok
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
             "batch_size": w.batch_size, "backend": w.best["backend"], "tied": list(w.tied),
             "throughput_ips": w.best["throughput_ips"], "latency_p50_ms": w.best["latency_p50_ms"]}
            for ws in winners.values() for w in ws
        ],
        "choices": {
            kind: [{"scenario": p.scenario.label, "batch_size": p.batch_size, "backend": p.row["backend"],
                    "tied": list(p.ranking.tied)} for p in picks]
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
    busy = [r for r in rows.to_dict("records") if r.get("busy")]
    if busy:
        doc.para(f"**Warning: the machine was busy.** Other programs used the CPU while {len(busy)} of "
                 f"{len(rows)} rows were timed ({_and(_row_names(busy[:6]))}"
                 f"{', ...' if len(busy) > 6 else ''}). Their timings say more about the other programs than about "
                 "the backends, so they are **not judged**: no verdict calls them faster or slower than anything "
                 "(they count as tied). Rerun on a quiet machine.")
    items = []
    for p in choices["latency"]:
        if p.scenario.mode == "inference" or len(scenarios) == 1:
            items.append(f"Lowest latency ({p.scenario.label}, batch {p.batch_size}): {_winners(p.ranking)} "
                         f"at {num(p.row['latency_p50_ms'], ' ms')} p50")
    for p in choices["throughput"]:
        items.append(f"Highest throughput ({p.scenario.label}, batch {p.batch_size}): {_winners(p.ranking)} "
                     f"at {num(p.row['throughput_ips'], ' img/s')}" + _vs_base(p.row))
    if BASELINE not in set(rows["backend"]):
        items.append("No ok `baseline` row: speed-ups and break-even points cannot be computed.")
    failing = [r for r in rows.to_dict("records") if analysis.accuracy_failed(r)]
    if failing:
        items.append(f"Outside the accuracy tolerance (never recommended): {_and(_row_names(failing))}.")
    if items:
        doc.heading(1, "At a glance")
        doc.bullets(items)


def _row_names(records: list[dict]) -> list[str]:
    return [f"{code(r['backend'])} batch {int(r['batch_size'])}" for r in records]


def _winners(ranked: analysis.Ranking) -> str:
    """``**`a`**``, or ``**`a`** (tied with `b` and `c`: no significant difference)`` when the fastest group holds
    several."""
    text = f"**{code(ranked.best['backend'])}**"
    if ranked.tied:
        text += f" (tied with {_and([code(n) for n in ranked.tied])}: no significant difference)"
    return text


def _vs_base(row: dict) -> str:
    if row["backend"] == BASELINE or not isnum(row.get("speedup")):
        return ""
    if row.get("vs_baseline") == "tie":
        return f", ≈ {speedup(row)} the baseline (no significant difference)"
    return f", {speedup(row)} the baseline"


def speedup(row: dict) -> str:
    """``1.83× [1.79–1.88]`` (median-latency ratio over the baseline's, with its 95% interval), or ``—``."""
    if row.get("backend") == BASELINE:
        return "1 (reference)"
    if not isnum(row.get("speedup")):
        return "—"
    if isnum(row.get("speedup_low")) and isnum(row.get("speedup_high")):
        return f"{times(row['speedup'])} [{row['speedup_low']:.2f}–{row['speedup_high']:.2f}]"
    return times(row["speedup"])


def _summary(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario]) -> None:
    doc.heading(1, "Summary")
    if rows.empty:
        doc.para("No ok rows.")
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


def p50_with_ci(row: dict) -> str:
    text = num(row.get("latency_p50_ms"))
    if isnum(row.get("p50_ci_low_ms")) and isnum(row.get("p50_ci_high_ms")):
        text += f" [{num(row['p50_ci_low_ms'])}–{num(row['p50_ci_high_ms'])}]"
    return text


def accuracy_verdict(row: dict) -> str:
    value = str(row.get("accuracy_ok")).lower()
    return {"true": "ok", "false": "**FAILED**"}.get(value, "—")


def _performance(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario], winners: dict, figure) -> None:
    doc.heading(1, "Performance Analysis")
    if rows.empty:
        doc.para("Nothing was measured.")
        return
    all_winners = [w for ws in winners.values() for w in ws]
    if not all_winners:
        doc.para("No ok row recorded a latency, so there is no fastest backend to name.")
        return
    doc.heading(2, "Fastest backend per batch size")
    doc.table(
        ["Mode", "Batch size", "Fastest", "p50 (ms)", "Throughput (img/s)", "vs baseline", "Runner-up",
         "Lead over runner-up"],
        [[w.scenario.label, str(w.batch_size), _fastest_names(w), num(w.best["latency_p50_ms"]),
          num(w.best["throughput_ips"]), speedup(w.best), code(w.runner_up["backend"]) if w.runner_up else "—",
          _lead(w)] for w in all_winners],
        "lrlrrrlr",
    )  # fmt: skip
    doc.para(f"Fastest means the lowest median latency. Two backends are called different only when a rank test "
             f"(Mann-Whitney U) on their per-iteration latencies is significant (p < {significance.ALPHA}) *and* "
             "the slower median exceeds the faster by more than the noise floor of their kind of row, and neither "
             "was timed on a busy machine; otherwise they are tied, and every backend tied with the fastest is "
             "listed with it. The lead is the runner-up's median over the fastest's, with its 95% interval.")
    doc.para(_floors_text(rows))
    for scenario in scenarios:
        ws = winners[scenario.slug]
        mine = analysis.rows_of(rows, scenario)
        doc.heading(2, scenario.label.capitalize())
        sentences = []
        for w in ws:
            text = f"At batch size {w.batch_size}, {_fastest_names(w)} "
            text += "is fastest" if not w.tied else "are fastest, tied"
            text += f" ({num(w.best['latency_p50_ms'], ' ms')} p50, {num(w.best['throughput_ips'])} img/s"
            text += (f", {speedup(w.best)} the baseline" if isnum(w.best.get("speedup"))
                     and w.best["backend"] != BASELINE else "") + ")"
            if len(w.records) == 1:
                text += ", the only backend measured there."
            elif w.runner_up is None:
                text += ": no backend there is significantly slower."
            else:
                text += f", {w.lead.ratio:.2f}× faster than {code(w.runner_up['backend'])} ({w.lead.why()})."
            sentences.append(text)
        doc.bullets(sentences)
        names = [w.best["backend"] for w in ws]
        if len(ws) > 1:
            if len(set(names)) == 1 and not any(w.tied for w in ws):
                doc.para(f"{code(names[0])} is the fastest at every measured batch size "
                         f"({_and([str(w.batch_size) for w in ws])}).")
            else:
                doc.para("The fastest backend by batch size: "
                         + "; ".join(f"batch {w.batch_size}: {_fastest_names(w, bold=False)}" for w in ws) + ".")
            _scaling(doc, mine)
        if BASELINE in set(mine["backend"]):
            _slower_than_baseline(doc, mine)
        else:
            doc.para("No ok `baseline` row in this mode, so no speed-up is reported.")
        figure(doc, "throughput", scenario)
        figure(doc, "speedup", scenario)
        _latency_text(doc, ws)
        figure(doc, "latency", scenario)
        noisy = [r for r in mine.to_dict("records") if isnum(r["cv"]) and r["cv"] > NOISY_CV]
        if noisy:
            doc.para(f"Noisy measurements (std above {100 * NOISY_CV:.0f}% of the mean; the intervals show how "
                     "much that matters): "
                     + ", ".join(f"{code(r['backend'])} batch {int(r['batch_size'])} ({100 * r['cv']:.0f}%)"
                                 for r in noisy) + ".")  # fmt: skip


def _floors_text(rows: pd.DataFrame) -> str:
    """Which noise floor each row of this run has, and why (README, "Statistics")."""
    kinds: dict[float, list[str]] = {}
    for r in rows.to_dict("records"):
        floor = max(significance.NOISE_FLOOR, r["latency"].floor)
        kinds.setdefault(floor, []).append(f"{code(r['backend'])} batch {int(r['batch_size'])}")
    why = {significance.HOST_BOUND_FLOOR: "host-bound CUDA rows (the GPU waits for the host's launches; or their "
                                          "kind is unknown): the same such row in fresh processes was seen up to "
                                          "99% apart",
           significance.CPU_FLOOR: "CPU rows on several threads: up to 45% apart from one process to the next",
           significance.CPU_ONE_THREAD_FLOOR: "CPU rows on one thread: 4-5% apart from one process to the next"}
    parts = []
    for floor, names in sorted(kinds.items()):
        label = why.get(floor, "GPU-bound CUDA rows: 0.2-0.4% apart from one process to the next")
        listed = _and(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        parts.append(f"{floor:.0%} for {listed} ({label})")
    return "Noise floors in this run: " + "; ".join(parts) + "."


def _fastest_names(ranked: analysis.Ranking, bold: bool = True) -> str:
    names = [ranked.best["backend"], *ranked.tied]
    return _and([f"**{code(n)}**" if bold else code(n) for n in names])


def _lead(ranked: analysis.Ranking) -> str:
    lead = ranked.lead
    return "—" if lead is None else lead.interval_text()


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
        verdicts = list(g["vs_baseline"])
        if verdicts and all(v == "slower" for v in verdicts):
            slower.append(f"{code(backend)} ({_and([speedup(r) for r in g.to_dict('records')])})")
    if slower:
        doc.para(f"Significantly slower than the baseline at every batch size measured: {_and(slower)}.")


def _latency_text(doc: Doc, ws: list[analysis.Ranking]) -> None:
    if not ws:
        return
    first = ws[0]
    best = first.best
    text = (f"Latency at batch size {first.batch_size}: {_fastest_names(first, bold=False)} "
            f"{'has' if not first.tied else 'share'} the lowest median, {num(best['latency_p50_ms'], ' ms')}"
            + (f" (p99 {num(best['latency_p99_ms'], ' ms')})" if isnum(best.get("latency_p99_ms")) else ""))
    base = first.records.get(BASELINE)
    if base is not None and best["backend"] != BASELINE:
        text += f", against {num(base['latency_p50_ms'], ' ms')} for the baseline"
    tails = [r for r in first.records.values() if isnum(r.get("latency_p99_ms")) and r["latency_p50_ms"] > 0]
    if tails:
        worst = max(tails, key=lambda r: r["latency_p99_ms"] / r["latency_p50_ms"])
        ratio = worst["latency_p99_ms"] / worst["latency_p50_ms"]
        if ratio > 1.5:
            text += f". The widest tail is {code(worst['backend'])}'s: p99 is {ratio:.1f}× its p50"
    elif first.records:
        text += ". p99 is not interpreted: no row there has the 100 samples it needs"
    doc.para(text + ".")


def _tradeoffs(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario], choices: dict, figure) -> None:
    doc.heading(1, "Trade-offs Discussion")
    if rows.empty:
        doc.para("Nothing was measured.")
        return
    doc.para("What each backend costs, against the fp32 eager baseline: accuracy (the seeded evaluation set "
             "against the fp32 reference; an accuracy cost is any top-1 disagreement, and a row fails when its "
             "rel_err or top-1 agreement is outside the tolerance of its arithmetic, listed below), memory, and "
             "start-up (prepare) time with the number of images it takes to pay that back.")
    for scenario in scenarios:
        summary = analysis.backend_summary(rows, scenario)
        has_base = BASELINE in {s["backend"] for s in summary}
        doc.heading(2, f"Costs ({scenario.label})")
        table = []
        for s in summary:
            be = "—" if s["backend"] == BASELINE else (
                "; ".join(f"bs{b}: {images(v).replace(' images', '').replace(' image', '')}"
                          for b, v in s["break_even"])
                if has_base else "— (no baseline)")
            table.append([
                code(s["backend"]), _range(s["speedup_min"], s["speedup_max"], times),
                sci(s["max_abs_err"]), sci(s["rel_err_max"]), agree(s["top1_min"]),
                "**FAILED** (bs " + ", ".join(map(str, s["accuracy_failed"])) + ")" if s["accuracy_failed"] else "ok",
                _range(s["mem_delta_pct_min"], s["mem_delta_pct_max"], pct),
                num(s["prepare_s"]), num(s["artifact_mb"]), be,
            ])  # fmt: skip
        doc.table(["Backend", "Speed-up", "Max abs err", "rel_err", "Top-1 agree", "Accuracy",
                   "Peak mem vs baseline", "Prepare (s)", "Artifact (MB)", "Break-even (images)"], table,
                  "lrrrrlrrrl")  # fmt: skip
        doc.bullets([_backend_sentence(s, scenario, has_base) for s in summary if s["backend"] != BASELINE])
        figure(doc, "memory", scenario)
        figure(doc, "accuracy", scenario)
        figure(doc, "prepare", scenario)
    _accuracy_failures(doc, rows)

    doc.heading(2, "Which to choose")
    inference = [s for s in scenarios if s.mode == "inference"]
    serving = [p for p in choices["latency"] + choices["throughput"] if p.scenario in inference]
    if not inference:
        doc.para("No inference rows were measured, so there is no serving recommendation.")
    elif not serving:
        doc.para("No inference row recorded a latency within the accuracy tolerance, so there is no serving "
                 "recommendation.")
    items = []
    for kind, label in (("latency", "Latency-bound serving"), ("throughput", "Throughput-bound serving")):
        for p in choices[kind]:
            if p.scenario in inference:
                items.append(_pick_sentence(p, label))
    for p in choices["throughput"]:
        if p.scenario.mode == "training":
            items.append(_pick_sentence(p, "Training"))
    doc.bullets(items)


def _accuracy_failures(doc: Doc, rows: pd.DataFrame) -> None:
    """Every row outside its tolerance, and the tolerances themselves."""
    from densebench_core.accuracy import TOLERANCES

    doc.heading(2, "Accuracy check")
    failing = [r for r in rows.to_dict("records") if analysis.accuracy_failed(r)]
    if failing:
        doc.para("Rows whose answers are outside the tolerance of their arithmetic (never recommended below):")
        doc.table(["Backend", "Mode", "Batch", "Precision", "rel_err", "Top-1 agree", "Evaluation images"],
                  [[code(r["backend"]), r["mode"], str(int(r["batch_size"])), str(r.get("precision") or "—"),
                    sci(r.get("rel_err")), agree(r.get("top1_agree")), num(r.get("eval_images"))]
                   for r in failing], "lllrrrr")  # fmt: skip
    else:
        doc.para("Every row with an accuracy check is within the tolerance of its arithmetic.")
    doc.para("Tolerances (rel_err: norm of the output error over the norm of the reference's deviation from its "
             "mean over the evaluation images): "
             + "; ".join(f"{kind}: rel_err ≤ {t.max_rel_err:g}, top-1 agreement ≥ {t.min_top1_agree:.0%}"
                         for kind, t in TOLERANCES.items())
             + ". fp32 rows on CUDA are held to tf32's, since cuDNN runs their convolutions in TF32 by default.")


def _range(low: Any, high: Any, fmt) -> str:
    if not isnum(low) and not isnum(high):
        return "—"
    if not isnum(low) or not isnum(high) or fmt(low) == fmt(high):
        return fmt(high if isnum(high) else low)
    return f"{fmt(low)} … {fmt(high)}"


def _backend_sentence(s: dict, scenario: Scenario, has_base: bool) -> str:
    parts = []
    verdicts = [v for v in s["verdicts"] if v]
    if verdicts:
        span = _range(s["speedup_min"], s["speedup_max"], times)
        if all(v == "faster" for v in verdicts):
            parts.append(f"significantly faster than the baseline ({span})")
        elif all(v == "slower" for v in verdicts):
            parts.append(f"significantly slower than the baseline ({span})")
        elif all(v == "tie" for v in verdicts):
            parts.append(f"no significant difference from the baseline ({span})")
        else:
            parts.append(f"{span} the baseline depending on batch size")
    if s["accuracy_failed"]:
        parts.append(f"fails the accuracy check at batch {', '.join(map(str, s['accuracy_failed']))} "
                     f"(rel_err up to {sci(s['rel_err_max'])}, top-1 agreement down to {agree(s['top1_min'])})")
    elif isnum(s["top1_min"]) and s["top1_min"] < 1.0:
        parts.append(f"within its accuracy tolerance; agrees with the baseline's top-1 class on "
                     f"{agree(s['top1_min'])} of the evaluation images or more (rel_err up to {sci(s['rel_err_max'])})")
    elif isnum(s["rel_err_max"]):
        parts.append(f"no accuracy cost (same top-1, rel_err up to {sci(s['rel_err_max'])})")
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
        text = (f"**{label}** (batch {p.batch_size}, {p.scenario.label}): {_winners(p.ranking)}, "
                f"p50 {num(r['latency_p50_ms'], ' ms')}"
                + (f", p99 {num(r['latency_p99_ms'], ' ms')}" if isnum(r.get("latency_p99_ms")) else ""))
        if isnum(r.get("baseline_p50_ms")) and r["backend"] != BASELINE:
            text += f" (baseline p50 {num(r['baseline_p50_ms'], ' ms')})"
    else:
        text = (f"**{label}** (batch {p.batch_size}, {p.scenario.label}): {_winners(p.ranking)}, "
                f"{num(r['throughput_ips'], ' img/s')}" + _vs_base(r))
    if len(p.ranking.records) == 1:
        text += "; the only backend measured there"
    elif p.ranking.tied:
        text += "; any of the tied backends will do"
    elif p.ranking.runner_up is not None:
        text += f"; next best {code(p.ranking.runner_up['backend'])} ({p.ranking.lead.interval_text()} slower)"
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
                                      ", ".join(f"{code(o['short_name'])} {o.get('self_time_pct', 0):.1f}%"
                                                for o in ops)])  # fmt: skip
                top = (gpu or cpu)[0]
                leaders.append((top.get("self_time_pct") or 0.0, backend, top["short_name"], "GPU" if gpu else "CPU",
                                int(r["batch_size"])))  # fmt: skip
                break  # the largest profiled batch size per backend
        if table:
            found = True
            doc.heading(2, f"Top operators ({scenario.label})")
            doc.para("From the short profiled pass after each measurement (never inside the timed loop), at the "
                     "largest profiled batch size per backend: share of self time, top five. Names are "
                     "shortened; `benchmark_results.json` keeps them whole.")
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
    """Who waits for whom in each CUDA row: the host's launch time and the profiled GPU work against the step, and
    which rows are host-bound (the one rule, the significance rule's: launch time against latency); False if no
    row says."""
    table, bound = [], []
    for r in mine.sort_values(["backend", "batch_size"]).to_dict("records"):
        extra = results.extras.get(_key(r)) or {}
        profile, launch = extra.get("profile"), extra.get("launch_ms")
        pct = analysis.gpu_busy_pct(profile, r.get("latency_mean_ms"))
        if pct is None and not isnum(launch):
            continue
        host_bound = extra.get("host_bound")
        table.append([code(r["backend"]), str(int(r["batch_size"])), num(r.get("latency_p50_ms")), num(launch),
                      num(profile["device_ms_per_step"]) if pct is not None else "—",
                      f"{pct:.0f}%" if pct is not None else "—",
                      {True: "**yes**", False: "no"}.get(host_bound, "—")])  # fmt: skip
        if host_bound:
            bound.append(f"{code(r['backend'])} batch {int(r['batch_size'])}")
    if not table:
        return False
    doc.heading(2, f"Who waits for whom ({scenario.label})")
    doc.para("Launch: the host's time to launch one step onto an idle GPU, timed without the profiler. GPU work: "
             "device time of the profiled pass's kernels, copies and memsets per step; GPU busy: that against the "
             "mean step time. A row is host-bound when its launch takes at least "
             f"{significance.HOST_BOUND_SHARE:.0%} of its median latency: the GPU waits for the CPU, so faster "
             "kernels will not help and fewer launches will (CUDA graphs, e.g. `compile.mode=reduce-overhead`, "
             "replay a whole step with one launch), and its timing moves with the host's speed from one process "
             f"to the next (its noise floor is {significance.HOST_BOUND_FLOOR:.0%}).")  # fmt: skip
    doc.table(["Backend", "Batch", "p50 (ms)", "Launch (ms)", "GPU work (ms/step)", "GPU busy", "Host-bound"],
              table, "lrrrrrl")  # fmt: skip
    doc.para("Host-bound: " + _and(bound) + "." if bound else "No row is host-bound.")
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
