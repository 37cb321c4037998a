"""The report's "Trade-offs Discussion": what each backend costs against the baseline (accuracy, memory, start-up),
the accuracy check, and "Which to choose" (the latency-, throughput- and training picks)."""

from __future__ import annotations

import pandas as pd

from densebench_core.report import analysis
from densebench_core.report.analysis import BASELINE, Pick, Scenario, isnum
from densebench_core.report.fmt import agree, images, num, pct, sci, section, times, value_range, vs_base, winners
from densebench_core.report.render import Doc, code

#: a pick whose p99 exceeds this multiple of its p50 gets a warning
TAIL_RATIO = 3.0
#: a pick whose peak memory exceeds the baseline's by more than this (percent) has it named as a cost
MEMORY_COST_PCT = 10


def write(doc: Doc, rows: pd.DataFrame, scenarios: list[Scenario], choices: dict, figure) -> None:
    if not section(doc, "Trade-offs Discussion", rows, "Nothing was measured."):
        return
    doc.para("What each backend costs, against the fp32 eager baseline: accuracy (the seeded evaluation set "
             "against the fp32 reference; an accuracy cost is any top-1 disagreement, and a row fails when its "
             "rel_err or top-1 agreement is outside the tolerance of its arithmetic, listed below), memory, and "
             "start-up (prepare) time with the number of images it takes to pay that back.")
    for scenario in scenarios:
        _costs(doc, rows, scenario, figure)
    _accuracy_failures(doc, rows)
    _choices(doc, scenarios, choices)


def _costs(doc: Doc, rows: pd.DataFrame, scenario: Scenario, figure) -> None:
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
            code(s["backend"]), value_range(s["speedup_min"], s["speedup_max"], times),
            sci(s["max_abs_err"]), sci(s["rel_err_max"]), agree(s["top1_min"]),
            "**FAILED** (bs " + ", ".join(map(str, s["accuracy_failed"])) + ")" if s["accuracy_failed"] else "ok",
            value_range(s["mem_delta_pct_min"], s["mem_delta_pct_max"], pct),
            num(s["prepare_s"]), num(s["artifact_mb"]), be,
        ])  # fmt: skip
    doc.table(["Backend", "Speed-up", "Max abs err", "rel_err", "Top-1 agree", "Accuracy",
               "Peak mem vs baseline", "Prepare (s)", "Artifact (MB)", "Break-even (images)"], table,
              "lrrrrlrrrl")  # fmt: skip
    doc.bullets([_backend_sentence(s) for s in summary if s["backend"] != BASELINE])
    figure(doc, "memory", scenario)
    figure(doc, "accuracy", scenario)
    figure(doc, "prepare", scenario)


def _choices(doc: Doc, scenarios: list[Scenario], choices: dict) -> None:
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


def _backend_sentence(s: dict) -> str:
    parts = []
    verdicts = [v for v in s["verdicts"] if v]
    if verdicts:
        span = value_range(s["speedup_min"], s["speedup_max"], times)
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
        parts.append(f"peak memory {value_range(s['mem_delta_pct_min'], s['mem_delta_pct_max'], pct)} vs baseline")
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


def _cold_start(p: Pick) -> str:
    """For serving: what a new replica pays before its first answer, and the fastest row that starts from an
    exported artifact when the pick has none (``cold_start_s``: a fresh process loads it and answers)."""
    r = p.row
    if isnum(r.get("cold_start_s")):
        return f". A new replica answers {num(r['cold_start_s'], ' s')} after loading its exported artifact"
    ranked = [p.ranking.records[name] for name in p.ranking.order()]
    loadable = [x for x in ranked if isnum(x.get("cold_start_s")) and not analysis.accuracy_failed(x)]
    text = ""
    if r["backend"] != BASELINE and isnum(r.get("prepare_s")):
        text = f". It exports nothing that loads faster: a new replica pays its {num(r['prepare_s'], ' s')} again"
    if loadable:
        alt = loadable[0]
        metric = (f"p50 {num(alt['latency_p50_ms'], ' ms')}" if p.kind == "latency"
                  else f"{num(alt['throughput_ips'], ' img/s')}")
        text += (f". Where replicas start often, the fastest row with a loadable artifact is {code(alt['backend'])} "
                 f"({metric}, cold start {num(alt['cold_start_s'], ' s')})")
    return text


def _pick_sentence(p: Pick, label: str) -> str:
    r = p.row
    if p.kind == "latency":
        text = (f"**{label}** (batch {p.batch_size}, {p.scenario.label}): {winners(p.ranking)}, "
                f"p50 {num(r['latency_p50_ms'], ' ms')}"
                + (f", p99 {num(r['latency_p99_ms'], ' ms')}" if isnum(r.get("latency_p99_ms")) else ""))
        if isnum(r.get("baseline_p50_ms")) and r["backend"] != BASELINE:
            text += f" (baseline p50 {num(r['baseline_p50_ms'], ' ms')})"
    else:
        text = (f"**{label}** (batch {p.batch_size}, {p.scenario.label}): {winners(p.ranking)}, "
                f"{num(r['throughput_ips'], ' img/s')}" + vs_base(r))
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
    if isnum(r.get("mem_delta_pct")) and r["mem_delta_pct"] > MEMORY_COST_PCT:
        costs.append(f"{pct(r['mem_delta_pct'])} peak memory")
    if r["backend"] != BASELINE and isnum(r.get("prepare_s")):
        costs.append(f"{num(r['prepare_s'], ' s')} to prepare"
                     + (f", paid back after {images(r['break_even_images'])}" if isnum(r.get("break_even_images"))
                        else ""))  # fmt: skip
    if costs:
        text += ". Cost: " + "; ".join(costs)
    if p.scenario.mode == "inference":
        text += _cold_start(p)
    if p.exact_alternative is not None:
        alt = p.exact_alternative
        metric = (f"p50 {num(alt['latency_p50_ms'], ' ms')}" if p.kind == "latency"
                  else f"{num(alt['throughput_ips'], ' img/s')}")
        text += (f". If predictions must match the baseline exactly, {code(alt['backend'])} is the best option "
                 f"that does ({metric})")
    return text + "."
