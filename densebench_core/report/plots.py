"""PNG plots for the report (matplotlib, Agg backend: no display needed). One function per figure.

Every function takes the ok rows (already ``analysis.with_baseline``), a scenario, the colour of each backend and
the output folder, and returns a :class:`Plot` or None when the data has nothing to show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from densebench_core.report import analysis
from densebench_core.report.analysis import BASELINE, Scenario, isnum

DPI = 110
WIDE_RANGE = 20.0  # max/min ratio above which a value axis becomes logarithmic


@dataclass
class Plot:
    path: Path
    title: str
    caption: str


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def colours(backends: list[str]) -> dict[str, tuple]:
    """A stable colour per backend (the baseline is always dark grey) so all plots read alike."""
    plt = _pyplot()
    others = [b for b in backends if b != BASELINE]
    cmap = plt.get_cmap("tab10" if len(others) <= 10 else "tab20")
    mapping = {b: cmap(i % cmap.N) for i, b in enumerate(others)}
    mapping[BASELINE] = (0.25, 0.25, 0.25, 1.0)
    return mapping


def _wide(values) -> bool:
    finite = [v for v in values if isnum(v) and v > 0]
    return len(finite) > 1 and max(finite) / min(finite) > WIDE_RANGE


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def _order(rows: pd.DataFrame) -> list[str]:
    """Baseline first, then the others by first appearance."""
    names = list(dict.fromkeys(rows["backend"]))
    return ([BASELINE] if BASELINE in names else []) + [n for n in names if n != BASELINE]


def _grouped_bars(ax, groups: list, series: list[str], value, colour, label_fmt=None, log=False):
    """Bars for each group (x) and series (colour); ``value(group, series)`` gives a height or NaN."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, name in enumerate(series):
        xs, hs = [], []
        for j, group in enumerate(groups):
            h = value(group, name)
            if isnum(h):
                xs.append(j - 0.4 + width * (i + 0.5))
                hs.append(h)
        bars = ax.bar(xs, hs, width=width * 0.95, color=colour[name], label=name)
        if label_fmt and len(groups) * n <= 24:
            ax.bar_label(bars, labels=[label_fmt(h) for h in hs], fontsize=7, padding=1, rotation=90 if n > 4 else 0)
    ax.set_xticks(range(len(groups)))
    ax.set_xlim(-0.5, len(groups) - 0.5)
    if log:
        ax.set_yscale("log")


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _legend(ax, n: int) -> None:
    """Outside the plot, on the right: it never hides a bar or a label."""
    ax.legend(fontsize=8, ncol=1 if n <= 12 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _batch_axis(ax, batches: list[int]) -> None:
    if len(batches) > 1 and max(batches) / max(min(batches), 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.minorticks_off()


def throughput(rows: pd.DataFrame, scenario: Scenario, colour: dict, out: Path) -> Plot | None:
    mine = analysis.rows_of(rows, scenario)
    mine = mine[mine["throughput_ips"].notna()]
    if mine.empty:
        return None
    plt = _pyplot()
    batches = sorted(int(b) for b in mine["batch_size"].unique())
    backends = _order(mine)
    fig, ax = plt.subplots(figsize=(7.5 if len(batches) == 1 else 8.5, 4.6))
    if len(batches) == 1:
        ranked = mine.sort_values("throughput_ips")
        ax.barh(ranked["backend"], ranked["throughput_ips"], color=[colour[b] for b in ranked["backend"]])
        ax.bar_label(ax.containers[0], labels=[_short(v) for v in ranked["throughput_ips"]], fontsize=8, padding=2)
        ax.set_xlabel("throughput (images/s, higher is better)")
        if _wide(ranked["throughput_ips"]):
            ax.set_xscale("log")
        ax.set_title(f"Throughput at batch size {batches[0]} ({scenario.label})")
    else:
        for backend in backends:
            g = mine[mine["backend"] == backend].sort_values("batch_size")
            style = "--" if backend == BASELINE else "-"
            ax.plot(g["batch_size"], g["throughput_ips"], style, marker="o", color=colour[backend], label=backend,
                    linewidth=2 if backend == BASELINE else 1.6)  # fmt: skip
        _batch_axis(ax, batches)
        if _wide(mine["throughput_ips"]):
            ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("throughput (images/s, higher is better)")
        ax.set_title(f"Throughput vs batch size ({scenario.label})")
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax, len(backends))
    return Plot(_save(fig, out / f"throughput_{scenario.slug}.png"), f"Throughput ({scenario.label})",
                "Images per second at each batch size (mean latency); higher is better.")


def latency(rows: pd.DataFrame, scenario: Scenario, colour: dict, out: Path) -> Plot | None:
    mine = analysis.rows_of(rows, scenario)
    mine = mine[mine["latency_p50_ms"].notna()]
    if mine.empty:
        return None
    batch = int(mine["batch_size"].min())
    at = mine[mine["batch_size"] == batch].sort_values("latency_p50_ms", ascending=False)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * len(at) + 0.8))
    y = list(range(len(at)))
    p50, p99 = list(at["latency_p50_ms"]), list(at["latency_p99_ms"])
    bars = ax.barh([v + 0.2 for v in y], p50, height=0.38, color=[colour[b] for b in at["backend"]], label="p50")
    ax.barh([v - 0.2 for v in y], [v if isnum(v) else 0 for v in p99], height=0.38,
            color=[colour[b] for b in at["backend"]], alpha=0.45, hatch="//", label="p99")  # fmt: skip
    ax.bar_label(bars, labels=[f"p50 {_short(v)}" for v in p50], fontsize=7, padding=2)
    ax.bar_label(ax.containers[1], labels=[f"p99 {_short(v)}" if isnum(v) else "" for v in p99], fontsize=7, padding=2)
    ax.set_yticks(y)
    ax.set_yticklabels(list(at["backend"]))
    ax.set_xlabel("latency per batch (ms, lower is better)")
    if _wide(p50 + p99):
        ax.set_xscale("log")
    ax.set_xlim(right=max(v for v in p50 + p99 if isnum(v)) * (3 if ax.get_xscale() == "log" else 1.22))
    ax.set_title(f"Latency at batch size {batch} ({scenario.label}): p50 solid, p99 hatched")
    return Plot(_save(fig, out / f"latency_{scenario.slug}.png"), f"Latency at batch {batch} ({scenario.label})",
                f"Median (p50) and tail (p99) latency of one batch of {batch}; lower is better.")


def _by_batch_and_backend(mine: pd.DataFrame, column: str) -> tuple[list[int], list[str], dict]:
    """Batch sizes, backends in plotting order, and ``{(batch, backend): value}`` for one column."""
    batches = sorted(int(b) for b in mine["batch_size"].unique())
    lookup = {(int(r["batch_size"]), r["backend"]): r[column] for r in mine.to_dict("records")}
    return batches, _order(mine), lookup


def _grouped_figsize(batches: list[int], backends: list[str]) -> tuple[float, float]:
    """Wide enough for one bar per (batch, backend), within 8 to 14 inches."""
    return min(14.0, max(8.0, 3.2 + 0.35 * len(batches) * len(backends))), 4.4


def speedup(rows: pd.DataFrame, scenario: Scenario, colour: dict, out: Path) -> Plot | None:
    mine = analysis.rows_of(rows, scenario)
    mine = mine[mine["speedup"].notna() & (mine["backend"] != BASELINE)]
    if mine.empty:
        return None
    plt = _pyplot()
    batches, backends, lookup = _by_batch_and_backend(mine, "speedup")
    fig, ax = plt.subplots(figsize=_grouped_figsize(batches, backends))
    log = _wide(list(lookup.values()) + [1.0])
    _grouped_bars(ax, batches, backends, lambda g, s: lookup.get((g, s)), colour, lambda v: f"{v:.2f}x", log=log)
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--", label="baseline (1x)")
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("speedup over baseline (throughput ratio)")
    ax.set_title(f"Speedup over fp32 eager baseline ({scenario.label})")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax, len(backends))
    return Plot(_save(fig, out / f"speedup_{scenario.slug}.png"), f"Speedup over baseline ({scenario.label})",
                "Throughput divided by the baseline's at the same batch size; above the dashed line is faster.")


def memory(rows: pd.DataFrame, scenario: Scenario, colour: dict, out: Path) -> Plot | None:
    mine = analysis.rows_of(rows, scenario)
    mine = mine[mine["peak_mem_mb"].notna()]
    if mine.empty:
        return None
    plt = _pyplot()
    batches, backends, lookup = _by_batch_and_backend(mine, "peak_mem_mb")
    fig, ax = plt.subplots(figsize=_grouped_figsize(batches, backends))
    _grouped_bars(ax, batches, backends, lambda g, s: lookup.get((g, s)), colour, lambda v: f"{v:,.0f}",
                  log=_wide(lookup.values()))  # fmt: skip
    ax.set_xticklabels([str(b) for b in batches])
    values = [v for v in lookup.values() if isnum(v)]
    if ax.get_yscale() == "linear" and values and min(values) > 0.6 * max(values):
        # close values (e.g. process RSS on CPU): zoom in so the differences are visible, and say so
        ax.set_ylim(min(values) * 0.97, max(values) * 1.02)
        ax.set_title(f"Peak memory ({scenario.label}; axis does not start at 0)")
    else:
        ax.set_title(f"Peak memory ({scenario.label})")
    ax.set_xlabel("batch size")
    ax.set_ylabel("peak memory (MB, lower is better)")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax, len(backends))
    device = "GPU memory allocated by torch" if scenario.device.startswith("cuda") else "peak memory of the process"
    return Plot(_save(fig, out / f"memory_{scenario.slug}.png"), f"Peak memory ({scenario.label})",
                f"Peak memory per batch size ({device}, as the runner recorded it); lower is better.")


def accuracy(rows: pd.DataFrame, scenario: Scenario, colour: dict, out: Path) -> Plot | None:
    mine = analysis.rows_of(rows, scenario)
    mine = mine[mine["backend"] != BASELINE]
    cols = ["max_abs_err", "one_minus_cos", "top1_agree"]
    if mine.empty or not mine[cols].notna().any().any():
        return None
    # the worst value over batch sizes, per backend
    worst = mine.groupby("backend", sort=False).agg(
        max_abs_err=("max_abs_err", "max"), one_minus_cos=("one_minus_cos", "max"), top1_agree=("top1_agree", "min"))
    backends = list(worst.index)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.9 + 0.45 * len(backends) + 1.4))
    titles = {"max_abs_err": "max |output - baseline|\n(lower is better)",
              "one_minus_cos": "1 - cosine similarity\n(lower is better)",
              "top1_agree": "top-1 agreement with baseline\n(higher is better)"}  # fmt: skip
    for ax, col in zip(axes, cols):
        values = list(worst[col])
        y = list(range(len(backends)))
        shown = [v if isnum(v) and (col == "top1_agree" or v > 0) else 0 for v in values]
        ax.barh(y, shown, color=[colour[b] for b in backends])
        positive = [v for v in values if isnum(v) and v > 0]
        if col != "top1_agree" and positive:
            ax.set_xscale("log")
            ax.set_xlim(min(positive) / 5, max(positive) * 20)
        elif col != "top1_agree":  # every value exactly 0 (or missing): an empty axis with labels says it all
            ax.set_xlim(0, 1)
            ax.set_xticks([])
        if col == "top1_agree":
            ax.set_xlim(0, 1.25)
        for yi, v in zip(y, values):
            if not isnum(v):
                text = "n/a"
            elif col == "top1_agree":
                text = f"{100 * v:.1f}%"
            else:
                text = "0 (exact)" if v <= 0 else f"{v:.2g}"
            x = v if isnum(v) and (col == "top1_agree" or v > 0) else (ax.get_xlim()[0] if ax.get_xscale() == "log" else 0)
            ax.text(x, yi, " " + text, va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(backends if col == cols[0] else [])
        ax.set_title(titles[col], fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"Accuracy drift vs fp32 baseline, worst over batch sizes ({scenario.label})", fontsize=10)
    return Plot(_save(fig, out / f"accuracy_{scenario.slug}.png"), f"Accuracy drift ({scenario.label})",
                "Output difference from the fp32 eager baseline on the same inputs and weights.")


def prepare(rows: pd.DataFrame, scenario: Scenario, colour: dict, out: Path) -> Plot | None:
    mine = analysis.rows_of(rows, scenario)
    mine = mine[mine["prepare_s"].notna()]
    if mine.empty:
        return None
    plt = _pyplot()
    batches, backends, breakeven = _by_batch_and_backend(mine, "break_even_images")
    prep = mine.groupby("backend", sort=False)["prepare_s"].max().reindex(backends)
    has_be = any(isnum(v) for v in breakeven.values())
    fig, axes = plt.subplots(1, 2 if has_be else 1, figsize=(13.5 if has_be else 6.5, 0.9 + 0.45 * len(backends) + 1.6),
                             squeeze=False)  # fmt: skip
    ax = axes[0][0]
    y = list(range(len(backends)))
    ax.barh(y, list(prep), color=[colour[b] for b in backends])
    ax.bar_label(ax.containers[0], labels=[f"{v:.3g} s" for v in prep], fontsize=7, padding=2)
    ax.set_yticks(y)
    ax.set_yticklabels(backends)
    if _wide(prep):
        ax.set_xscale("log")
    ax.set_xlim(right=prep.max() * (4 if ax.get_xscale() == "log" else 1.25))
    ax.set_xlabel("prepare time (s): conversion, compilation, export")
    ax.set_title("Start-up cost (largest over batch sizes)", fontsize=10)
    if has_be:
        ax2 = axes[0][1]
        others = [b for b in backends if b != BASELINE]
        finite = [v for v in breakeven.values() if isnum(v) and v > 0]
        _grouped_bars(ax2, batches, others, lambda g, s: breakeven.get((g, s)) if isnum(breakeven.get((g, s))) else None,
                      colour, lambda v: f"{v:,.0f}", log=_wide(finite))  # fmt: skip
        # mark "never" (slower than baseline) explicitly instead of leaving a gap
        width = 0.8 / max(len(others), 1)
        for i, name in enumerate(others):
            for j, group in enumerate(batches):
                if breakeven.get((group, name)) == math.inf:
                    ax2.text(j - 0.4 + width * (i + 0.5), 0.02, "never", transform=ax2.get_xaxis_transform(),
                             rotation=90, ha="center", va="bottom", fontsize=7, color=colour[name])  # fmt: skip
        ax2.set_xticklabels([str(b) for b in batches])
        ax2.set_xlabel("batch size")
        ax2.set_ylabel("images until prepare time is paid back")
        ax2.set_title("Break-even vs baseline (\"never\" = not faster)", fontsize=10)
        ax2.grid(True, axis="y", alpha=0.3)
        _legend(ax2, len(others))
    return Plot(_save(fig, out / f"prepare_{scenario.slug}.png"), f"Prepare cost and break-even ({scenario.label})",
                "Time to get each backend ready, and the number of images after which being faster than the "
                "baseline has paid that time back.")


ALL = (throughput, latency, speedup, memory, accuracy, prepare)


def remove_stale(plot_dir: Path) -> None:
    """Delete PNGs an earlier report drew (our name patterns only), so ``plots/`` matches the new report."""
    if not plot_dir.is_dir():
        return
    for make in ALL:
        for path in plot_dir.glob(f"{make.__name__}_*.png"):
            path.unlink(missing_ok=True)
