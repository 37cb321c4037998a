"""Progress for people: a live bar on a terminal, one plain line per finished row otherwise."""

from __future__ import annotations

import sys
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
    head = f"{row['backend']} {row['mode']} bs={row['batch_size']}: {row['status']}"
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


class Progress:
    """A sink that prints each finished row; on a terminal, above a bar that shows what the running row is doing."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total = 0
        self.done = 0
        self.bar: tqdm | None = None
        self.running = ""

    def on_start(self, index: int, total: int, item) -> None:
        self.total = total
        if not self.tty:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, file=self.stream, bar_format=BAR_FORMAT, dynamic_ncols=True)
        self.running = f"{item.backend} {item.mode} bs={item.batch_size}"
        self.on_wait("starting", 0.0)

    def on_wait(self, phase: str, elapsed: float) -> None:
        """Called by the runner while the row runs: its phase and its own elapsed time."""
        if self.bar is not None:
            # the row's time before its phase: a narrow terminal cuts the line's end
            self.bar.set_description_str(f"{self.running} ({tqdm.format_interval(elapsed)}): {phase_words(phase)}")

    def on_row(self, row: dict[str, Any]) -> None:
        self.done += 1
        line = f"[{self.done}/{self.total}] {describe(row)}"
        if self.bar is None:
            click.echo(line, file=self.stream)
            return
        self.bar.set_description_str("done" if self.done == self.total else "", refresh=False)
        self.bar.update(1)
        self.bar.write(line, file=self.stream)  # above the bar, which tqdm then redraws as it now is

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
