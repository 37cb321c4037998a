"""``densebench compare BASE_CSV NEW_CSV``: did anything get slower between two runs?

Matching
    Rows are matched on (backend, mode, batch_size, image_size, device). Only pairs with status ``ok`` in both
    files are compared; if a file holds the same configuration twice, its last ok row is used. Rows found in only
    one file are listed, not judged. A row that was ``ok`` in BASE and ``failed`` or ``timeout`` in NEW is a
    regression (it stopped working); ``ok`` -> ``skipped`` is listed only (the backend is unavailable here).

The regression rule
    The same rule as every verdict of the report (:mod:`densebench_core.significance`), NEW against BASE on the
    median latency: NEW is slower when the difference is significant (a Mann-Whitney U rank test on the raw
    per-iteration latencies when the results JSON is beside each CSV, else non-overlapping 95% intervals of the
    medians, else the rows' combined std/mean for older CSVs) *and* larger than the noise floor. The floor is
    ``--floor`` (default 5%: two runs also differ by what changed between them). A row timed while other programs
    used the CPU is not judged (a warning names it). A significant change the other way is an improvement;
    anything else is unchanged. Throughput and memory changes are shown, not judged.

Exit code of the command: 1 when any row regressed or stopped working, 0 otherwise; unreadable input is
:class:`~densebench_core.errors.BadInput` (exit code 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from densebench_core import significance
from densebench_core.errors import BadInput
from densebench_core.report.analysis import latency_of
from densebench_core.schema import BROKEN, CSV_NAME, KEY_COLUMNS, load_csv_and_json, row_key

DEFAULT_FLOOR_PCT = round(100 * significance.COMPARE_FLOOR, 6)  # percent, as --floor takes it
#: compare cannot judge a file without these
REQUIRED = (*(c for c in KEY_COLUMNS if c not in ("world_size", "device_name")), "status", "throughput_ips",
            "latency_p50_ms")

REGRESSION, IMPROVEMENT, UNCHANGED = "REGRESSION", "improved", "unchanged"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _change_pct(base: float, new: float) -> float:
    if not (_finite(base) and _finite(new)) or base <= 0:
        return math.nan
    return 100.0 * (new / base - 1.0)


@dataclass
class CompareRow:
    backend: str
    mode: str
    batch_size: int
    image_size: int | None
    device: str
    world_size: int
    device_name: str
    base_throughput: float
    new_throughput: float
    base_p50_ms: float
    new_p50_ms: float
    p50_change_pct: float
    mem_change_pct: float
    #: NEW against BASE (``ratio`` = base median / new median: below 1, NEW is slower)
    comparison: significance.Comparison

    @property
    def verdict(self) -> str:
        return {significance.SLOWER: REGRESSION, significance.FASTER: IMPROVEMENT}.get(
            self.comparison.verdict, UNCHANGED
        )

    @property
    def regression(self) -> bool:
        return self.verdict == REGRESSION

    @property
    def reasons(self) -> list[str]:
        """Why this row is a regression (empty: it is not)."""
        if not self.regression:
            return []
        return [f"p50 latency {self.p50_change_pct:+.1f}% ({self.comparison.why()})"]

    @property
    def key(self) -> tuple:
        return (self.backend, self.mode, self.batch_size, self.image_size, self.device, self.world_size,
                self.device_name)


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
    #: the files among BASE and NEW without their results JSON (no raw samples, no kind of row)
    without_json: list[Path] = field(default_factory=list)

    @property
    def regressions(self) -> list[CompareRow]:
        return [r for r in self.rows if r.regression]

    @property
    def stopped_working(self) -> list[tuple[tuple, str, str]]:
        """Pairs that were ok and now failed or timed out (counted as regressions)."""
        return [b for b in self.broken if b[2] in BROKEN]

    @property
    def has_regression(self) -> bool:
        return bool(self.regressions or self.stopped_working)

    def format_table(self) -> str:
        return format_table(self)


def _load(path: Path | str, what: str) -> tuple[dict[tuple, dict], dict[tuple, dict], bool]:
    """The file's rows by key (the last ok row of a configuration wins), its JSON extras by key, and whether the
    JSON was there."""
    path = Path(path)
    if path.is_dir():  # a results folder works too
        path = path / CSV_NAME
    results = load_csv_and_json(path, required=REQUIRED, what=what)
    rows: dict[tuple, dict] = {}
    for record in results.frame.to_dict("records"):
        key = row_key(record)
        # the last ok row of a configuration wins; a non-ok row never hides an ok one
        if record["status"] == "ok" or key not in rows or rows[key]["status"] != "ok":
            rows[key] = record
    return rows, results.extras, results.json_path is not None


def compare_results(base_csv: Path | str, new_csv: Path | str,
                    floor_pct: float = DEFAULT_FLOOR_PCT) -> CompareResult:
    """Compare two results CSVs (or results folders) row by row; see the module docstring for the rule.

    Raises :class:`BadInput` when either file is missing, unreadable, empty or corrupt, when ``floor_pct`` is
    negative, or when the two files have no ok configuration in common (nothing to compare would silently pass).
    """
    if not _finite(floor_pct) or floor_pct < 0:
        raise BadInput(f"--floor must be a percentage of 0 or more, not {floor_pct}")
    base, base_extras, base_json = _load(base_csv, "BASE_CSV")
    new, new_extras, new_json = _load(new_csv, "NEW_CSV")
    result = CompareResult(Path(base_csv), Path(new_csv), floor_pct, rows=[])
    result.without_json = [Path(p) for p, found in ((base_csv, base_json), (new_csv, new_json)) if not found]
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
        comparison = significance.compare(latency_of(n, new_extras), latency_of(b, base_extras),
                                          floor=floor_pct / 100.0)
        result.rows.append(CompareRow(
            *key,
            base_throughput=b["throughput_ips"], new_throughput=n["throughput_ips"],
            base_p50_ms=b["latency_p50_ms"], new_p50_ms=n["latency_p50_ms"],
            p50_change_pct=_change_pct(b["latency_p50_ms"], n["latency_p50_ms"]),
            mem_change_pct=_change_pct(b["peak_mem_mb"], n["peak_mem_mb"]),
            comparison=comparison,
        ))  # fmt: skip
    result.only_in_new = [k for k, n in new.items() if k not in base and n["status"] == "ok"]
    if not result.rows and not result.broken:
        raise BadInput(
            f"nothing to compare: {base_csv} and {new_csv} have no (backend, mode, batch_size, image_size, device, "
            "world_size, device_name) "
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
    backend, mode, batch, image, device, world_size, _ = key
    return (f"{backend} {mode} bs{batch}" + (f" {image}px" if image is not None else "") + f" {device}".rstrip()
            + (f" x{world_size} processes" if world_size > 1 else ""))


def format_table(result: CompareResult) -> str:
    """A fixed-width table of matched rows (when there are any), then unmatched and broken rows, then a verdict."""
    out = [f"base: {result.base_csv}", f"new:  {result.new_csv}", ""]
    if result.rows:
        out += _matched_table(result) + [
            "",
            f"p50 Δ: new median latency vs base; new/base: base median over new with its 95% interval. A change "
            f"counts when significant and beyond the {result.floor_pct:g}% floor; a row timed on a busy machine is "
            "not judged.",
        ]
        for path in result.without_json:
            out.append(f"note: no results JSON beside {path}: without raw samples the medians' intervals decide, "
                       "and without the kind of each row (GPU- or host-bound, threads) the cautious noise floor of "
                       "its device applies; compare the results folders for more")
        busy = [r for r in result.rows if r.comparison.busy]
        if busy:
            out.append(f"warning: {len(busy)} row(s) not judged: other programs used the CPU while they were timed "
                       f"({', '.join(_key_text(r.key) for r in busy[:4])}{', ...' if len(busy) > 4 else ''}); "
                       "rerun on a quiet machine")
    for key, before, after in result.broken:
        tag = "REGRESSION" if after in BROKEN else "note"
        out.append(f"{tag}: {_key_text(key)} was {before} in base, {after} in new")
    if result.only_in_base:
        out.append("only in base (not compared): " + ", ".join(_key_text(k) for k in result.only_in_base))
    if result.only_in_new:
        out.append("only in new (not compared): " + ", ".join(_key_text(k) for k in result.only_in_new))
    out.append(_verdict_line(result))
    return "\n".join(out)


def _matched_table(result: CompareResult) -> list[str]:
    show_image = len({r.image_size for r in result.rows}) > 1
    show_device = len({r.device for r in result.rows}) > 1
    show_procs = len({r.world_size for r in result.rows}) > 1
    headers = ["backend", "mode", "batch"] + (["image"] if show_image else []) + (["device"] if show_device else [])
    headers += ["procs"] if show_procs else []
    headers += ["p50 base ms", "p50 new ms", "p50 Δ", "new/base speed", "thr base", "thr new", "mem Δ", "verdict"]
    lines = []
    for r in sorted(result.rows, key=lambda r: (r.mode, r.backend, r.batch_size, str(r.image_size), r.device,
                                                r.world_size)):
        cells = [r.backend, r.mode, str(r.batch_size)]
        cells += ([str(r.image_size) if r.image_size is not None else "-"] if show_image else [])
        cells += ([r.device] if show_device else [])
        cells += ([str(r.world_size)] if show_procs else [])
        cells += [_num(r.base_p50_ms), _num(r.new_p50_ms), _pct(r.p50_change_pct), r.comparison.interval_text(),
                  _num(r.base_throughput), _num(r.new_throughput), _pct(r.mem_change_pct), r.verdict]  # fmt: skip
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(headers)]
    numeric = {i for i, h in enumerate(headers) if h not in ("backend", "mode", "device", "verdict")}

    def fmt(cells):
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [fmt(headers).rstrip(), "  ".join("-" * w for w in widths)] + [fmt(cells).rstrip() for cells in lines]


def _verdict_line(result: CompareResult) -> str:
    slower, stopped = result.regressions, result.stopped_working
    compared = f"{len(result.rows)} compared row{'s' if len(result.rows) != 1 else ''}"
    if not slower and not stopped:
        improved = sum(r.verdict == IMPROVEMENT for r in result.rows)
        return f"no regressions in {compared}" + (f" ({improved} improved)" if improved else "")
    parts = []
    if slower:
        worst = ", ".join(f"{_key_text(r.key)} ({'; '.join(r.reasons)})" for r in slower[:3])
        worst += f", and {len(slower) - 3} more" if len(slower) > 3 else ""
        parts.append(f"{len(slower)} of {compared} slower: {worst}")
    if stopped:
        parts.append(f"{len(stopped)} row{'s' if len(stopped) != 1 else ''} stopped working")
    return f"{len(slower) + len(stopped)} regression(s): " + "; ".join(parts)
