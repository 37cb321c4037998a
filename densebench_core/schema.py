"""The results files, in one place: the CSV's columns (the contract's names and order), their types, the statuses,
and reading and writing both the CSV and the JSON document beside it.

:class:`~densebench_core.results.ResultsStore` writes with :func:`csv_text` and :func:`json_text`; the report and
``densebench compare`` read with :func:`load_results` / :func:`load_csv_and_json`, which validate: anything a user
could hand us by mistake -- a missing path, a directory, an empty file, binary garbage, a CSV without the columns
we need, a number that is not a number -- becomes one :class:`BadInput` with a message that names the file and,
where it can, the line and column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from densebench_core.errors import BadInput

CSV_NAME = "benchmark_results.csv"
#: the latest run's JSON is ``benchmark_results.json``; a run kept under ``runs/<id>/`` has ``results.json``
LATEST_JSON, RUN_JSON = "benchmark_results.json", "results.json"
JSON_NAMES = (LATEST_JSON, RUN_JSON)

#: column types: a number (read as a float, NaN = not measured), text, or a flag (written ``true``/``false``,
#: empty where not measured, and read back as that text)
NUMBER, TEXT, FLAG = "number", "text", "flag"
#: every column, in the contract's order, with its type; the columns of features added since follow the first 26
COLUMN_TYPES: dict[str, str] = {
    "run_id": TEXT, "backend": TEXT, "mode": TEXT, "device": TEXT, "batch_size": NUMBER, "image_size": NUMBER,
    "precision": TEXT, "status": TEXT, "reason": TEXT, "latency_p50_ms": NUMBER, "latency_p90_ms": NUMBER,
    "latency_p99_ms": NUMBER, "latency_mean_ms": NUMBER, "latency_std_ms": NUMBER, "throughput_ips": NUMBER,
    "peak_mem_mb": NUMBER, "prepare_s": NUMBER, "max_abs_err": NUMBER, "cosine_sim": NUMBER, "top1_agree": NUMBER,
    "artifact_path": TEXT, "artifact_mb": NUMBER, "iterations": NUMBER, "torch_version": TEXT, "device_name": TEXT,
    "timestamp": TEXT,
    "weights": TEXT, "options": TEXT, "notes": TEXT, "p50_ci_low_ms": NUMBER, "p50_ci_high_ms": NUMBER,
    "eval_images": NUMBER, "rel_err": NUMBER, "accuracy_ok": FLAG, "world_size": NUMBER, "host": TEXT,
    "gpu_index": NUMBER, "cold_start_s": NUMBER,
}  # fmt: skip
COLUMNS = list(COLUMN_TYPES)
NUMERIC_COLUMNS = tuple(c for c, kind in COLUMN_TYPES.items() if kind == NUMBER)
TEXT_COLUMNS = tuple(c for c, kind in COLUMN_TYPES.items() if kind != NUMBER)

#: a row's status: measured, unavailable here (``reason`` says why), the step raised, or it ran out of time
STATUSES = ("ok", "skipped", "failed", "timeout")
#: the statuses of a row that stopped working (an ok row of BASE that became one of these is a regression)
BROKEN = ("failed", "timeout")
#: a row is identified by these; compare matches on them, and a results folder holds each once. ``world_size``
#: and ``device_name`` (a fleet's runs hold several device models) came later: a file without world_size holds
#: one-process rows (read as 1)
KEY_COLUMNS = ("backend", "mode", "batch_size", "image_size", "device", "world_size", "device_name")
#: what no results file can be read without; every other column is optional and reads as "not measured"
REQUIRED = ("backend", "mode", "batch_size", "status")


# -- writing -----------------------------------------------------------------------------------------------------
def cell(value: Any) -> str:
    """A CSV cell: empty for None, NaN and infinities; ``true``/``false``; floats to 8 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        return f"{value:.8g}"
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else ""
    return str(value)


def csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """The CSV of ``rows``: the header, then one line per row with every column (missing cells empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([cell(row.get(column)) for column in COLUMNS])
    return buffer.getvalue()


def json_text(run_id: str, environment: dict, config: dict, rows: list[dict[str, Any]]) -> str:
    """The JSON document beside the CSV: the run's environment and config, and its rows whole (raw latencies,
    machine load, profile summaries)."""
    document = {"run_id": run_id, "environment": environment, "config": config, "rows": rows}
    return json.dumps(document, indent=1, default=str, allow_nan=False)


# -- reading -----------------------------------------------------------------------------------------------------
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


def _first_line(mask: pd.Series) -> int:
    """The line of the first row where ``mask`` holds, as an editor shows it: the header is line 1 (exact when no
    cell spans lines)."""
    return int(mask.idxmax()) + 2


def read_results_csv(path: Path | str, required: tuple[str, ...] = REQUIRED,
                     what: str = "results CSV") -> pd.DataFrame:
    """Read and validate a ``benchmark_results.csv``: every column of the schema is there afterwards, numeric ones
    as floats (NaN = not measured), text ones stripped ("" = not recorded).

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
        frame[column] = frame[column].astype(str).str.strip() if column in frame.columns else ""
    for column in NUMERIC_COLUMNS:
        if column not in frame.columns:
            frame[column] = 1.0 if column == "world_size" else math.nan  # written before there were several
            continue
        cells = frame[column].astype(str).str.strip()
        numbers = pd.to_numeric(cells, errors="coerce")
        bad = numbers.isna() & (cells != "") & (cells.str.lower() != "nan")
        if bad.any():
            raise BadInput(
                f"{what} {path} is corrupt: column {column} on line {_first_line(bad)} is not a number: "
                f"{cells[int(bad.idxmax())][:40]!r}"
            )
        frame[column] = numbers.astype(float)
    if (frame["backend"] == "").any():
        raise BadInput(f"{what} {path} is corrupt: a row on line {_first_line(frame['backend'] == '')} "
                       "has no backend")
    unknown = ~frame["status"].isin(STATUSES)
    if unknown.any():
        raise BadInput(
            f"{what} {path} is corrupt: unknown status {frame['status'][int(unknown.idxmax())][:40]!r} on line "
            f"{_first_line(unknown)} (expected one of {', '.join(STATUSES)})"
        )
    if frame["batch_size"].isna().any():
        raise BadInput(f"{what} {path} is corrupt: a row on line {_first_line(frame['batch_size'].isna())} "
                       "has no batch_size")
    return frame


def row_key(row: Any) -> tuple:
    """(backend, mode, batch_size, image_size, device, world_size, device_name) with numbers as ints, blanks as
    None (a blank or absent world_size as 1, an absent device_name as "")."""

    def number(value):
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)

    return (str(row["backend"]), str(row["mode"]), number(row["batch_size"]), number(row["image_size"]),
            str(row["device"]), number(row.get("world_size")) or 1, str(row.get("device_name") or ""))  # fmt: skip


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


def load_csv_and_json(csv_path: Path, required: tuple[str, ...] = REQUIRED, what: str = "results CSV") -> Results:
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
