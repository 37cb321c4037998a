"""How the report writes numbers, and the phrases several of its sections share (winners, speed-ups, ranges)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from densebench_core.report import analysis
from densebench_core.report.analysis import BASELINE, isnum
from densebench_core.report.render import Doc, code


# -- numbers -----------------------------------------------------------------------------------------------------
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


def value_range(low: Any, high: Any, fmt) -> str:
    """``low … high`` in ``fmt``; one value when they read the same or only one is known; ``—`` for neither."""
    if not isnum(low) and not isnum(high):
        return "—"
    if not isnum(low) or not isnum(high) or fmt(low) == fmt(high):
        return fmt(high if isnum(high) else low)
    return f"{fmt(low)} … {fmt(high)}"


def and_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c`` (empty items left out)."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# -- phrases about rows --------------------------------------------------------------------------------------------
def row_names(records: list[dict]) -> list[str]:
    return [f"{code(r['backend'])} batch {int(r['batch_size'])}" for r in records]


def winners(ranked: analysis.Ranking) -> str:
    """``**`a`**``, or ``**`a`** (tied with `b` and `c`: no significant difference)`` when the fastest group holds
    several."""
    text = f"**{code(ranked.best['backend'])}**"
    if ranked.tied:
        text += f" (tied with {and_list([code(n) for n in ranked.tied])}: no significant difference)"
    return text


def fastest_names(ranked: analysis.Ranking, bold: bool = True) -> str:
    names = [ranked.best["backend"], *ranked.tied]
    return and_list([f"**{code(n)}**" if bold else code(n) for n in names])


def lead(ranked: analysis.Ranking) -> str:
    """The fastest's lead over the runner-up, ``1.83× [1.79–1.88]``, or ``—``."""
    comparison = ranked.lead
    return "—" if comparison is None else comparison.interval_text()


def speedup(row: dict) -> str:
    """``1.83× [1.79–1.88]`` (median-latency ratio over the baseline's, with its 95% interval), or ``—``."""
    if row.get("backend") == BASELINE:
        return "1 (reference)"
    if not isnum(row.get("speedup")):
        return "—"
    if isnum(row.get("speedup_low")) and isnum(row.get("speedup_high")):
        return f"{times(row['speedup'])} [{row['speedup_low']:.2f}–{row['speedup_high']:.2f}]"
    return times(row["speedup"])


def vs_base(row: dict) -> str:
    """``, 1.83× [1.79–1.88] the baseline`` (``≈`` when not significantly different); empty for the baseline."""
    if row["backend"] == BASELINE or not isnum(row.get("speedup")):
        return ""
    if row.get("vs_baseline") == "tie":
        return f", ≈ {speedup(row)} the baseline (no significant difference)"
    return f", {speedup(row)} the baseline"


def p50_with_ci(row: dict) -> str:
    text = num(row.get("latency_p50_ms"))
    if isnum(row.get("p50_ci_low_ms")) and isnum(row.get("p50_ci_high_ms")):
        text += f" [{num(row['p50_ci_low_ms'])}–{num(row['p50_ci_high_ms'])}]"
    return text


def accuracy_verdict(row: dict) -> str:
    value = str(row.get("accuracy_ok")).lower()
    return {"true": "ok", "false": "**FAILED**"}.get(value, "—")


def section(doc: Doc, title: str, rows: pd.DataFrame, empty: str) -> bool:
    """A top-level section's heading; False, after saying ``empty``, when there are no ok rows to speak of."""
    doc.heading(1, title)
    if rows.empty:
        doc.para(empty)
        return False
    return True
