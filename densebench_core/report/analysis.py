"""Numbers the report states, computed from the rows only: no backend is named here unless the data names it.

Rows are grouped into *scenarios*: one (mode, device, image size). Within a scenario each batch size is compared
with the ``baseline`` row (fp32 eager, the reference) of the same batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

BASELINE = "baseline"
#: a winner whose lead over the runner-up is smaller than the rows' combined spread is "within noise"
NOISE_FLOOR = 0.02
#: cosine similarity below this, or any top-1 disagreement, is called an accuracy cost in the text
COSINE_OK = 0.9999


def isnum(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Scenario:
    mode: str
    device: str
    image_size: float  # NaN when the CSV does not say
    label: str

    @property
    def slug(self) -> str:
        """A file-name-safe identifier, e.g. ``inference`` or ``inference_cuda_224``."""
        if self.label == self.mode:
            return _slug(self.mode)
        size = "" if not isnum(self.image_size) else f"_{int(self.image_size)}"
        return _slug(f"{self.mode}_{self.device}{size}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "x"


def dedupe_ok(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The ok rows, one per (backend, mode, batch, image, device): the last one wins (a re-measured row)."""
    ok = frame[frame["status"] == "ok"].copy()
    ok["image_size"] = ok["image_size"].astype(float)
    before = len(ok)
    ok["_img"] = ok["image_size"].fillna(-1)
    ok = ok.drop_duplicates(subset=["backend", "mode", "batch_size", "_img", "device"], keep="last")
    return ok.drop(columns="_img").reset_index(drop=True), before - len(ok)


def scenarios(ok: pd.DataFrame) -> list[Scenario]:
    """Distinct (mode, device, image size) in first-seen order; labels name device and size only if they vary."""
    seen: list[tuple] = []
    for _, row in ok.iterrows():
        key = (row["mode"], row["device"], row["image_size"])
        if not any(k[0] == key[0] and k[1] == key[1] and _same(k[2], key[2]) for k in seen):
            seen.append(key)
    several_devices = len({k[1] for k in seen}) > 1
    several_sizes = len({(-1 if not isnum(k[2]) else k[2]) for k in seen}) > 1
    result = []
    for mode, device, size in seen:
        parts = [mode]
        if several_devices:
            parts.append(device or "unknown device")
        if several_sizes:
            parts.append(f"{int(size)} px" if isnum(size) else "unknown size")
        result.append(Scenario(mode, device, size, ", ".join(parts)))
    return result


def _same(a, b) -> bool:
    return (not isnum(a) and not isnum(b)) or a == b


def rows_of(ok: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    mask = (ok["mode"] == scenario.mode) & (ok["device"] == scenario.device)
    if isnum(scenario.image_size):
        mask &= ok["image_size"] == scenario.image_size
    else:
        mask &= ok["image_size"].isna()
    return ok[mask]


def cv(row) -> float:
    """Coefficient of variation std/mean of the per-iteration latency; NaN when not recorded."""
    mean, std = row.get("latency_mean_ms"), row.get("latency_std_ms")
    if isnum(mean) and isnum(std) and mean > 0:
        return std / mean
    return math.nan


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


def with_baseline(ok: pd.DataFrame) -> pd.DataFrame:
    """Add ``baseline_ips``, ``baseline_p50_ms``, ``baseline_mem_mb``, ``speedup``, ``mem_delta_pct``,
    ``break_even_images``, ``cv`` and ``one_minus_cos`` columns (NaN where no baseline row matches)."""
    out = ok.copy()
    base = out[out["backend"] == BASELINE][["mode", "device", "image_size", "batch_size", "throughput_ips",
                                            "latency_p50_ms", "peak_mem_mb"]].copy()  # fmt: skip
    base = base.rename(columns={"throughput_ips": "baseline_ips", "latency_p50_ms": "baseline_p50_ms",
                                "peak_mem_mb": "baseline_mem_mb"})  # fmt: skip
    for frame in (out, base):
        frame["_img"] = frame["image_size"].fillna(-1)
    base = base.drop(columns="image_size")
    out = out.merge(base, how="left", on=["mode", "device", "_img", "batch_size"]).drop(columns="_img")
    out["speedup"] = out["throughput_ips"] / out["baseline_ips"]
    out["mem_delta_pct"] = 100.0 * (out["peak_mem_mb"] / out["baseline_mem_mb"] - 1.0)
    out["break_even_images"] = [
        math.nan if b == BASELINE else break_even_images(p, bi, i)
        for b, p, bi, i in zip(out["backend"], out["prepare_s"], out["baseline_ips"], out["throughput_ips"])
    ]
    out["cv"] = [cv(r) for r in out.to_dict("records")]
    out["one_minus_cos"] = (1.0 - out["cosine_sim"]).clip(lower=0.0)  # float rounding can give 1 + 1e-16
    return out


@dataclass
class Winner:
    scenario: Scenario
    batch_size: int
    backend: str
    throughput_ips: float
    speedup: float  # vs baseline, NaN without one
    runner_up: str | None
    runner_up_ips: float
    lead_pct: float  # how much faster than the runner-up, percent
    noise_pct: float  # combined spread of the two rows, percent
    candidates: int

    @property
    def within_noise(self) -> bool:
        return self.runner_up is not None and self.lead_pct <= self.noise_pct


def _noise_pct(a: float, b: float) -> float:
    a = a if isnum(a) else 0.0
    b = b if isnum(b) else 0.0
    return 100.0 * max(NOISE_FLOOR, math.sqrt(a * a + b * b))


def fastest(rows: pd.DataFrame, scenario: Scenario) -> list[Winner]:
    """The highest-throughput backend at each batch size of ``scenario`` (rows already with_baseline)."""
    winners = []
    mine = rows_of(rows, scenario)
    for batch in sorted(mine["batch_size"].unique()):
        at = mine[(mine["batch_size"] == batch) & mine["throughput_ips"].notna()]
        if at.empty:
            continue
        ranked = at.sort_values("throughput_ips", ascending=False, kind="stable")
        top = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        winners.append(Winner(
            scenario=scenario, batch_size=int(batch), backend=top["backend"],
            throughput_ips=float(top["throughput_ips"]), speedup=float(top["speedup"]),
            runner_up=None if second is None else second["backend"],
            runner_up_ips=math.nan if second is None else float(second["throughput_ips"]),
            lead_pct=math.nan if second is None else 100.0 * (top["throughput_ips"] / second["throughput_ips"] - 1),
            noise_pct=math.nan if second is None else _noise_pct(top["cv"], second["cv"]),
            candidates=len(ranked),
        ))  # fmt: skip
    return winners


@dataclass
class Pick:
    """A recommendation for one kind of serving, with what it costs, all from the rows."""

    kind: str  # "latency" or "throughput"
    scenario: Scenario
    batch_size: int
    row: dict[str, Any]
    runner_up: dict[str, Any] | None
    within_noise: bool
    #: the best option that keeps top-1 agreement with the baseline, when the pick does not
    exact_alternative: dict[str, Any] | None = None
    caveats: list[str] = field(default_factory=list)


def accuracy_cost(row: dict[str, Any]) -> str | None:
    """A phrase for a row's accuracy cost, or None when it matches the baseline (or was not measured)."""
    parts = []
    if isnum(row.get("top1_agree")) and row["top1_agree"] < 1.0:
        parts.append(f"agrees with the baseline's top-1 class on {100 * row['top1_agree']:.1f}% of inputs")
    if isnum(row.get("cosine_sim")) and row["cosine_sim"] < COSINE_OK:
        parts.append(f"cosine similarity {row['cosine_sim']:.5f}")
    return ", ".join(parts) or None


def _lossless(row: dict[str, Any]) -> bool:
    return accuracy_cost(row) is None


def pick(rows: pd.DataFrame, scenario: Scenario, kind: str) -> Pick | None:
    """Latency-bound: lowest p50 at the smallest batch size. Throughput-bound: highest throughput at the largest."""
    mine = rows_of(rows, scenario)
    if mine.empty:
        return None
    if kind == "latency":
        batch = mine["batch_size"].min()
        at = mine[mine["batch_size"] == batch]
        metric = "latency_p50_ms" if at["latency_p50_ms"].notna().any() else "latency_mean_ms"
        at = at[at[metric].notna()].sort_values(metric, ascending=True, kind="stable")
    else:
        batch = mine["batch_size"].max()
        at = mine[mine["batch_size"] == batch]
        metric = "throughput_ips"
        at = at[at[metric].notna()].sort_values(metric, ascending=False, kind="stable")
    if at.empty:
        return None
    records = at.to_dict("records")
    best, second = records[0], (records[1] if len(records) > 1 else None)
    within = False
    if second is not None:
        lead = abs(best[metric] / second[metric] - 1.0) * 100.0 if second[metric] else math.inf
        within = lead <= _noise_pct(best["cv"], second["cv"])
    result = Pick(kind, scenario, int(batch), best, second, within)
    if not _lossless(best):
        result.exact_alternative = next((r for r in records[1:] if _lossless(r)), None)
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
            "batch_sizes": [int(b) for b in g["batch_size"]],
            "speedup_min": g["speedup"].min(), "speedup_max": g["speedup"].max(),
            "max_abs_err": g["max_abs_err"].max(), "cosine_min": g["cosine_sim"].min(),
            "top1_min": g["top1_agree"].min(),
            "mem_delta_pct_max": g["mem_delta_pct"].max(), "mem_delta_pct_min": g["mem_delta_pct"].min(),
            "peak_mem_mb_max": g["peak_mem_mb"].max(),
            "prepare_s": g["prepare_s"].max(),
            "artifact_mb": g["artifact_mb"].max(),
            "break_even": [(int(r["batch_size"]), r["break_even_images"]) for r in records],
            "pays_off_somewhere": bool(finite_be),
            "never_pays_off": bool(records) and all(r["break_even_images"] == math.inf for r in records),
            "cv_max": g["cv"].max(),
        })  # fmt: skip
    return summary


def top_operators(profile: Any, kind: str, limit: int = 5) -> list[dict[str, Any]]:
    """The ``limit`` largest entries of ``kind`` ("cpu" or "cuda") from a JSON row's profile summary."""
    if not isinstance(profile, dict):
        return []
    entries = []
    for list_name in ("top_ops", "top_kernels"):
        for op in profile.get(list_name) or []:
            if isinstance(op, dict) and op.get("name") and (op.get("kind") or "cpu") == kind:
                entries.append(op)
    seen, unique = set(), []
    for op in sorted(entries, key=lambda o: -(o.get("self_time_pct") or 0.0)):
        if op["name"] not in seen:
            seen.add(op["name"])
            unique.append(op)
    return unique[:limit]


#: Below this share of a step with the GPU busy, a row is host-bound: the GPU waits for kernel launches.
HOST_BOUND_BUSY_PCT = 70.0


def gpu_busy_pct(profile: Any, latency_mean_ms: Any) -> float | None:
    """Share of a measured step the GPU spent running its own work (profiled kernels / mean step time), or None.

    Capped at 100: kernels on several streams can overlap.
    """
    if not isinstance(profile, dict) or not isnum(profile.get("device_ms_per_step")) or not isnum(latency_mean_ms):
        return None
    if latency_mean_ms <= 0:
        return None
    return min(100.0, 100.0 * float(profile["device_ms_per_step"]) / float(latency_mean_ms))
