"""PNG plots for the report (matplotlib, Agg backend: no display needed). One function per figure.

Every function in :data:`ALL` takes the ok rows (already ``analysis.with_baseline``), a scenario, the colour of each
backend and the output folder, and returns a :class:`Plot` or None when the data has nothing to show.

Honest pictures: a bar's length means something only on a linear axis that starts at zero, so values that span
orders of magnitude are drawn as points on a logarithmic axis, never as bars; medians carry their 95% intervals
as error bars; every backend has a colour no other backend shares.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from densebench_core import significance
from densebench_core.report import analysis
from densebench_core.report.analysis import BASELINE, Scenario, isnum

DPI = 110
WIDE_RANGE = 20.0  # max/min ratio above which a value axis becomes logarithmic (and bars become points)
BASELINE_COLOUR = (0.15, 0.15, 0.15, 1.0)
#: distinct colours for the other backends: tab10 and Dark2 without their greys (too close to the baseline's), and
#: Set1; beyond those, colours come round again with a different marker
PALETTES = (("tab10", (0, 1, 2, 3, 4, 5, 6, 8, 9)), ("Dark2", range(7)), ("Set1", (0, 1, 2, 3, 4, 6, 7)))
MARKERS = "osD^vP*X"


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


def _palette() -> list[tuple]:
    plt = _pyplot()
    found: list[tuple] = []
    for name, indices in PALETTES:
        cmap = plt.get_cmap(name)
        for i in indices:
            rgba = tuple(round(c, 3) for c in cmap(i))
            if rgba not in found:
                found.append(rgba)
    return found


def colours(backends: list[str]) -> dict[str, tuple]:
    """A stable colour per backend (the baseline is always near-black) so all plots read alike."""
    palette = _palette()
    others = [b for b in dict.fromkeys(backends) if b != BASELINE]
    mapping = {b: palette[i % len(palette)] for i, b in enumerate(others)}
    mapping[BASELINE] = BASELINE_COLOUR
    return mapping


def marker(backends: list[str], backend: str) -> str:
    """A marker per backend: the same as others only when the colours have come round (many backends)."""
    others = [b for b in dict.fromkeys(backends) if b != BASELINE]
    if backend == BASELINE:
        return "s"
    return MARKERS[(others.index(backend) // len(_palette())) % len(MARKERS)]


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


def _errors(values: list[float], lows: list, highs: list) -> list[list[float]] | None:
    """matplotlib's asymmetric error bars from intervals (0 where a row has none)."""
    if not any(isnum(lo) and isnum(hi) for lo, hi in zip(lows, highs)):
        return None
    below = [v - lo if isnum(lo) and isnum(v) else 0.0 for v, lo in zip(values, lows)]
    above = [hi - v if isnum(hi) and isnum(v) else 0.0 for v, hi in zip(values, highs)]
    return [[max(0.0, b) for b in below], [max(0.0, a) for a in above]]


def _grouped(ax, groups: list, series: list[str], value, colour, label_fmt=None, interval=None, log=False):
    """Values for each group (x) and series (colour): bars on a linear axis, points on a log axis.

    ``value(group, series)`` gives a height or NaN; ``interval(group, series)`` a (low, high) or None.
    """
    n = max(len(series), 1)
    width = 0.8 / n
    for i, name in enumerate(series):
        xs, hs, lows, highs = [], [], [], []
        for j, group in enumerate(groups):
            h = value(group, name)
            if isnum(h):
                xs.append(j - 0.4 + width * (i + 0.5))
                hs.append(h)
                lo, hi = interval(group, name) if interval else (None, None)
                lows.append(lo)
                highs.append(hi)
        errors = _errors(hs, lows, highs)
        if log:
            ax.errorbar(xs, hs, yerr=errors, fmt=marker(series, name), color=colour[name], label=name, capsize=3,
                        markersize=6)  # fmt: skip
            if label_fmt and len(groups) * n <= 24:
                for x, h in zip(xs, hs):
                    ax.annotate(label_fmt(h), (x, h), textcoords="offset points", xytext=(0, 6), ha="center",
                                fontsize=7)  # fmt: skip
        else:
            ax.bar(xs, hs, width=width * 0.95, color=colour[name], label=name, yerr=errors, capsize=3,
                   error_kw={"elinewidth": 1, "ecolor": "black"})  # fmt: skip
            if label_fmt and len(groups) * n <= 24:
                tops = [h + (errors[1][k] if errors else 0.0) for k, h in enumerate(hs)]  # above the error bar
                for x, h, top in zip(xs, hs, tops):
                    ax.annotate(label_fmt(h), (x, top), textcoords="offset points", xytext=(0, 3), ha="center",
                                va="bottom", fontsize=7, rotation=90 if n > 4 else 0)  # fmt: skip
                tallest = max(tops, default=0.0)
                if tallest > 0:
                    ax.set_ylim(top=max(ax.get_ylim()[1], tallest * 1.25))  # room for the labels
    ax.set_xticks(range(len(groups)))
    ax.set_xlim(-0.5, len(groups) - 0.5)
    if log:
        ax.set_yscale("log")


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _legend(ax, n: int) -> None:
    """Outside the plot, on the right: it never hides a bar or a label."""
    ax.legend(fontsize=8, ncol=1 if n <= 12 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _figure(column: str, where=None):
    """Makes a figure function of :data:`ALL` from one that draws the scenario's rows that have ``column`` (and
    pass ``where``, a mask of the rows) and returns ``(figure, title, caption)``, or None for nothing to show. The
    figure is saved as ``<function name>_<scenario>.png``; without such rows there is no figure."""

    def decorate(draw):
        @functools.wraps(draw)
        def make(rows: pd.DataFrame, scenario: Scenario, colour: dict, out: Path) -> Plot | None:
            mine = analysis.rows_of(rows, scenario)
            mine = mine[mine[column].notna()]
            mine = mine[where(mine)] if where is not None else mine
            drawn = draw(mine, scenario, colour) if not mine.empty else None
            if drawn is None:
                return None
            fig, title, caption = drawn
            return Plot(_save(fig, out / f"{draw.__name__}_{scenario.slug}.png"), title, caption)

        return make

    return decorate


def _finish(ax, title: str, xlabel: str, ylabel: str, entries: int, grid: str = "y", **title_style) -> None:
    """Title, axis labels, a light grid along ``grid`` and the legend of ``entries`` backends beside the axes."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, **title_style)
    ax.grid(True, axis=grid, alpha=0.3)
    _legend(ax, entries)


def _batch_axis(ax, batches: list[int]) -> None:
    if len(batches) > 1 and max(batches) / max(min(batches), 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.minorticks_off()


def _median_throughput(row: dict) -> tuple[float, float | None, float | None]:
    """Images per second at the median latency, with the interval that the median's interval gives."""
    batch, p50 = row["batch_size"], row["latency_p50_ms"]
    low, high = row.get("p50_ci_low_ms"), row.get("p50_ci_high_ms")
    ips = batch * 1000.0 / p50
    return ips, (batch * 1000.0 / high if isnum(high) and high > 0 else None), (
        batch * 1000.0 / low if isnum(low) and low > 0 else None)


@_figure("latency_p50_ms", where=lambda m: m["latency_p50_ms"] > 0)
def throughput(mine: pd.DataFrame, scenario: Scenario, colour: dict):
    plt = _pyplot()
    batches = sorted(int(b) for b in mine["batch_size"].unique())
    backends = _order(mine)
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    values = []
    for backend in backends:
        g = mine[mine["backend"] == backend].sort_values("batch_size").to_dict("records")
        points = [_median_throughput(r) for r in g]
        ips = [p[0] for p in points]
        values += ips
        ax.errorbar([r["batch_size"] for r in g], ips, yerr=_errors(ips, [p[1] for p in points], [p[2] for p in points]),
                    fmt=marker(backends, backend) + ("--" if backend == BASELINE else "-"), color=colour[backend],
                    label=backend, capsize=3, linewidth=2 if backend == BASELINE else 1.6)  # fmt: skip
    _batch_axis(ax, batches)
    if _wide(values):
        ax.set_yscale("log")
    _finish(ax, f"Throughput vs batch size ({scenario.label})", "batch size",
            "images/s at the median latency (higher is better)", len(backends), grid="both")
    return (fig, f"Throughput ({scenario.label})",
            "Images per second at the median latency of each batch size, with the 95% interval of the median; "
            "higher is better.")


@_figure("latency_p50_ms")
def latency(mine: pd.DataFrame, scenario: Scenario, colour: dict):
    batch = int(mine["batch_size"].min())
    at = mine[mine["batch_size"] == batch].sort_values("latency_p50_ms", ascending=False).to_dict("records")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.5 * len(at) + 0.8))
    names = [r["backend"] for r in at]
    y = list(range(len(at)))
    p50 = [r["latency_p50_ms"] for r in at]
    errors = _errors(p50, [r.get("p50_ci_low_ms") for r in at], [r.get("p50_ci_high_ms") for r in at])
    for i, r in enumerate(at):
        err = None if errors is None else [[errors[0][i]], [errors[1][i]]]
        ax.errorbar([r["latency_p50_ms"]], [i], xerr=err, fmt=marker(names, r["backend"]), color=colour[r["backend"]],
                    capsize=4, markersize=7)  # fmt: skip
        ax.annotate(f"p50 {_short(r['latency_p50_ms'])}", (r["latency_p50_ms"], i), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=7)  # fmt: skip
        if isnum(r.get("latency_p99_ms")):
            ax.plot([r["latency_p99_ms"]], [i], "|", color=colour[r["backend"]], markersize=14, markeredgewidth=2)
            ax.annotate("p99", (r["latency_p99_ms"], i), textcoords="offset points", xytext=(0, -12), ha="center",
                        fontsize=7)  # fmt: skip
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.set_ylim(-0.7, len(at) - 0.3)
    ax.set_xlabel("latency per batch (ms, lower is better)")
    shown = p50 + [r["latency_p99_ms"] for r in at if isnum(r.get("latency_p99_ms"))]
    if _wide(shown):
        ax.set_xscale("log")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"Latency at batch size {batch} ({scenario.label}): median with 95% interval, p99 tick")
    return (fig, f"Latency at batch {batch} ({scenario.label})",
            f"Median (p50, with its 95% interval) and, where 100 samples allow it, tail (p99) latency of one "
            f"batch of {batch}; lower is better.")


def _by_batch_and_backend(mine: pd.DataFrame, column: str) -> tuple[list[int], list[str], dict]:
    """Batch sizes, backends in plotting order, and ``{(batch, backend): value}`` for one column."""
    batches = sorted(int(b) for b in mine["batch_size"].unique())
    lookup = {(int(r["batch_size"]), r["backend"]): r[column] for r in mine.to_dict("records")}
    return batches, _order(mine), lookup


def _grouped_figsize(batches: list[int], backends: list[str]) -> tuple[float, float]:
    """Wide enough for one bar per (batch, backend), within 8 to 14 inches."""
    return min(14.0, max(8.0, 3.2 + 0.35 * len(batches) * len(backends))), 4.4


@_figure("speedup", where=lambda m: m["backend"] != BASELINE)
def speedup(mine: pd.DataFrame, scenario: Scenario, colour: dict):
    plt = _pyplot()
    batches, backends, lookup = _by_batch_and_backend(mine, "speedup")
    _, _, lows = _by_batch_and_backend(mine, "speedup_low")
    _, _, highs = _by_batch_and_backend(mine, "speedup_high")
    fig, ax = plt.subplots(figsize=_grouped_figsize(batches, backends))
    log = _wide(list(lookup.values()) + [1.0])
    _grouped(ax, batches, backends, lambda g, s: lookup.get((g, s)), colour, lambda v: f"{v:.2f}x",
             interval=lambda g, s: (lows.get((g, s)), highs.get((g, s))), log=log)  # fmt: skip
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--", label="baseline (1x)")
    ax.set_xticklabels([str(b) for b in batches])
    _finish(ax, f"Speed-up over fp32 eager baseline ({scenario.label})", "batch size",
            "speed-up over baseline (median latency ratio)", len(backends))
    return (fig, f"Speed-up over baseline ({scenario.label})",
            "The baseline's median latency over the backend's at the same batch size, with its 95% interval; "
            "above the dashed line is faster. The intervals are from within each row's process: host-bound and "
            f"CPU rows also move by up to {1 + significance.HOST_BOUND_FLOOR:g}× and "
            f"{1 + significance.CPU_FLOOR:g}× from one process to the next, which the report's verdicts allow for "
            "(README, \"Statistics\").")


@_figure("peak_mem_mb")
def memory(mine: pd.DataFrame, scenario: Scenario, colour: dict):
    plt = _pyplot()
    batches, backends, lookup = _by_batch_and_backend(mine, "peak_mem_mb")
    fig, ax = plt.subplots(figsize=_grouped_figsize(batches, backends))
    _grouped(ax, batches, backends, lambda g, s: lookup.get((g, s)), colour, lambda v: f"{v:,.0f}",
             log=_wide(lookup.values()))  # fmt: skip
    ax.set_xticklabels([str(b) for b in batches])
    _finish(ax, f"Peak memory ({scenario.label})", "batch size", "peak memory (MB, lower is better)", len(backends))
    device = "GPU memory allocated by torch" if scenario.device.startswith("cuda") else "peak memory of the process"
    return (fig, f"Peak memory ({scenario.label})",
            f"Peak memory per batch size ({device}, as the runner recorded it); lower is better.")


def _accuracy_label(column: str, value: float, exact: bool) -> str:
    if not isnum(value):
        return "n/a"
    if column == "top1_agree":
        return f"{100 * value:.1f}%"
    if value == 0:
        return "0 (identical output)" if exact else "0"
    return f"{value:.2g}"


@_figure("backend", where=lambda m: m["backend"] != BASELINE)
def accuracy(mine: pd.DataFrame, scenario: Scenario, colour: dict):
    cols = ["rel_err", "top1_agree"]
    if not mine[cols].notna().any().any():
        return None
    # the worst value over batch sizes, per backend
    worst = mine.groupby("backend", sort=False).agg(
        rel_err=("rel_err", "max"), top1_agree=("top1_agree", "min"), max_abs_err=("max_abs_err", "max"))
    backends = list(worst.index)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.9 + 0.45 * len(backends) + 1.4))
    titles = {"rel_err": "rel_err: error norm / reference spread\n(lower is better, log axis)",
              "top1_agree": "top-1 agreement with the fp32 reference\n(higher is better)"}  # fmt: skip
    y = list(range(len(backends)))
    for ax, col in zip(axes, cols):
        values = list(worst[col])
        positive = [v for v in values if isnum(v) and v > 0]
        if col == "rel_err":
            # points on a log axis; an exact zero cannot be drawn there, so it sits at the axis' left edge
            low = min(positive) / 10 if positive else 1e-9
            ax.set_xscale("log")
            ax.set_xlim(low, (max(positive) if positive else 1.0) * 30)
            shown = [v if isnum(v) and v > 0 else low for v in values]
            ax.scatter(shown, y, c=[colour[b] for b in backends], s=40, zorder=3)
        else:
            shown = [v if isnum(v) else 0 for v in values]
            ax.barh(y, shown, color=[colour[b] for b in backends])
            ax.set_xlim(0, 1.25)
        for yi, v, exact in zip(y, values, worst["max_abs_err"]):
            x = shown[yi]
            ax.text(x, yi, "  " + _accuracy_label(col, v, exact == 0), va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(backends if col == cols[0] else [])
        ax.set_ylim(-0.7, len(backends) - 0.3)
        ax.set_title(titles[col], fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"Accuracy on the evaluation set vs the fp32 reference, worst over batch sizes ({scenario.label})",
                 fontsize=10)
    return (fig, f"Accuracy ({scenario.label})",
            "Each backend's answers on the seeded evaluation set against the fp32 eager reference on the same "
            "images and weights.")


@_figure("prepare_s")
def prepare(mine: pd.DataFrame, scenario: Scenario, colour: dict):
    plt = _pyplot()
    batches, backends, breakeven = _by_batch_and_backend(mine, "break_even_images")
    prep = mine.groupby("backend", sort=False)["prepare_s"].max().reindex(backends)
    has_be = any(isnum(v) for v in breakeven.values())
    fig, axes = plt.subplots(1, 2 if has_be else 1, figsize=(13.5 if has_be else 6.5, 0.9 + 0.45 * len(backends) + 1.6),
                             squeeze=False)  # fmt: skip
    ax = axes[0][0]
    y = list(range(len(backends)))
    if _wide(prep):  # points on a log axis: bars there would exaggerate
        ax.scatter(list(prep), y, c=[colour[b] for b in backends], s=40, zorder=3)
        ax.set_xscale("log")
        ax.set_xlim(prep[prep > 0].min() / 3, prep.max() * 6)
        for yi, v in zip(y, prep):
            ax.annotate(f"{v:.3g} s", (v, yi), textcoords="offset points", xytext=(6, 0), va="center", fontsize=7)
    else:
        ax.barh(y, list(prep), color=[colour[b] for b in backends])
        ax.bar_label(ax.containers[0], labels=[f"{v:.3g} s" for v in prep], fontsize=7, padding=2)
        ax.set_xlim(0, prep.max() * 1.25)
    ax.set_yticks(y)
    ax.set_yticklabels(backends)
    ax.set_ylim(-0.7, len(backends) - 0.3)
    ax.set_xlabel("prepare time (s): conversion, compilation, first step")
    ax.set_title("Start-up cost (largest over batch sizes)", fontsize=10)
    if has_be:
        ax2 = axes[0][1]
        others = [b for b in backends if b != BASELINE]
        finite = [v for v in breakeven.values() if isnum(v) and v > 0]
        _grouped(ax2, batches, others, lambda g, s: breakeven.get((g, s)) if isnum(breakeven.get((g, s))) else None,
                 colour, lambda v: f"{v:,.0f}", log=_wide(finite))  # fmt: skip
        # mark "never" (not faster than the baseline) explicitly instead of leaving a gap
        width = 0.8 / max(len(others), 1)
        for i, name in enumerate(others):
            for j, group in enumerate(batches):
                if breakeven.get((group, name)) == math.inf:
                    ax2.text(j - 0.4 + width * (i + 0.5), 0.02, "never", transform=ax2.get_xaxis_transform(),
                             rotation=90, ha="center", va="bottom", fontsize=7, color=colour[name])  # fmt: skip
        ax2.set_xticklabels([str(b) for b in batches])
        _finish(ax2, "Break-even vs baseline (\"never\" = not faster)", "batch size",
                "images until prepare time is paid back", len(others), fontsize=10)
    return (fig, f"Prepare cost and break-even ({scenario.label})",
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
