"""``densebench compare``: flags real regressions, passes identical runs, refuses unreadable input.

The input CSVs are written here from a latency model; expected verdicts are recomputed from the documented rule
(throughput drop or p50 rise beyond max(5%, combined std/mean)).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from densebench_core.commands_report import compare as compare_command
from densebench_core.compare import DEFAULT_FLOOR_PCT, compare_results, threshold_pct
from densebench_core.errors import BadInput
from densebench_core.results import COLUMNS
from densebench_core.testing import write_rows

REPO = Path(__file__).resolve().parents[1]
BACKENDS = {"baseline": (5.0, 2.0, 0.01), "channels_last": (2.0, 1.6, 0.03), "fp16": (6.0, 0.7, 0.02)}


def make_rows() -> list[dict]:
    rows = []
    for backend, (overhead, per_image, cv) in BACKENDS.items():
        for batch in (1, 8, 64):
            mean = overhead + per_image * batch
            rows.append({
                "run_id": "base", "backend": backend, "mode": "inference", "device": "cpu", "batch_size": batch,
                "image_size": 64, "precision": "fp32", "status": "ok", "latency_p50_ms": mean * 0.99,
                "latency_mean_ms": mean, "latency_std_ms": mean * cv, "throughput_ips": batch * 1000 / mean,
                "peak_mem_mb": 500 + batch,
            })  # fmt: skip
    rows.append({"run_id": "base", "backend": "trt", "mode": "inference", "device": "cpu", "batch_size": 1,
                 "image_size": 64, "status": "skipped", "reason": "needs CUDA"})  # fmt: skip
    return rows


def ok_count(rows) -> int:
    return sum(r["status"] == "ok" for r in rows)


@pytest.fixture
def base(tmp_path):
    return write_rows(tmp_path / "base.csv", make_rows())


def scaled(tmp_path, name, column, factor, select=lambda r: True) -> Path:
    rows = make_rows()
    for row in rows:
        if row["status"] == "ok" and select(row):
            row[column] = row[column] * factor
    return write_rows(tmp_path / name, rows)


def test_identical_copy_passes(tmp_path, base):
    copy = write_rows(tmp_path / "copy.csv", make_rows())
    result = compare_results(base, copy)
    assert len(result.rows) == ok_count(make_rows())
    assert not result.has_regression and result.regressions == []
    assert all(r.throughput_change_pct == 0 for r in result.rows)
    cli = CliRunner().invoke(compare_command, [str(base), str(copy)])
    assert cli.exit_code == 0, cli.output
    assert "no regressions" in cli.output


def test_throughput_cut_by_30_percent_is_flagged(tmp_path, base):
    cut = scaled(tmp_path, "cut.csv", "throughput_ips", 0.7)
    result = compare_results(base, cut)
    assert result.has_regression
    assert len(result.regressions) == ok_count(make_rows())
    for row in result.rows:
        assert math.isclose(row.throughput_change_pct, -30.0, abs_tol=1e-6)
        assert any("throughput" in reason for reason in row.reasons)
    cli = CliRunner().invoke(compare_command, [str(base), str(cut)])
    assert cli.exit_code == 1, cli.output
    assert cli.output.count("REGRESSION") == ok_count(make_rows())


def test_the_threshold_is_the_combined_spread_with_a_floor(tmp_path, base):
    # a 30% drop on rows whose spread is 30% in both files: sqrt(0.3^2 + 0.3^2) = 42% > 30%: noise, not a regression
    rows = make_rows()
    for row in rows:
        if row["backend"] == "fp16" and row["status"] == "ok":
            row["latency_std_ms"] = 0.3 * row["latency_mean_ms"]
    noisy_base = write_rows(tmp_path / "noisy_base.csv", rows)
    for row in rows:
        if row["status"] == "ok":
            row["throughput_ips"] *= 0.7
    noisy_new = write_rows(tmp_path / "noisy_new.csv", rows)
    spread = {(r["backend"], r["batch_size"]): r["latency_std_ms"] / r["latency_mean_ms"]
              for r in rows if r["status"] == "ok"}  # the same in both files
    result = compare_results(noisy_base, noisy_new)
    for row in result.rows:
        cv = spread[(row.backend, row.batch_size)]
        expected = max(DEFAULT_FLOOR_PCT, 100 * math.sqrt(cv**2 + cv**2))
        assert math.isclose(row.threshold_pct, expected, rel_tol=1e-4)  # floats round-trip through CSV text
        assert row.regression == (row.throughput_change_pct < -expected)
    assert {r.backend for r in result.regressions} == {"baseline", "channels_last"}


def test_small_changes_within_the_floor_pass_and_latency_rises_are_flagged(tmp_path, base):
    slight = scaled(tmp_path, "slight.csv", "throughput_ips", 0.97)
    assert not compare_results(base, slight).has_regression
    slower = scaled(tmp_path, "slower.csv", "latency_p50_ms", 1.2, select=lambda r: r["backend"] == "channels_last")
    result = compare_results(base, slower)
    assert {(r.backend, r.batch_size) for r in result.regressions} == {("channels_last", b) for b in (1, 8, 64)}
    assert all("p50" in r.reasons[0] for r in result.regressions)
    # a faster run is never a regression
    faster = scaled(tmp_path, "faster.csv", "throughput_ips", 1.5)
    assert not compare_results(base, faster).has_regression


def test_threshold_pct_rule():
    quiet = {"latency_mean_ms": 10.0, "latency_std_ms": 0.1}
    loud = {"latency_mean_ms": 10.0, "latency_std_ms": 4.0}
    assert threshold_pct(quiet, quiet) == DEFAULT_FLOOR_PCT
    assert math.isclose(threshold_pct(loud, quiet), 100 * math.hypot(0.4, 0.01))
    assert threshold_pct({}, {}) == DEFAULT_FLOOR_PCT  # no spread recorded: the floor


def test_a_backend_that_stopped_working_is_a_regression(tmp_path, base):
    rows = make_rows()
    rows[0].update(status="failed", reason="RuntimeError", throughput_ips=None, latency_p50_ms=None)
    rows[1].update(status="skipped", reason="not installed", throughput_ips=None, latency_p50_ms=None)
    result = compare_results(base, write_rows(tmp_path / "broken.csv", rows))
    assert result.has_regression and result.regressions == []
    assert [(k[0], k[2], after) for k, _, after in result.stopped_working] == [(rows[0]["backend"], 1, "failed")]
    assert len(result.broken) == 2


def test_rows_only_in_one_file_are_listed_not_judged(tmp_path, base):
    rows = [r for r in make_rows() if r["batch_size"] != 64]
    result = compare_results(base, write_rows(tmp_path / "fewer.csv", rows))
    assert not result.has_regression
    assert sorted(k[2] for k in result.only_in_base) == [64] * len(BACKENDS)
    assert "only in base" in result.format_table()


@pytest.mark.parametrize("content, words", [
    (None, "not found"),
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "not a CSV"),
    (b"backend,mode\nbaseline,inference\n", "missing column"),
    (",".join(COLUMNS).encode() + b"\n", "no result rows"),
    ("MODIFY:throughput_ips=12.5x", "throughput_ips"),
    ("MODIFY:status=great", "unknown status"),
    ("MODIFY:batch_size=", "batch_size"),
    ("EXTRA_FIELDS", "corrupt"),
])  # fmt: skip
def test_unreadable_csv_is_bad_input(tmp_path, base, content, words):
    bad = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif isinstance(content, str) and content.startswith("MODIFY:"):
        column, value = content[len("MODIFY:"):].split("=")
        rows = make_rows()
        rows[2][column] = value
        write_rows(bad, rows)
    elif content == "EXTRA_FIELDS":
        bad.write_text(base.read_text() + "a," * (len(COLUMNS) + 3) + "\n")
    for args in ((base, bad), (bad, base)):
        with pytest.raises(BadInput, match=words) as info:
            compare_results(*args)
        assert str(bad) in str(info.value)


def test_no_common_rows_is_bad_input(tmp_path, base):
    rows = make_rows()
    for row in rows:
        row["image_size"] = 128
    with pytest.raises(BadInput, match="nothing to compare"):
        compare_results(base, write_rows(tmp_path / "other.csv", rows))


def test_results_folders_are_accepted(tmp_path, base):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_rows(tmp_path / name / "benchmark_results.csv", make_rows())
    assert not compare_results(tmp_path / "a", tmp_path / "b").has_regression


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "densebench_core.cli", "compare", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)  # fmt: skip


def test_real_cli_exit_codes(tmp_path, base):
    same = run_cli(base, write_rows(tmp_path / "same.csv", make_rows()))
    assert same.returncode == 0, same.stderr
    assert "no regressions" in same.stdout
    cut = run_cli(base, scaled(tmp_path, "cut.csv", "throughput_ips", 0.7))
    assert cut.returncode == 1, cut.stderr
    assert "REGRESSION" in cut.stdout
    missing = run_cli(base, tmp_path / "missing.csv")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [f"densebench: error: NEW_CSV not found: {tmp_path / 'missing.csv'}"]
    (tmp_path / "corrupt.csv").write_bytes(b"\x00\x01binary")
    corrupt = run_cli(tmp_path / "corrupt.csv", base)
    assert corrupt.returncode == 2 and len(corrupt.stderr.strip().splitlines()) == 1
    assert corrupt.stderr.startswith("densebench: error: BASE_CSV")
