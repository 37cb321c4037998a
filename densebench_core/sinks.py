"""Where finished rows go besides the CSV: TensorBoard scalars (one TensorBoard run per densebench run)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SCALAR_FIELDS = {
    "throughput_ips": "throughput_ips",
    "latency_p50_ms": "latency_p50_ms",
    "latency_p99_ms": "latency_p99_ms",
    "peak_mem_mb": "peak_mem_mb",
    "prepare_s": "prepare_s",
    "max_abs_err": "accuracy/max_abs_err",
    "cosine_sim": "accuracy/cosine_sim",
    "top1_agree": "accuracy/top1_agree",
}
HPARAM_METRICS = ("throughput_ips", "latency_p50_ms", "peak_mem_mb", "prepare_s", "cosine_sim")


def tag_prefix(row: dict[str, Any]) -> str:
    """``<backend>/<mode>/bs<N>``, with characters TensorBoard tags dislike replaced."""
    backend = re.sub(r"[^A-Za-z0-9_.+-]", "_", row["backend"])
    return f"{backend}/{row['mode']}/bs{row['batch_size']}"


class TensorBoardScalars:
    """Per-iteration latency curves and summary scalars for every ok row, plus an hparams table."""

    def __init__(self, log_dir: Path, run_id: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = log_dir / "scalars" / run_id
        self.writer = SummaryWriter(log_dir=str(self.run_dir))
        self.run_id = run_id

    def on_row(self, row: dict[str, Any]) -> None:
        if row.get("status") != "ok":
            return
        prefix = tag_prefix(row)
        for step, latency in enumerate(row.get("latencies_ms") or []):
            self.writer.add_scalar(f"{prefix}/latency_ms", latency, step)
        for field, name in SCALAR_FIELDS.items():
            value = row.get(field)
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{prefix}/{name}", value, 0)
        hparams = {
            "backend": row["backend"], "mode": row["mode"], "batch_size": int(row["batch_size"]),
            "precision": str(row.get("precision")), "device": row["device"],
        }  # fmt: skip
        metrics = {
            f"hparam/{m}": float(row[m]) for m in HPARAM_METRICS if isinstance(row.get(m), (int, float))
        }
        self.writer.add_hparams(hparams, metrics, run_name=f"hparams/{prefix}")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _LateBound:
    """Creates the real sink at the first row, when the run id is known."""

    def __init__(self, factory) -> None:
        self.factory = factory
        self.sink = None

    def on_row(self, row: dict[str, Any]) -> None:
        if self.sink is None:
            self.sink = self.factory(row["run_id"])
        self.sink.on_row(row)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def default_sinks(config) -> list:
    return [_LateBound(lambda run_id: TensorBoardScalars(Path(config.log_dir), run_id))]
