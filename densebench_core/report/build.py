"""Build ``report.md``, ``report.html`` and ``plots/*.png`` in a results folder from its CSV (and JSON).

Every sentence about which backend wins, and what it costs, is computed from the rows; nothing names a winner in
advance. Missing data (no baseline, only skipped rows, one batch size, empty cells) changes what is said, not
whether a report is written. This module puts the sections together, in order: :mod:`.intro` (opening, "At a
glance", "Summary"), :mod:`.performance`, :mod:`.scaling` ("Scaling and devices"), :mod:`.tradeoffs`, :mod:`.time_spent` ("Where the time goes") and
:mod:`.environment` ("Skipped and failed runs", "Environment"); :mod:`.fmt` writes their numbers.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from densebench_core.report import analysis, environment, intro, performance, plots, scaling, time_spent, tradeoffs
from densebench_core.report.analysis import Scenario, isnum
from densebench_core.report.fmt import images  # noqa: F401 - tests/test_cli_messages.py imports it from here
from densebench_core.report.render import Doc, Image
from densebench_core.schema import load_results


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

    intro.write(doc, results, counts, rows, scenarios, choices)
    intro.write_summary(doc, rows, scenarios)
    performance.write(doc, rows, scenarios, winners, figure)
    scaling.write(doc, rows)
    tradeoffs.write(doc, rows, scenarios, choices, figure)
    time_spent.write(doc, results, rows, scenarios)
    environment.write_not_measured(doc, frame)
    environment.write(doc, results)

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
        "scaling": scaling.efficiency_rows(rows) if not rows.empty else [],
        "devices": scaling.fastest_per_device(rows) if not rows.empty else [],
    }
