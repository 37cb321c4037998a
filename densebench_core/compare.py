"""``densebench compare BASE_CSV NEW_CSV``: did anything get slower between two runs?

Matching
    Rows are matched on (backend, mode, batch_size, image_size, device). Only pairs with status ``ok`` in both
    files are compared; if a file holds the same configuration twice, its last ok row is used. Rows found in only
    one file are listed, not judged. A row that was ``ok`` in BASE and ``failed`` or ``timeout`` in NEW is a
    regression (it stopped working); ``ok`` -> ``skipped`` is listed only (the backend is unavailable here).

Changes (NEW relative to BASE, percent)
    throughput_ips, latency_p50_ms and peak_mem_mb: ``100 * (new / base - 1)``.

The regression rule
    Each row records the spread of its per-iteration latency as a coefficient of variation,
    ``cv = latency_std_ms / latency_mean_ms``. The two rows' spreads are combined as independent errors,
    ``noise = sqrt(cv_base**2 + cv_new**2)``, and the allowed change is ``threshold = max(floor, noise)`` with a
    floor of 5% (``--floor``) so that quiet measurements do not flag tiny differences. A row is a regression when

    * its throughput fell by more than the threshold (``change < -threshold``), or
    * its p50 latency rose by more than the threshold (``change > +threshold``).

    A missing std or mean counts as zero spread (the floor applies). Memory changes are shown, not judged.

Exit code of the command: 1 when any row regressed, 0 otherwise; unreadable input is
:class:`~densebench_core.errors.BadInput` (exit code 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from densebench_core.errors import BadInput
from densebench_core.report.data import CSV_NAME, KEY_COLUMNS, read_results_csv, row_key

DEFAULT_FLOOR_PCT = 5.0
#: compare cannot judge a file without these
REQUIRED = (*KEY_COLUMNS, "status", "throughput_ips", "latency_p50_ms")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _change_pct(base: float, new: float) -> float:
    if not (_finite(base) and _finite(new)) or base <= 0:
        return math.nan
    return 100.0 * (new / base - 1.0)


def _cv(row: dict) -> float:
    mean, std = row.get("latency_mean_ms"), row.get("latency_std_ms")
    if _finite(mean) and _finite(std) and mean > 0:
        return std / mean
    return 0.0


def threshold_pct(base_row: dict, new_row: dict, floor_pct: float = DEFAULT_FLOOR_PCT) -> float:
    """The allowed change in percent: ``max(floor, 100 * sqrt(cv_base**2 + cv_new**2))``."""
    return max(floor_pct, 100.0 * math.hypot(_cv(base_row), _cv(new_row)))


@dataclass
class CompareRow:
    backend: str
    mode: str
    batch_size: int
    image_size: int | None
    device: str
    base_throughput: float
    new_throughput: float
    throughput_change_pct: float
    base_p50_ms: float
    new_p50_ms: float
    p50_change_pct: float
    base_mem_mb: float
    new_mem_mb: float
    mem_change_pct: float
    threshold_pct: float
    #: why this row is a regression (empty: it is not)
    reasons: list[str] = field(default_factory=list)

    @property
    def regression(self) -> bool:
        return bool(self.reasons)

    @property
    def key(self) -> tuple:
        return (self.backend, self.mode, self.batch_size, self.image_size, self.device)


@dataclass
class CompareResult:
    base_csv: Path
    new_csv: Path
    floor_pct: float
    rows: list[CompareRow]
    #: (key, base status, new status) for pairs that were ok in BASE and are not ok in NEW
    broken: list[tuple[tuple, str, str]] = field(default_factory=list)
    only_in_base: list[tuple] = field(default_factory=list)
    only_in_new: list[tuple] = field(default_factory=list)

    @property
    def regressions(self) -> list[CompareRow]:
        return [r for r in self.rows if r.regression]

    @property
    def stopped_working(self) -> list[tuple[tuple, str, str]]:
        """Pairs that were ok and now failed or timed out (counted as regressions)."""
        return [b for b in self.broken if b[2] in ("failed", "timeout")]

    @property
    def has_regression(self) -> bool:
        return bool(self.regressions or self.stopped_working)

    def format_table(self) -> str:
        return format_table(self)


def _load(path: Path | str, what: str) -> dict[tuple, dict]:
    path = Path(path)
    if path.is_dir():  # a results folder works too
        path = path / CSV_NAME
    frame = read_results_csv(path, required=REQUIRED, what=what)
    rows: dict[tuple, dict] = {}
    for record in frame.to_dict("records"):
        key = row_key(record)
        # the last ok row of a configuration wins; a non-ok row never hides an ok one
        if record["status"] == "ok" or key not in rows or rows[key]["status"] != "ok":
            rows[key] = record
    return rows


def compare_results(base_csv: Path | str, new_csv: Path | str,
                    floor_pct: float = DEFAULT_FLOOR_PCT) -> CompareResult:
    """Compare two results CSVs (or results folders) row by row; see the module docstring for the rule.

    Raises :class:`BadInput` when either file is missing, unreadable, empty or corrupt, when ``floor_pct`` is
    negative, or when the two files have no ok configuration in common (nothing to compare would silently pass).
    """
    if not _finite(floor_pct) or floor_pct < 0:
        raise BadInput(f"--floor must be a percentage of 0 or more, not {floor_pct}")
    base = _load(base_csv, "BASE_CSV")
    new = _load(new_csv, "NEW_CSV")
    result = CompareResult(Path(base_csv), Path(new_csv), floor_pct, rows=[])
    for key, b in base.items():
        n = new.get(key)
        if n is None:
            if b["status"] == "ok":
                result.only_in_base.append(key)
            continue
        if b["status"] != "ok" or n["status"] != "ok":
            if b["status"] == "ok":
                result.broken.append((key, b["status"], n["status"]))
            continue
        threshold = threshold_pct(b, n, floor_pct)
        row = CompareRow(
            *key,
            base_throughput=b["throughput_ips"], new_throughput=n["throughput_ips"],
            throughput_change_pct=_change_pct(b["throughput_ips"], n["throughput_ips"]),
            base_p50_ms=b["latency_p50_ms"], new_p50_ms=n["latency_p50_ms"],
            p50_change_pct=_change_pct(b["latency_p50_ms"], n["latency_p50_ms"]),
            base_mem_mb=b.get("peak_mem_mb", math.nan), new_mem_mb=n.get("peak_mem_mb", math.nan),
            mem_change_pct=_change_pct(b.get("peak_mem_mb", math.nan), n.get("peak_mem_mb", math.nan)),
            threshold_pct=threshold,
        )  # fmt: skip
        if _finite(row.throughput_change_pct) and row.throughput_change_pct < -threshold:
            row.reasons.append(f"throughput {row.throughput_change_pct:+.1f}%")
        if _finite(row.p50_change_pct) and row.p50_change_pct > threshold:
            row.reasons.append(f"p50 latency {row.p50_change_pct:+.1f}%")
        result.rows.append(row)
    result.only_in_new = [k for k, n in new.items() if k not in base and n["status"] == "ok"]
    if not result.rows and not result.broken:
        raise BadInput(
            f"nothing to compare: {base_csv} and {new_csv} have no (backend, mode, batch_size, image_size, device) "
            "measured ok in both"
        )
    return result


# -- text table --------------------------------------------------------------------------------------------------
def _num(value: float) -> str:
    if not _finite(value):
        return "-"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def _pct(value: float) -> str:
    return "-" if not _finite(value) else f"{value:+.1f}%"


def _key_text(key: tuple) -> str:
    backend, mode, batch, image, device = key
    return f"{backend} {mode} bs{batch}" + (f" {image}px" if image is not None else "") + f" {device}".rstrip()


def format_table(result: CompareResult) -> str:
    """A fixed-width table of matched rows, then unmatched and broken rows, then a one-line verdict."""
    show_image = len({r.image_size for r in result.rows}) > 1
    show_device = len({r.device for r in result.rows}) > 1
    headers = ["backend", "mode", "batch"] + (["image"] if show_image else []) + (["device"] if show_device else [])
    headers += ["thr base", "thr new", "thr Δ", "p50 base ms", "p50 new ms", "p50 Δ", "mem Δ", "allowed", "verdict"]
    lines = []
    for r in sorted(result.rows, key=lambda r: (r.mode, r.backend, r.batch_size, str(r.image_size), r.device)):
        cells = [r.backend, r.mode, str(r.batch_size)]
        cells += ([str(r.image_size) if r.image_size is not None else "-"] if show_image else [])
        cells += ([r.device] if show_device else [])
        cells += [_num(r.base_throughput), _num(r.new_throughput), _pct(r.throughput_change_pct),
                  _num(r.base_p50_ms), _num(r.new_p50_ms), _pct(r.p50_change_pct), _pct(r.mem_change_pct),
                  f"±{r.threshold_pct:.1f}%", "REGRESSION" if r.regression else "ok"]  # fmt: skip
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(headers)]
    numeric = {i for i, h in enumerate(headers) if h not in ("backend", "mode", "device", "verdict")}

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [f"base: {result.base_csv}", f"new:  {result.new_csv}", "", fmt(headers).rstrip(),
           "  ".join("-" * w for w in widths)]  # fmt: skip
    out += [fmt(cells).rstrip() for cells in lines]
    out.append("")
    out.append(f"thr = throughput (images/s); allowed = max({result.floor_pct:g}% floor, combined std/mean of both rows)")
    for key, before, after in result.broken:
        tag = "REGRESSION" if after in ("failed", "timeout") else "note"
        out.append(f"{tag}: {_key_text(key)} was {before} in base, {after} in new")
    if result.only_in_base:
        out.append("only in base (not compared): " + ", ".join(_key_text(k) for k in result.only_in_base))
    if result.only_in_new:
        out.append("only in new (not compared): " + ", ".join(_key_text(k) for k in result.only_in_new))
    n_reg = len(result.regressions) + len(result.stopped_working)
    if n_reg:
        worst = ", ".join(f"{_key_text(r.key)} ({'; '.join(r.reasons)})" for r in result.regressions[:3])
        worst += f", and {len(result.regressions) - 3} more" if len(result.regressions) > 3 else ""
        out.append(f"{n_reg} regression(s) in {len(result.rows)} compared row(s)" + (f": {worst}" if worst else ""))
    else:
        out.append(f"no regressions in {len(result.rows)} compared row(s)")
    return "\n".join(out)
