"""Where finished rows go besides the CSV: TensorBoard scalars (one TensorBoard run per densebench run).

Layout under ``LOG/scalars/`` (see docs/tensorboard.md)::

    <run_id>/                       the run: every scalar of every ok row, and a custom-scalars layout
    <run_id>/hparams/<backend>/<mode>   one hparams session per backend and mode (the HPARAMS table)

Tags in the run, with ``<row>`` = ``<backend>/<mode>/bs<N>``:

- ``<row>/latency_ms``: per-iteration latency of the timed loop (step = iteration)
- ``<row>/throughput_ips``, ``latency_p50_ms``, ``latency_p99_ms``, ``peak_mem_mb``, ``prepare_s``,
  ``accuracy/max_abs_err``, ``accuracy/cosine_sim``, ``accuracy/top1_agree``, ``accuracy/rel_err``: the row's
  summary (step 0)
- ``<backend>/<mode>/by_batch_size/<metric>``: the same summaries with step = batch size, so each backend
  draws a curve against batch size; the CUSTOM SCALARS tab overlays those curves of all backends.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from densebench_core.results import check_writable

SCALAR_FIELDS = {
    "throughput_ips": "throughput_ips",
    "latency_p50_ms": "latency_p50_ms",
    "latency_p99_ms": "latency_p99_ms",
    "peak_mem_mb": "peak_mem_mb",
    "prepare_s": "prepare_s",
    "max_abs_err": "accuracy/max_abs_err",
    "cosine_sim": "accuracy/cosine_sim",
    "top1_agree": "accuracy/top1_agree",
    "rel_err": "accuracy/rel_err",
}
#: summaries also drawn against batch size (``<backend>/<mode>/by_batch_size/<field>``)
BY_BATCH_FIELDS = ("throughput_ips", "latency_p50_ms", "latency_p99_ms", "peak_mem_mb", "prepare_s")
#: per-batch-size metrics of an hparams session (``hparam/bs<N>/<field>``)
HPARAM_METRICS = ("throughput_ips", "latency_p50_ms", "peak_mem_mb", "prepare_s", "cosine_sim")
BY_BATCH = "by_batch_size"
HPARAMS_DIR = "hparams"
CUSTOM_CATEGORY = "densebench: backends compared"


def _clean(text: str) -> str:
    """A tag or folder component: characters TensorBoard tags and file systems dislike become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(text))


def tag_prefix(row: dict[str, Any]) -> str:
    """``<backend>/<mode>/bs<N>``, with characters TensorBoard tags dislike replaced."""
    return f"{_clean(row['backend'])}/{_clean(row['mode'])}/bs{row['batch_size']}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def custom_scalars_layout(modes: list[str], batch_sizes: list[int]) -> dict:
    """Charts that overlay every backend: summaries against batch size, and per-iteration latency."""
    charts: dict[str, list] = {}
    for mode in modes:
        m = re.escape(_clean(mode))
        for field in BY_BATCH_FIELDS:
            charts[f"{mode}: {field} vs batch size"] = ["Multiline", [rf"^[^/]+/{m}/{BY_BATCH}/{field}$"]]
        for size in batch_sizes:
            charts[f"{mode}: latency_ms per iteration, bs{size}"] = [
                "Multiline", [rf"^[^/]+/{m}/bs{size}/latency_ms$"],
            ]  # fmt: skip
    return {CUSTOM_CATEGORY: charts}


class TensorBoardScalars:
    """Per-iteration latency curves and summary scalars for every ok row, plus an hparams table.

    The scalars of a densebench run are one TensorBoard run (``LOG/scalars/<run_id>``). The hparams table
    needs one TensorBoard run per session; to keep the runs list short there is one session per backend and
    mode (``<run_id>/hparams/<backend>/<mode>``) holding that backend's metrics for each batch size.
    """

    def __init__(
        self, log_dir: Path, run_id: str, modes: list[str] | None = None, batch_sizes: list[int] | None = None
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        self.run_id = run_id
        self.run_dir = Path(log_dir) / "scalars" / run_id
        self.writer = SummaryWriter(log_dir=str(self.run_dir))
        self.sessions: dict[tuple[str, str], Any] = {}  # (backend, mode) -> (writer, session-end summary)
        if modes and batch_sizes:
            self.writer.add_custom_scalars(custom_scalars_layout(list(modes), list(batch_sizes)))
            self.writer.flush()

    def on_row(self, row: dict[str, Any]) -> None:
        if row.get("status") != "ok":
            return
        prefix = tag_prefix(row)
        for step, latency in enumerate(row.get("latencies_ms") or []):
            self.writer.add_scalar(f"{prefix}/latency_ms", latency, step)
        group = f"{_clean(row['backend'])}/{_clean(row['mode'])}/{BY_BATCH}"
        batch_size = int(row["batch_size"])
        for field, name in SCALAR_FIELDS.items():
            if _number(row.get(field)):
                self.writer.add_scalar(f"{prefix}/{name}", row[field], 0)
        for field in BY_BATCH_FIELDS:
            if _number(row.get(field)):
                self.writer.add_scalar(f"{group}/{field}", row[field], batch_size)
        self.writer.flush()
        self._hparams(row)

    def _hparams(self, row: dict[str, Any]) -> None:
        """Add this row's metrics to its backend's hparams session, starting the session at its first row."""
        key = (_clean(row["backend"]), _clean(row["mode"]))
        if key not in self.sessions:
            from torch.utils.tensorboard.summary import hparams

            session = self._writer_class(log_dir=str(self.run_dir / HPARAMS_DIR / key[0] / key[1]))
            values = {
                "backend": str(row["backend"]), "mode": str(row["mode"]), "precision": str(row.get("precision")),
                "device": str(row.get("device")), "image_size": int(row.get("image_size") or 0),
                "weights": str(row.get("weights")), "run_id": self.run_id,
            }  # fmt: skip
            # Only the session start: with no experiment summary TensorBoard builds the table's columns from
            # every session of every run, so runs with different batch sizes still show all their metrics.
            _experiment, start, end = hparams(values, {})
            session.file_writer.add_summary(start)
            self.sessions[key] = (session, end)
        session = self.sessions[key][0]
        for field in HPARAM_METRICS:
            if _number(row.get(field)):
                session.add_scalar(f"hparam/bs{row['batch_size']}/{field}", row[field], 0)
        session.flush()

    def close(self) -> None:
        for session, end in self.sessions.values():
            session.file_writer.add_summary(end)  # status: success
            session.close()
        self.writer.close()


class _LateBound:
    """Creates the real sink at the first ok row, when the run id is known.

    Not at the first row of any status: a run where nothing was measured must leave no TensorBoard run behind
    (an empty run in the runs list, with a custom-scalars layout and nothing to draw). Rows before the first ok
    one are dropped; the sink writes ok rows only.
    """

    def __init__(self, factory) -> None:
        self.factory = factory
        self.sink = None

    def on_row(self, row: dict[str, Any]) -> None:
        if self.sink is None:
            if row.get("status") != "ok":
                return
            self.sink = self.factory(row["run_id"])
        self.sink.on_row(row)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def default_sinks(config) -> list:
    """The sinks of ``densebench run``; raises BadInput (exit 2) at once if the log dir cannot be written."""
    log_dir = Path(config.log_dir)
    check_writable(log_dir)
    modes = list(getattr(config, "modes", None) or [])
    sizes = [int(s) for s in (getattr(config, "batch_sizes", None) or ())]
    return [_LateBound(lambda run_id: TensorBoardScalars(log_dir, run_id, modes, sizes))]
