"""Results storage: the CSV users read, every run kept whole, rows written as each measurement finishes.

The files' columns and format are :mod:`densebench_core.schema`'s; this module decides where they go and when.

Layout under the results directory::

    benchmark_results.csv        the latest run (replaced atomically after every row)
    benchmark_results.json       the same run: environment, config, rows with raw latencies
    runs/<run_id>/benchmark_results.csv, results.json, work/ (job specs, worker logs)
    models/<run_id>/             that run's exported artifacts
"""

from __future__ import annotations

import math
import os
import secrets
import time
from pathlib import Path
from typing import Any

from densebench_core import schema
from densebench_core.errors import BadInput


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_writable(directory: Path) -> None:
    """Create ``directory`` if needed and prove it can be written, or raise BadInput."""
    if directory.exists() and not directory.is_dir():
        raise BadInput(f"{directory} is a file, not a directory: give a folder for the results")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".densebench-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"cannot write to directory {directory}: {exc.strerror or exc}") from None


class ResultsStore:
    """Writes one run's rows as they complete, to the run's own folder and to the latest-run files."""

    def __init__(self, results_dir: Path, run_id: str, environment: dict, config: dict) -> None:
        self.results_dir = results_dir
        self.run_id = run_id
        self.run_dir = results_dir / "runs" / run_id
        self.run_dir.mkdir(parents=True, exist_ok=False)
        self.work_dir = self.run_dir / "work"
        self.models_dir = results_dir / "models" / run_id
        self.environment = environment
        self.config = config
        self.rows: list[dict[str, Any]] = []
        self._flush()  # a header-only CSV from the start: valid even if the first job never finishes

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """Complete ``row`` with the run's columns and persist everything written so far."""
        full = {column: row.get(column) for column in schema.COLUMNS}
        full["run_id"] = self.run_id
        full["torch_version"] = full["torch_version"] or self.environment.get("torch")
        full["device_name"] = full["device_name"] or self.environment.get("device_name")
        full["timestamp"] = full["timestamp"] or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        extra = {k: v for k, v in row.items() if k not in schema.COLUMNS}
        self.rows.append({**full, **extra})
        self._flush()
        return self.rows[-1]

    def _flush(self) -> None:
        csv_text = schema.csv_text(self.rows)
        json_text = schema.json_text(self.run_id, self.environment, self.config, self.rows)
        for directory, json_name in ((self.run_dir, schema.RUN_JSON), (self.results_dir, schema.LATEST_JSON)):
            _atomic_write(directory / schema.CSV_NAME, csv_text)
            _atomic_write(directory / json_name, json_text)


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) with None, recursively."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
