"""Progress for people: a live status line on a terminal, one plain line per finished row otherwise."""

from __future__ import annotations

import sys
from typing import Any

import click


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
    if row.get("cosine_sim") is not None:
        parts.append(f"cos {_fmt(row.get('cosine_sim'), '.6f')}")
    return f"{head}  " + ", ".join(parts)


class Progress:
    """A sink that prints each finished row; on a terminal it also shows which job is running."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.total = 0
        self.done = 0

    def on_start(self, index: int, total: int, item) -> None:
        self.total = total
        if self.tty:
            bar_width = 20
            filled = int(bar_width * index / max(total, 1))
            bar = "#" * filled + "-" * (bar_width - filled)
            click.echo(
                f"\r[{bar}] {index}/{total} running {item.backend} bs={item.batch_size}\x1b[K",
                nl=False,
                file=self.stream,
            )

    def on_row(self, row: dict[str, Any]) -> None:
        self.done += 1
        prefix = "\r\x1b[K" if self.tty else ""
        click.echo(f"{prefix}[{self.done}/{self.total}] {describe(row)}", file=self.stream)

    def close(self) -> None:
        pass
