"""Numbers the report states, computed from the rows only: no backend is named here unless the data names it.

Rows are grouped into *scenarios*: one (mode, device, image size, processes per row, device name where a run
holds several). Within a scenario each batch size is compared
with the ``baseline`` row (fp32 eager, the reference) of the same batch size. Every verdict (faster, slower, tied)
comes from :mod:`densebench_core.significance`, on median latencies, with the raw samples where the JSON has them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from densebench_core import significance
from densebench_core.machine_load import is_busy
from densebench_core.profiling import short_name
from densebench_core.schema import KEY_COLUMNS, row_key
from densebench_core.significance import Comparison, Latency

BASELINE = "baseline"


def isnum(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Scenario:
    mode: str
    device: str
    image_size: float  # NaN when the CSV does not say
    label: str
    #: processes per row (``--nproc-per-node``): rows of different counts are not ranked against each other
    world_size: int = 1
    #: the GPU or CPU model, where a run holds several (a fleet): each is ranked on its own
    device_name: str = ""

    @property
    def slug(self) -> str:
        """A file-name-safe identifier, e.g. ``inference`` or ``inference_cuda_224``."""
        if self.label == self.mode:
            return _slug(self.mode)
        size = "" if not isnum(self.image_size) else f"_{int(self.image_size)}"
        procs = f"_np{self.world_size}" if self.world_size > 1 else ""
        name = f"_{self.device_name}" if self.device_name and self.device_name in self.label else ""
        return _slug(f"{self.mode}_{self.device}{size}{procs}{name}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "x"


def dedupe_ok(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The ok rows, one per (backend, mode, batch, image, device): the last one wins (a re-measured row)."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["image_size"] = ok["image_size"].astype(float)
    before = len(ok)
    ok["_img"] = ok["image_size"].fillna(-1)
    ok = ok.drop_duplicates(subset=[c if c != "image_size" else "_img" for c in KEY_COLUMNS], keep="last")
    return ok.drop(columns="_img").reset_index(drop=True), before - len(ok)


def scenarios(ok: pd.DataFrame) -> list[Scenario]:
    """Distinct (mode, device, image size, processes, device name) in first-seen order; labels name device and size
    only if they vary, the processes when more than one, the device's name when a run holds several."""
    seen: list[tuple] = []
    for _, row in ok.iterrows():
        key = (row["mode"], row["device"], row["image_size"], world_size_of(row), device_name_of(row))
        if not any(k[0] == key[0] and k[1] == key[1] and _same(k[2], key[2]) and k[3:] == key[3:] for k in seen):
            seen.append(key)
    several_devices = len({k[1] for k in seen}) > 1
    several_sizes = len({(-1 if not isnum(k[2]) else k[2]) for k in seen}) > 1
    several_names = len({k[4] for k in seen}) > 1
    result = []
    for mode, device, size, world_size, name in seen:
        parts = [mode]
        if several_devices:
            parts.append(device or "unknown device")
        if several_sizes:
            parts.append(f"{int(size)} px" if isnum(size) else "unknown size")
        if world_size > 1:
            parts.append(f"{world_size} processes")
        if several_names:
            parts.append(name or "unknown device name")
        result.append(Scenario(mode, device, size, ", ".join(parts), world_size, name if several_names else ""))
    return result


def world_size_of(row: Any) -> int:
    value = row.get("world_size")
    return int(value) if isnum(value) else 1


def device_name_of(row: Any) -> str:
    value = row.get("device_name")
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _same(a, b) -> bool:
    return (not isnum(a) and not isnum(b)) or a == b


def rows_of(ok: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    mask = (ok["mode"] == scenario.mode) & (ok["device"] == scenario.device)
    if isnum(scenario.image_size):
        mask &= ok["image_size"] == scenario.image_size
    else:
        mask &= ok["image_size"].isna()
    if "world_size" in ok.columns:
        mask &= ok["world_size"].fillna(1).astype(int) == scenario.world_size
    if scenario.device_name:
        mask &= ok["device_name"].astype(str) == scenario.device_name
    return ok[mask]


def break_even_images(prepare_s: float, baseline_ips: float, ips: float) -> float:
    """Images after which ``prepare_s`` is paid back by running faster than the baseline; inf when never.

    ``prepare_s / (1/baseline_ips - 1/ips)``: the backend's whole prepare time counts as overhead (conservative:
    the baseline's own, usually small, set-up is treated as free). NaN when an input is missing.
    """
    if not (isnum(prepare_s) and isnum(baseline_ips) and isnum(ips)) or baseline_ips <= 0 or ips <= 0:
        return math.nan
    saved_per_image = 1.0 / baseline_ips - 1.0 / ips
    if saved_per_image <= 0:
        return math.inf
    return prepare_s / saved_per_image


def latency_of(row: dict[str, Any], extras: dict[tuple, dict[str, Any]]) -> Latency:
    """A row's latency for :mod:`significance`: its raw samples and machine load from the JSON when there."""
    extra = extras.get(row_key(row)) or {}
    samples = extra.get("latencies_ms")
    samples = samples if isinstance(samples, list) and all(isnum(s) for s in samples) else None
    return Latency.of_row(row, samples, busy=is_busy(extra.get("load")), host_bound=extra.get("host_bound"),
                          threads=extra.get("threads"))


def with_baseline(ok: pd.DataFrame, extras: dict[tuple, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Add ``latency`` (a :class:`Latency`), ``busy``, the baseline's ``baseline_ips``, ``baseline_p50_ms``,
    ``baseline_mem_mb``, ``speedup`` (baseline median latency / the row's) with ``speedup_low``/``speedup_high``
    (95% interval) and ``vs_baseline`` (``faster``/``slower``/``tie``), ``mem_delta_pct``, ``break_even_images``
    and ``cv`` (NaN where no baseline row matches)."""
    out = ok.copy()
    extras = extras or {}
    out["latency"] = [latency_of(r, extras) for r in out.to_dict("records")]
    out["busy"] = [lat.busy for lat in out["latency"]]
    # the baseline of the same configuration: same processes per row and, in a fleet, the same device model
    out["_img"] = out["image_size"].fillna(-1)
    out["_procs"] = [world_size_of(r) for r in out.to_dict("records")]
    out["_name"] = [device_name_of(r) for r in out.to_dict("records")]
    match = ["mode", "device", "_img", "batch_size", "_procs", "_name"]
    base = out[out["backend"] == BASELINE][[*match, "throughput_ips", "latency_p50_ms", "peak_mem_mb", "latency"]]
    base = base.rename(columns={"throughput_ips": "baseline_ips", "latency_p50_ms": "baseline_p50_ms",
                                "peak_mem_mb": "baseline_mem_mb", "latency": "baseline_latency"})  # fmt: skip
    out = out.merge(base, how="left", on=match).drop(columns=["_img", "_procs", "_name"])
    versus = [significance.compare(lat, b) if isinstance(b, Latency) and name != BASELINE else None
              for name, lat, b in zip(out["backend"], out["latency"], out["baseline_latency"])]
    out["speedup"] = [c.ratio if c else (1.0 if name == BASELINE else math.nan)
                      for name, c in zip(out["backend"], versus)]
    out["speedup_low"] = [c.ratio_low if c else math.nan for c in versus]
    out["speedup_high"] = [c.ratio_high if c else math.nan for c in versus]
    out["vs_baseline"] = [c.verdict if c else None for c in versus]
    out["mem_delta_pct"] = 100.0 * (out["peak_mem_mb"] / out["baseline_mem_mb"] - 1.0)
    # paid back only by a real speed-up: a row not significantly faster than the baseline never pays back
    out["break_even_images"] = [
        math.nan if b == BASELINE else (break_even_images(p, bi, i) if v == "faster" else
                                        (math.inf if v is not None else math.nan))
        for b, p, bi, i, v in zip(out["backend"], out["prepare_s"], out["baseline_ips"], out["throughput_ips"],
                                  out["vs_baseline"])
    ]
    out["cv"] = [significance.cv(m, s) for m, s in zip(out["latency_mean_ms"], out["latency_std_ms"])]
    return out.drop(columns="baseline_latency")


@dataclass
class Ranking:
    """The rows of one batch size, fastest first, grouped by :func:`significance.rank`."""

    scenario: Scenario
    batch_size: int
    records: dict[str, dict[str, Any]]  # by backend
    groups: list[list[str]]

    @property
    def best(self) -> dict[str, Any]:
        return self.records[self.groups[0][0]]

    @property
    def tied(self) -> list[str]:
        """The backends tied with the fastest (no significant difference from it)."""
        return self.groups[0][1:]

    @property
    def runner_up(self) -> dict[str, Any] | None:
        """The fastest backend that the fastest is significantly faster than."""
        return self.records[self.groups[1][0]] if len(self.groups) > 1 else None

    @property
    def lead(self) -> Comparison | None:
        """The fastest against the runner-up."""
        other = self.runner_up
        return None if other is None else significance.compare(self.best["latency"], other["latency"])

    def order(self) -> list[str]:
        return [name for group in self.groups for name in group]


def ranking(rows: pd.DataFrame, scenario: Scenario, batch_size: int, eligible=None) -> Ranking | None:
    """The backends at ``batch_size`` ranked by median latency with ties (rows already :func:`with_baseline`).

    :param eligible: a predicate on a row; rows failing it are left out (e.g. failed accuracy checks).
    """
    mine = rows_of(rows, scenario)
    at = [r for r in mine[mine["batch_size"] == batch_size].to_dict("records")
          if isinstance(r.get("latency"), Latency) and (eligible is None or eligible(r))]
    if not at:
        return None
    records = {r["backend"]: r for r in at}
    groups = significance.rank({name: r["latency"] for name, r in records.items()})
    return Ranking(scenario, int(batch_size), records, groups)


def fastest(rows: pd.DataFrame, scenario: Scenario) -> list[Ranking]:
    """The ranking at each batch size of ``scenario``, smallest batch first."""
    mine = rows_of(rows, scenario)
    rankings = (ranking(rows, scenario, batch) for batch in sorted(mine["batch_size"].unique()))
    return [r for r in rankings if r is not None]


def accuracy_failed(row: dict[str, Any]) -> bool:
    """Whether the row's answers are outside the tolerance of its arithmetic (``accuracy_ok`` false)."""
    return str(row.get("accuracy_ok")).lower() == "false"


@dataclass
class Pick:
    """A recommendation for one kind of serving, with what it costs, all from the rows."""

    kind: str  # "latency" or "throughput"
    ranking: Ranking
    #: the best option that keeps top-1 agreement with the baseline, when the pick does not
    exact_alternative: dict[str, Any] | None = None

    @property
    def scenario(self) -> Scenario:
        return self.ranking.scenario

    @property
    def batch_size(self) -> int:
        return self.ranking.batch_size

    @property
    def row(self) -> dict[str, Any]:
        return self.ranking.best


def accuracy_cost(row: dict[str, Any]) -> str | None:
    """A phrase for a row's accuracy cost, or None when it matches the baseline (or was not measured)."""
    if accuracy_failed(row):
        return (f"fails the accuracy check (rel_err {row.get('rel_err'):.3g}, top-1 agreement "
                f"{100 * row['top1_agree']:.1f}%)" if isnum(row.get("rel_err")) and isnum(row.get("top1_agree"))
                else "fails the accuracy check")
    if isnum(row.get("top1_agree")) and row["top1_agree"] < 1.0:
        return f"agrees with the baseline's top-1 class on {100 * row['top1_agree']:.1f}% of the evaluation images"
    return None


def _lossless(row: dict[str, Any]) -> bool:
    return accuracy_cost(row) is None


def pick(rows: pd.DataFrame, scenario: Scenario, kind: str) -> Pick | None:
    """Latency-bound: the fastest at the smallest batch size. Throughput-bound: the fastest at the largest.

    Rows that fail the accuracy check are never recommended.
    """
    mine = rows_of(rows, scenario)
    if mine.empty:
        return None
    batch = mine["batch_size"].min() if kind == "latency" else mine["batch_size"].max()
    ranked = ranking(rows, scenario, batch, eligible=lambda r: not accuracy_failed(r))
    if ranked is None:
        return None
    result = Pick(kind, ranked)
    if not _lossless(result.row):
        result.exact_alternative = next((ranked.records[n] for n in ranked.order()[1:]
                                         if _lossless(ranked.records[n])), None)
    return result


def backend_summary(rows: pd.DataFrame, scenario: Scenario) -> list[dict[str, Any]]:
    """Per backend in ``scenario``: speed range, worst accuracy, memory delta, prepare time, break-even."""
    mine = rows_of(rows, scenario)
    summary = []
    for backend, group in mine.groupby("backend", sort=False):
        g = group.sort_values("batch_size")
        records = g.to_dict("records")
        finite_be = [r for r in records if isnum(r["break_even_images"])]
        summary.append({
            "backend": backend,
            "speedup_min": g["speedup"].min(), "speedup_max": g["speedup"].max(),
            "verdicts": [r["vs_baseline"] for r in records],
            "max_abs_err": g["max_abs_err"].max(), "rel_err_max": g["rel_err"].max(),
            "top1_min": g["top1_agree"].min(), "accuracy_failed": [int(r["batch_size"]) for r in records
                                                                   if accuracy_failed(r)],
            "mem_delta_pct_max": g["mem_delta_pct"].max(), "mem_delta_pct_min": g["mem_delta_pct"].min(),
            "prepare_s": g["prepare_s"].max(),
            "artifact_mb": g["artifact_mb"].max(),
            "break_even": [(int(r["batch_size"]), r["break_even_images"]) for r in records],
            "pays_off_somewhere": bool(finite_be),
            "never_pays_off": bool(records) and all(r["break_even_images"] == math.inf for r in records),
        })  # fmt: skip
    return summary


#: names of host-side entries that JSON files written before the kernel list held only device work have under
#: "cuda": CPU operators and ranges (they carry the device time of the kernels they launched), never kernels
_HOST_SIDE = re.compile(r"aten::|##|ProfilerStep#|Optimizer\.|CompiledFunction|Torch-Compiled Region")


def top_operators(profile: Any, kind: str, limit: int = 5) -> list[dict[str, Any]]:
    """The ``limit`` largest entries of ``kind`` ("cpu" or "cuda") from a JSON row's profile summary.

    Each has a ``short_name`` to show (computed from ``name`` for files that predate it); "cuda" holds device
    work only, also for older files.
    """
    if not isinstance(profile, dict):
        return []
    entries = []
    for list_name in ("top_ops", "top_kernels"):
        for op in profile.get(list_name) or []:
            if isinstance(op, dict) and op.get("name") and (op.get("kind") or "cpu") == kind:
                if kind == "cuda" and _HOST_SIDE.match(str(op["name"])):
                    continue
                entries.append({**op, "short_name": op.get("short_name") or short_name(op["name"])})
    seen, unique = set(), []
    for op in sorted(entries, key=lambda o: -(o.get("self_time_pct") or 0.0)):
        if op["name"] not in seen:
            seen.add(op["name"])
            unique.append(op)
    return unique[:limit]


def gpu_busy_pct(profile: Any, latency_mean_ms: Any) -> float | None:
    """Share of a measured step the GPU spent running its own work (profiled kernels / mean step time), or None.

    Capped at 100: kernels on several streams can overlap.
    """
    if not isinstance(profile, dict) or not isnum(profile.get("device_ms_per_step")) or not isnum(latency_mean_ms):
        return None
    if latency_mean_ms <= 0:
        return None
    return min(100.0, 100.0 * float(profile["device_ms_per_step"]) / float(latency_mean_ms))
