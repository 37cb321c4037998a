"""Reading results back: the CSV (required) and the JSON beside it (optional), validated.

Anything a user could hand us by mistake -- a missing path, a directory, an empty file, binary garbage, a CSV
without the columns we need, a number that is not a number -- becomes one :class:`BadInput` with a message that
names the file and, where it can, the line and column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from densebench_core.errors import BadInput

CSV_NAME = "benchmark_results.csv"
#: the latest run's JSON is ``benchmark_results.json``; a run kept under ``runs/<id>/`` has ``results.json``
JSON_NAMES = ("benchmark_results.json", "results.json")

STATUSES = ("ok", "skipped", "failed", "timeout")
#: a row is identified by these; compare matches on them
KEY_COLUMNS = ("backend", "mode", "batch_size", "image_size", "device")

NUMERIC_COLUMNS = (
    "batch_size", "image_size", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms",
    "latency_std_ms", "throughput_ips", "peak_mem_mb", "prepare_s", "max_abs_err", "cosine_sim", "top1_agree",
    "artifact_mb", "iterations", "p50_ci_low_ms", "p50_ci_high_ms", "eval_images", "rel_err",
)  # fmt: skip
TEXT_COLUMNS = (
    "run_id", "backend", "mode", "device", "precision", "status", "reason", "artifact_path", "torch_version",
    "device_name", "timestamp", "weights", "options", "notes", "accuracy_ok",
)  # fmt: skip

#: what the report cannot do without; everything else is optional and reads as "not measured" when absent
REPORT_REQUIRED = ("backend", "mode", "batch_size", "status")


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise BadInput(f"{what} not found: {path}")
    if path.is_dir():
        raise BadInput(f"{what} is a directory, not a CSV file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise BadInput(f"{what} {path} is not a CSV file (it contains binary data)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path} is not a UTF-8 text CSV file") from None


def read_results_csv(path: Path | str, required: tuple[str, ...] = REPORT_REQUIRED,
                     what: str = "results CSV") -> pd.DataFrame:
    """Read and validate a ``benchmark_results.csv``; numeric columns become floats (NaN = not measured).

    Raises :class:`BadInput` for a missing, unreadable, empty or corrupt file: no header, no data rows, missing
    ``required`` columns, rows longer than the header, an unknown status, or a non-empty cell in a numeric column
    that is not a number.
    """
    path = Path(path)
    text = _read_text(path, what)
    if not text.strip():
        raise BadInput(f"{what} {path} is empty")
    try:
        header = next(csv.reader(io.StringIO(text)))
    except (csv.Error, StopIteration) as exc:
        raise BadInput(f"{what} {path} is not a valid CSV file: {exc}") from None
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise BadInput(f"{what} {path} is not a densebench results file: missing column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise BadInput(f"{what} {path} has a repeated column name in its header")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=True)
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"{what} {path} is corrupt: {first}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise BadInput(f"{what} {path} has a header but no result rows")
    frame = frame.fillna("")
    for column in TEXT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype(str).str.strip()
    for column in NUMERIC_COLUMNS:
        if column not in frame.columns:
            frame[column] = math.nan
            continue
        cells = frame[column].astype(str).str.strip()
        numbers = pd.to_numeric(cells, errors="coerce")
        bad = numbers.isna() & (cells != "") & (cells.str.lower() != "nan")
        if bad.any():
            index = int(bad.idxmax())
            # line numbers as an editor shows them: the header is line 1 (exact when no cell spans lines)
            raise BadInput(
                f"{what} {path} is corrupt: column {column} on line {index + 2} is not a number: "
                f"{cells[index][:40]!r}"
            )
        frame[column] = numbers.astype(float)
    if (frame["backend"] == "").any():
        raise BadInput(f"{what} {path} is corrupt: a row on line {int((frame['backend'] == '').idxmax()) + 2} "
                       "has no backend")
    unknown = ~frame["status"].isin(STATUSES)
    if unknown.any():
        index = int(unknown.idxmax())
        raise BadInput(
            f"{what} {path} is corrupt: unknown status {frame['status'][index][:40]!r} on line {index + 2} "
            f"(expected one of {', '.join(STATUSES)})"
        )
    if frame["batch_size"].isna().any():
        raise BadInput(f"{what} {path} is corrupt: a row on line {int(frame['batch_size'].isna().idxmax()) + 2} "
                       "has no batch_size")
    for column in ("device", "reason", "notes", "precision", "run_id", "accuracy_ok"):
        if column not in frame.columns:
            frame[column] = ""
    return frame


def row_key(row: Any) -> tuple:
    """(backend, mode, batch_size, image_size, device) with numbers as ints and blanks as None."""

    def number(value):
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)

    return (str(row["backend"]), str(row["mode"]), number(row["batch_size"]), number(row["image_size"]),
            str(row["device"]))  # fmt: skip


@dataclass
class Results:
    """One results folder: the CSV as a table, plus the JSON document's extras when it is there and agrees."""

    directory: Path
    csv_path: Path
    frame: pd.DataFrame
    json_path: Path | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    #: JSON rows by :func:`row_key` (raw latencies, profile summaries)
    extras: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    #: things the reader should know about the input itself (an ignored JSON file, duplicate rows)
    notes: list[str] = field(default_factory=list)


def load_results(results_dir: Path | str) -> Results:
    """Load ``RESULTS_DIR/benchmark_results.csv`` and, if present and readable, its JSON companion."""
    directory = Path(results_dir)
    if not directory.exists():
        raise BadInput(f"results directory not found: {directory}")
    if not directory.is_dir():
        raise BadInput(f"not a directory: {directory} (give the folder that holds {CSV_NAME})")
    csv_path = directory / CSV_NAME
    if not csv_path.exists():
        raise BadInput(f"no {CSV_NAME} in {directory}")
    return load_csv_and_json(csv_path)


def load_csv_and_json(csv_path: Path, required: tuple[str, ...] = REPORT_REQUIRED,
                      what: str = "results CSV") -> Results:
    """A results CSV, and the JSON beside it (``benchmark_results.json`` or ``results.json``) when it is the same
    run's: the JSON adds raw latencies, machine load and profiles."""
    frame = read_results_csv(csv_path, required=required, what=what)
    results = Results(directory=csv_path.parent, csv_path=csv_path, frame=frame)
    for name in JSON_NAMES:
        candidate = csv_path.parent / name
        if candidate.is_file():
            _attach_json(results, candidate)
            break
    return results


def _attach_json(results: Results, path: Path) -> None:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        results.notes.append(f"{path.name} could not be read ({type(exc).__name__}); the report uses the CSV only.")
        return
    if not isinstance(document, dict):
        results.notes.append(f"{path.name} is not a densebench results document; the report uses the CSV only.")
        return
    csv_runs = {r for r in results.frame["run_id"] if r}
    json_run = document.get("run_id")
    if csv_runs and json_run and json_run not in csv_runs:
        results.notes.append(
            f"{path.name} belongs to run {json_run}, not to the CSV's run; its environment and profiles are ignored."
        )
        return
    results.json_path = path
    environment, config = document.get("environment"), document.get("config")
    results.environment = environment if isinstance(environment, dict) else {}
    results.config = config if isinstance(config, dict) else {}
    for row in document.get("rows") or []:
        if not isinstance(row, dict):
            continue
        try:
            key = row_key({**{k: None for k in KEY_COLUMNS}, **row, "device": row.get("device") or ""})
        except (TypeError, ValueError, KeyError):
            continue
        results.extras[key] = row
