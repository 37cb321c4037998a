"""Progress for people: a live bar on a terminal, one plain line per finished row otherwise."""

from __future__ import annotations

import sys
import threading
from typing import Any

import click
from tqdm import tqdm

#: the worker's phase names (``set_phase``) in user words, where they differ; others are shown as written
PHASE_WORDS = {
    # the worker's "preparing" is where compilers (torch.compile, TensorRT, tracing) spend their minutes
    "preparing": "preparing (compiling)",
}
#: rows done / total, the run's elapsed time and estimate of what is left, then the running row (the description)
BAR_FORMAT = "{n_fmt}/{total_fmt} rows |{bar:12}| {elapsed} elapsed, {remaining} left | {desc}"


def phase_words(phase: str) -> str:
    return PHASE_WORDS.get(phase, phase)


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def describe(row: dict[str, Any]) -> str:
    head = f"{label(row)}: {row['status']}"
    if row["status"] != "ok":
        return f"{head} ({row.get('reason') or 'no reason'})"
    parts = [
        f"p50 {_fmt(row.get('latency_p50_ms'), '.3f')} ms",
        f"{_fmt(row.get('throughput_ips'), ',.1f')} img/s",
        f"prepare {_fmt(row.get('prepare_s'), '.2f')} s",
    ]
    if row.get("accuracy_ok") is not None:
        verdict = "accuracy ok" if row["accuracy_ok"] else "ACCURACY FAILED"
        parts.append(f"{verdict} (rel_err {_fmt(row.get('rel_err'), '.2g')})")
    return f"{head}  " + ", ".join(parts)


def label(item) -> str:
    """A row's name in the display: ``backend mode bs=N`` (for a job or a row)."""
    get = item.get if isinstance(item, dict) else lambda key: getattr(item, key)
    return f"{get('backend')} {get('mode')} bs={get('batch_size')}"


class Progress:
    """A sink that prints each finished row; on a terminal, above a bar that shows what the running rows are doing
    (one, or with ``--devices`` one per GPU)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total = 0
        self.done = 0
        self.bar: tqdm | None = None
        self.running: dict[str, str] = {}  # label -> "label (elapsed): phase", in start order
        self.lock = threading.Lock()  # launchers with several slots report from their threads

    def on_plan(self, total: int) -> None:
        self.total = total
        if self.tty and self.bar is None:
            self.bar = tqdm(total=total, file=self.stream, bar_format=BAR_FORMAT, dynamic_ncols=True)

    def on_wait(self, job, phase: str, elapsed: float) -> None:
        """Called by the launcher while a row runs: its phase and its own elapsed time."""
        if self.bar is None:
            return
        name = label(job)
        with self.lock:
            # the row's time before its phase: a narrow terminal cuts the line's end
            self.running[name] = f"{name} ({tqdm.format_interval(elapsed)}): {phase_words(phase)}"
            self.bar.set_description_str(" | ".join(self.running.values()))

    def on_row(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.done += 1
            line = f"[{self.done}/{self.total}] {describe(row)}"
            if self.bar is None:
                click.echo(line, file=self.stream)
                return
            self.running.pop(label(row), None)
            self.bar.set_description_str(" | ".join(self.running.values()) or ("done" if self.done == self.total
                                                                             else ""), refresh=False)  # fmt: skip
            self.bar.update(1)
            self.bar.write(line, file=self.stream)  # above the bar, which tqdm then redraws as it now is

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
