"""The one rule for "is A faster than B": every verdict in the report and in ``densebench compare`` comes from here.

Two rows are compared on their per-iteration latency. The estimate is the **ratio of medians**
``median(B) / median(A)``: above 1, A is faster (it is A's speed-up over B). A and B differ only when both hold:

1. **the difference is significant**: with both rows' raw samples, a two-sided Mann-Whitney U rank test gives
   ``p < ALPHA`` (as Google Benchmark's ``compare.py`` does); with only the CSV's 95% intervals of the medians,
   the intervals do not overlap; with neither (an older CSV), the difference exceeds the two rows' combined
   spread (std/mean);
2. **the difference is larger than the noise floor**: ``max(ratio, 1 / ratio) - 1 > floor`` (the slower
   median exceeds the faster by more than the floor, whichever is which). Each row is measured in its own
   process, and a row's interval describes that process only: the same code measured in fresh processes differs
   by more (address-space layout, thread placement, clocks). ``benchmarks/process_noise.py`` measured how much,
   per kind of row, and the floor of a pair is the larger of its two rows' floors (:func:`row_floor`):

   * CUDA rows that are GPU-bound (launching a step takes the host well under the time the GPU takes to run it):
     the same row in 5 fresh processes came out 0.2-0.4% apart (H200, eager bs 256, fp32 and fp16): the general
     floor, :data:`NOISE_FLOOR` (3%), covers them;
   * CUDA rows that are host-bound (the GPU waits for the host): up to 99% apart (H200, eager bs 1): floor
     :data:`HOST_BOUND_FLOOR` (100%);
   * CPU rows on several threads: up to 45% apart (a 2-core VM, DenseNet-121 at 32 and 64 px, 2 threads): floor
     :data:`CPU_FLOOR` (50%). The threads' interplay is the cause: on one thread (``OMP_NUM_THREADS=1``) the same
     rows in 8 processes were 4.1-4.5% apart: floor :data:`CPU_ONE_THREAD_FLOOR` (10%).

   A CUDA row whose kind is unknown (an older file) counts as host-bound. The caller may set a larger floor
   (``compare --floor``); a smaller one applies to GPU-bound rows only.

Otherwise the two are **tied**. And a row timed while other programs used the CPU
(:mod:`densebench_core.machine_load`) is compared with nothing: it is **not judged**, a tie. On a busy machine
the same backend measured twice, a minute apart, was seen 1.5× slower, with a rank test sure of it (p = 1e-31);
under CPU oversubscription one step took 300× longer. No floor or interval from inside one row can tell such a
difference from a real one. The ratio carries a 95% interval: a bootstrap of the ratio of medians
(``scipy.stats.bootstrap``, percentile method) from the raw samples, else the interval from the two medians'
intervals (``[low_B / high_A, high_B / low_A]``, conservative).

Noise has one vocabulary here: the floors above (per kind of row, and ``compare``'s :data:`COMPARE_FLOOR` between
two runs), and a row's spread (:func:`cv`), called noisy above :data:`NOISY_CV` by the worker's notes and the report.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

#: significance level of the rank test
ALPHA = 0.05
#: the smallest relative difference of medians ever called a difference (GPU-bound CUDA rows)
NOISE_FLOOR = 0.03
#: process-to-process noise of rows whose speed is the host's: host-bound CUDA rows, and CPU rows
HOST_BOUND_FLOOR = 1.0
CPU_FLOOR = 0.5
CPU_ONE_THREAD_FLOOR = 0.10
#: a CUDA row is host-bound when launching one step takes at least this share of the step's latency
HOST_BOUND_SHARE = 0.7
#: ``densebench compare``'s default floor between two runs: their rows' own noise, plus what changed between them
COMPARE_FLOOR = 0.05
#: a row whose spread (:func:`cv`: std over mean of its per-iteration latency) is above this is called noisy (a
#: note on its row, a line in the report); its verdicts stand, with intervals as wide as that spread makes them
NOISY_CV = 0.10
#: bootstrap resamples for a ratio's interval (seeded: the same samples always give the same interval), drawn from
#: at most BOOTSTRAP_SAMPLES of each row's samples (a seeded subset: a GPU row can hold tens of thousands)
RESAMPLES = 2000
BOOTSTRAP_SAMPLES = 4000


def row_floor(device: str | None, host_bound: bool | None, threads: int | None = None) -> float:
    """The process-to-process noise of one row's kind, or 0 where it is below the general floor (GPU-bound CUDA
    rows); see the module docstring for the measurements behind it. Unknown (an older file): the cautious one."""
    if str(device or "").startswith("cuda"):
        return 0.0 if host_bound is False else HOST_BOUND_FLOOR
    if device == "cpu":
        return CPU_ONE_THREAD_FLOOR if threads == 1 else CPU_FLOOR
    return 0.0


def cv(mean: Any, std: Any) -> float:
    """A row's spread: the coefficient of variation std/mean of its per-iteration latency; NaN when unknown."""
    if _number(mean) is not None and _number(std) is not None and mean > 0:
        return std / mean
    return math.nan


FASTER, SLOWER, TIE = "faster", "slower", "tie"


@dataclass(frozen=True)
class Latency:
    """What is known of one row's latency: the raw samples when the JSON is there, else the CSV's summary."""

    p50: float
    ci_low: float | None = None
    ci_high: float | None = None
    samples: tuple[float, ...] | None = None
    mean: float | None = None
    std: float | None = None
    busy: bool = False
    #: the process-to-process noise of this kind of row (:func:`row_floor`)
    floor: float = 0.0

    @classmethod
    def of_row(cls, row: dict[str, Any], samples: Sequence[float] | None = None, busy: bool = False,
               host_bound: bool | None = None, threads: int | None = None) -> Latency:
        """From a results row (CSV columns) and, if known, its raw latencies, machine load and kind."""
        return cls(
            p50=float(row["latency_p50_ms"]),
            ci_low=_number(row.get("p50_ci_low_ms")),
            ci_high=_number(row.get("p50_ci_high_ms")),
            samples=tuple(float(s) for s in samples) if samples else None,
            mean=_number(row.get("latency_mean_ms")),
            std=_number(row.get("latency_std_ms")),
            busy=busy,
            floor=row_floor(row.get("device"), host_bound, threads),
        )


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class Comparison:
    """A against B. ``ratio`` = median(B) / median(A): A's speed-up over B, with its 95% interval."""

    ratio: float
    ratio_low: float
    ratio_high: float
    verdict: str  # FASTER (A is faster), SLOWER (A is slower) or TIE
    method: str  # "rank test", "intervals" or "spread"
    p_value: float | None
    floor: float
    busy: bool

    @property
    def change_pct(self) -> float:
        """A's latency relative to B's, in percent (negative: A is faster)."""
        return 100.0 * (1.0 / self.ratio - 1.0)

    def interval_text(self) -> str:
        """``1.83× [1.79–1.88]``."""
        return f"{self.ratio:.2f}× [{self.ratio_low:.2f}–{self.ratio_high:.2f}]"

    def why(self) -> str:
        """Why the verdict is what it is, in a few words (for tables and ``compare``)."""
        if self.busy:
            return "not judged: other programs used the CPU while one of them was timed"
        floor = f"the {self.floor:.0%} noise floor"
        if self.method == "rank test":
            evidence = f"rank test p = {self.p_value:.2g}"
        else:
            evidence = {"intervals": "95% intervals", "spread": "std/mean spread"}[self.method]
        if self.verdict == TIE:
            if relative_difference(self.ratio) <= self.floor:
                return f"within {floor}"
            return f"not significant: {evidence}" + (" overlap" if self.method != "rank test" else "")
        return f"{evidence}; beyond {floor}"


@functools.lru_cache(maxsize=4096)  # a report asks for the same pairs from several sections
def compare(a: Latency, b: Latency, floor: float | None = None) -> Comparison:
    """Is A faster than B? See the module docstring for the rule.

    :param floor: the smallest noise floor as a fraction (default :data:`NOISE_FLOOR`); the rows' own floors
        (:func:`row_floor`) apply when larger.
    """
    busy = a.busy or b.busy
    floor = noise_floor(a, b, floor=floor)
    ratio = b.p50 / a.p50
    p_value = None
    if a.samples and b.samples and len(a.samples) > 1 and len(b.samples) > 1:
        method = "rank test"
        p_value = _rank_test(a.samples, b.samples)
        significant = p_value < ALPHA
        low, high = _bootstrap_ratio(a.samples, b.samples)
    elif None not in (a.ci_low, a.ci_high, b.ci_low, b.ci_high):
        method = "intervals"
        significant = a.ci_high < b.ci_low or b.ci_high < a.ci_low
        low, high = b.ci_low / a.ci_high, b.ci_high / a.ci_low
    else:
        method = "spread"
        spread = math.hypot(_cv(a), _cv(b))
        significant = relative_difference(ratio) > spread
        low, high = ratio / (1 + spread), ratio * (1 + spread)
    differs = significant and relative_difference(ratio) > floor and not busy
    verdict = TIE if not differs else (FASTER if ratio > 1.0 else SLOWER)
    return Comparison(ratio, low, high, verdict, method, p_value, floor, busy)


def noise_floor(*latencies: Latency, floor: float | None = None) -> float:
    """The noise floor of a comparison of these rows: the largest of their own floors (:func:`row_floor`) and
    ``floor`` (default :data:`NOISE_FLOOR`)."""
    return max(NOISE_FLOOR if floor is None else floor, *(latency.floor for latency in latencies))


def relative_difference(ratio: float) -> float:
    """How much slower the slower of two rows is, as a fraction of the faster: the same for ratio r and 1/r."""
    return max(ratio, 1.0 / ratio) - 1.0


def _cv(latency: Latency) -> float:
    spread = cv(latency.mean, latency.std)
    return 0.0 if math.isnan(spread) else spread


def _rank_test(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _bootstrap_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    import numpy as np
    from scipy.stats import bootstrap

    def ratio(x, y, axis=-1):
        return np.median(y, axis=axis) / np.median(x, axis=axis)

    rng = np.random.default_rng(0)
    a, b = (x if len(x) <= BOOTSTRAP_SAMPLES else rng.choice(x, BOOTSTRAP_SAMPLES, replace=False)
            for x in (np.asarray(a), np.asarray(b)))
    result = bootstrap((a, b), ratio, n_resamples=RESAMPLES, method="percentile", vectorized=True, paired=False,
                       batch=200, random_state=rng)  # fmt: skip
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def rank(latencies: dict[str, Latency], floor: float | None = None) -> list[list[str]]:
    """Names grouped fastest first: a group holds the names tied with its fastest member (by median).

    The first group is "the fastest": every name in it is tied with the quickest row; a name leaves the group only
    when the quickest row is significantly faster than it.
    """
    order = sorted(latencies, key=lambda name: latencies[name].p50)
    groups: list[list[str]] = []
    for name in order:
        if groups and compare(latencies[groups[-1][0]], latencies[name], floor).verdict == TIE:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups
