"""The report's "Performance Analysis": the fastest backend per batch size, the noise floors behind the verdicts,
scaling with batch size, latency tails, noisy rows, and the throughput, speed-up and latency plots."""

from __future__ import annotations

import pandas as pd

from densebench_core import significance
from densebench_core.report import analysis
from densebench_core.report.analysis import BASELINE, Scenario, isnum
from densebench_core.report.fmt import and_list, fastest_names, lead, num, section, speedup
from densebench_core.report.render import Doc, code

#: p99 over p50 above which the widest tail at the smallest batch size is named
WIDE_TAIL_RATIO = 1.5


def write(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario], winners: dict, figure) -> None:
    if not section(doc, "Performance Analysis", rows, "Nothing was measured."):
        return
    all_winners = [w for ws in winners.values() for w in ws]
    if not all_winners:
        doc.para("No ok row recorded a latency, so there is no fastest backend to name.")
        return
    doc.heading(2, "Fastest backend per batch size")
    doc.table(
        ["Mode", "Batch size", "Fastest", "p50 (ms)", "Throughput (img/s)", "vs baseline", "Runner-up",
         "Lead over runner-up"],
        [[w.scenario.label, str(w.batch_size), fastest_names(w), num(w.best["latency_p50_ms"]),
          num(w.best["throughput_ips"]), speedup(w.best), code(w.runner_up["backend"]) if w.runner_up else "—",
          lead(w)] for w in all_winners],
        "lrlrrrlr",
    )  # fmt: skip
    doc.para(f"Fastest means the lowest median latency. Two backends are called different only when a rank test "
             f"(Mann-Whitney U) on their per-iteration latencies is significant (p < {significance.ALPHA}) *and* "
             "the slower median exceeds the faster by more than the noise floor of their kind of row, and neither "
             "was timed on a busy machine; otherwise they are tied, and every backend tied with the fastest is "
             "listed with it. The lead is the runner-up's median over the fastest's, with its 95% interval.")
    doc.para(_floors_text(rows))
    for scenario in scenarios:
        _scenario(doc, rows, scenario, winners[scenario.slug], figure)


def _scenario(doc: Doc, rows: pd.DataFrame, scenario: Scenario, ws: list[analysis.Ranking], figure) -> None:
    mine = analysis.rows_of(rows, scenario)
    doc.heading(2, scenario.label.capitalize())
    sentences = []
    for w in ws:
        text = f"At batch size {w.batch_size}, {fastest_names(w)} "
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
                     f"({and_list([str(w.batch_size) for w in ws])}).")
        else:
            doc.para("The fastest backend by batch size: "
                     + "; ".join(f"batch {w.batch_size}: {fastest_names(w, bold=False)}" for w in ws) + ".")
        _scaling(doc, mine)
    if BASELINE in set(mine["backend"]):
        _slower_than_baseline(doc, mine)
    else:
        doc.para("No ok `baseline` row in this mode, so no speed-up is reported.")
    figure(doc, "throughput", scenario)
    figure(doc, "speedup", scenario)
    _latency_text(doc, ws)
    figure(doc, "latency", scenario)
    noisy = [r for r in mine.to_dict("records") if r["cv"] > significance.NOISY_CV]
    if noisy:
        doc.para(f"Noisy measurements (std above {100 * significance.NOISY_CV:.0f}% of the mean; the intervals show "
                 "how much that matters): "
                 + ", ".join(f"{code(r['backend'])} batch {int(r['batch_size'])} ({100 * r['cv']:.0f}%)"
                             for r in noisy) + ".")  # fmt: skip


def _floors_text(rows: pd.DataFrame) -> str:
    """Which noise floor each row of this run has, and why (README, "Statistics")."""
    kinds: dict[float, list[str]] = {}
    for r in rows.to_dict("records"):
        kinds.setdefault(significance.noise_floor(r["latency"]), []).append(
            f"{code(r['backend'])} batch {int(r['batch_size'])}")
    why = {significance.HOST_BOUND_FLOOR: "host-bound CUDA rows (the GPU waits for the host's launches; or their "
                                          "kind is unknown): the same such row in fresh processes was seen up to "
                                          "99% apart",
           significance.CPU_FLOOR: "CPU rows on several threads: up to 45% apart from one process to the next",
           significance.CPU_ONE_THREAD_FLOOR: "CPU rows on one thread: 4-5% apart from one process to the next"}
    parts = []
    for floor, names in sorted(kinds.items()):
        label = why.get(floor, "GPU-bound CUDA rows: 0.2-0.4% apart from one process to the next")
        listed = and_list(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        parts.append(f"{floor:.0%} for {listed} ({label})")
    return "Noise floors in this run: " + "; ".join(parts) + "."


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
            slower.append(f"{code(backend)} ({and_list([speedup(r) for r in g.to_dict('records')])})")
    if slower:
        doc.para(f"Significantly slower than the baseline at every batch size measured: {and_list(slower)}.")


def _latency_text(doc: Doc, ws: list[analysis.Ranking]) -> None:
    if not ws:
        return
    first = ws[0]
    best = first.best
    text = (f"Latency at batch size {first.batch_size}: {fastest_names(first, bold=False)} "
            f"{'has' if not first.tied else 'share'} the lowest median, {num(best['latency_p50_ms'], ' ms')}"
            + (f" (p99 {num(best['latency_p99_ms'], ' ms')})" if isnum(best.get("latency_p99_ms")) else ""))
    base = first.records.get(BASELINE)
    if base is not None and best["backend"] != BASELINE:
        text += f", against {num(base['latency_p50_ms'], ' ms')} for the baseline"
    tails = [r for r in first.records.values() if isnum(r.get("latency_p99_ms")) and r["latency_p50_ms"] > 0]
    if tails:
        worst = max(tails, key=lambda r: r["latency_p99_ms"] / r["latency_p50_ms"])
        ratio = worst["latency_p99_ms"] / worst["latency_p50_ms"]
        if ratio > WIDE_TAIL_RATIO:
            text += f". The widest tail is {code(worst['backend'])}'s: p99 is {ratio:.1f}× its p50"
    elif first.records:
        text += ". p99 is not interpreted: no row there has the 100 samples it needs"
    doc.para(text + ".")
