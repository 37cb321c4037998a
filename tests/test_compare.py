"""``densebench compare``: flags real regressions, passes identical runs, refuses unreadable input.

The input runs are written here from a latency model with seeded per-iteration samples: a CSV, and beside it the
JSON with the raw samples and what kind of row each is (GPU-bound CUDA rows here), as a real run leaves them.
Expected verdicts follow the documented rule (significant, and beyond the floor) of densebench_core.significance.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densebench_core.commands_report import compare as compare_command
from densebench_core.compare import IMPROVEMENT, REGRESSION, UNCHANGED, compare_results
from densebench_core.errors import BadInput
from densebench_core.machine_load import is_busy
from densebench_core.schema import COLUMNS
from densebench_core.stats import summarize
from densebench_core.testing import read_rows, run_densebench, write_rows

pytestmark = pytest.mark.serial  # judges timings: alone on the machine in CI (noxfile.py)

REPO = Path(__file__).resolve().parents[1]
# backend: (overhead ms, ms per image, std/mean)
BACKENDS = {"baseline": (5.0, 2.0, 0.01), "channels_last": (2.0, 1.6, 0.03), "fp16": (6.0, 0.7, 0.02)}
SAMPLES = 300


def make_rows(scale: float = 1.0, seed: int = 0, spread: float = 1.0, select=lambda backend: True,
              samples: int = SAMPLES) -> list[dict]:
    """Rows of one run; ``scale`` multiplies the latencies of the selected backends (1.3: 30% slower)."""
    rows = []
    for backend, (overhead, per_image, cv) in BACKENDS.items():
        for batch in (1, 8, 64):
            factor = scale if select(backend) else 1.0
            rng = np.random.default_rng(zlib.crc32(f"{backend}/{batch}/{seed}".encode()))
            values = list(factor * (overhead + per_image * batch) * rng.lognormal(0.0, cv * spread, samples))
            stats = summarize(values, batch)
            rows.append({
                "run_id": f"run{seed}", "backend": backend, "mode": "inference", "device": "cuda",
                "batch_size": batch, "image_size": 64, "precision": "fp32", "status": "ok",
                "latency_p50_ms": stats.p50_ms, "latency_mean_ms": stats.mean_ms, "latency_std_ms": stats.std_ms,
                "p50_ci_low_ms": stats.p50_ci_low_ms, "p50_ci_high_ms": stats.p50_ci_high_ms,
                "throughput_ips": stats.throughput_ips, "peak_mem_mb": 500 + batch, "latencies_ms": values,
                "host_bound": False,  # JSON only, as the worker writes it
            })  # fmt: skip
    rows.append({"run_id": f"run{seed}", "backend": "trt", "mode": "inference", "device": "cuda", "batch_size": 1,
                 "image_size": 64, "status": "skipped", "reason": "needs CUDA"})  # fmt: skip
    return rows


def write_run(folder: Path, rows: list[dict], busy: bool = False) -> Path:
    """A results folder as a run leaves it: the CSV, and the JSON with raw samples and machine load."""
    folder.mkdir(parents=True, exist_ok=True)
    write_rows(folder / "benchmark_results.csv", rows)
    load = {"cpu_count": 2, "other_cpu_cores": 1.5 if busy else 0.0}
    document = {"run_id": rows[0]["run_id"], "rows": [{**r, "load": load} for r in rows]}
    (folder / "benchmark_results.json").write_text(json.dumps(document))
    return folder


def ok_count(rows) -> int:
    return sum(r["status"] == "ok" for r in rows)


@pytest.fixture
def base(tmp_path):
    return write_run(tmp_path / "base", make_rows())


def test_identical_copy_passes(tmp_path, base):
    copy = write_run(tmp_path / "copy", make_rows())
    result = compare_results(base, copy)
    assert len(result.rows) == ok_count(make_rows())
    assert not result.has_regression and result.regressions == []
    assert all(r.p50_change_pct == 0 and r.verdict == UNCHANGED for r in result.rows)
    cli = CliRunner().invoke(compare_command, [str(base), str(copy)])
    assert cli.exit_code == 0, cli.output
    assert "no regressions" in cli.output


def test_a_copy_30_percent_slower_is_flagged(tmp_path, base):
    slow = write_run(tmp_path / "slow", make_rows(scale=1.3))
    result = compare_results(base, slow)
    assert result.has_regression
    assert len(result.regressions) == ok_count(make_rows())
    for row in result.rows:
        assert row.p50_change_pct == pytest.approx(30.0, abs=0.01)
        assert row.comparison.method == "rank test"
        assert any("p50 latency +30.0%" in reason for reason in row.reasons)
    cli = CliRunner().invoke(compare_command, [str(base), str(slow)])
    assert cli.exit_code == 1, cli.output
    assert cli.output.count(REGRESSION) == ok_count(make_rows())


def test_csv_files_alone_use_their_intervals_and_the_cautious_floor(tmp_path):
    base = write_rows(tmp_path / "base.csv", make_rows())
    slow = compare_results(base, write_rows(tmp_path / "slow.csv", make_rows(scale=1.3)))
    assert all(r.comparison.method == "intervals" for r in slow.rows)
    # without the JSON, nothing says which rows are GPU-bound: the process noise of host-bound rows is assumed
    assert not slow.has_regression and all("100% noise floor" in r.comparison.why() for r in slow.rows)
    assert "no results JSON beside" in slow.format_table()
    twice = compare_results(base, write_rows(tmp_path / "twice.csv", make_rows(scale=2.5)))
    assert len(twice.regressions) == ok_count(make_rows())


def test_with_raw_samples_the_rank_test_decides(tmp_path):
    base = write_run(tmp_path / "a", make_rows())
    other_run = write_run(tmp_path / "b", make_rows(seed=1))  # the same machine measured again
    result = compare_results(base, other_run)
    assert all(r.comparison.method == "rank test" for r in result.rows)
    assert not result.has_regression
    slower = write_run(tmp_path / "c", make_rows(scale=1.08, seed=2, select=lambda b: b == "channels_last"))
    result = compare_results(base, slower)
    assert {(r.backend, r.batch_size) for r in result.regressions} == {("channels_last", b) for b in (1, 8, 64)}
    assert all(r.comparison.p_value < 0.05 for r in result.regressions)


def test_a_change_within_the_floor_is_no_regression(tmp_path):
    base = write_run(tmp_path / "a", make_rows())
    slight = write_run(tmp_path / "b", make_rows(scale=1.03, seed=1))
    result = compare_results(base, slight)
    assert not result.has_regression  # 3% slower: significant with 300 quiet samples, but below the 5% floor
    assert compare_results(base, slight, floor_pct=1.0).has_regression  # a lower floor sees it


def test_a_large_change_that_is_not_significant_is_no_regression(tmp_path):
    # 20% slower, but each row has 8 samples spread over several times their median: nothing is sure
    noisy_base = write_run(tmp_path / "noisy_base", make_rows(spread=60.0, samples=8))
    noisy_new = write_run(tmp_path / "noisy_new", make_rows(scale=1.2, seed=1, spread=60.0, samples=8))
    result = compare_results(noisy_base, noisy_new)
    assert not result.regressions
    assert all(r.comparison.why().startswith(("not significant", "within")) for r in result.rows)


def test_a_faster_run_is_an_improvement_not_a_regression(tmp_path, base):
    faster = write_run(tmp_path / "faster", make_rows(scale=0.6))
    result = compare_results(base, faster)
    assert not result.has_regression and all(r.verdict == IMPROVEMENT for r in result.rows)
    assert "improved" in result.format_table().splitlines()[-1]


def test_rows_timed_on_a_busy_machine_are_not_judged(tmp_path):
    base = write_run(tmp_path / "a", make_rows())
    slower = make_rows(scale=1.1, seed=1)
    assert compare_results(base, write_run(tmp_path / "quiet", slower)).has_regression
    result = compare_results(base, write_run(tmp_path / "busy", slower, busy=True))
    assert not result.has_regression
    assert all(r.comparison.why().startswith("not judged") for r in result.rows)
    assert "warning: 9 row(s) not judged: other programs used the CPU" in result.format_table()


def test_when_every_row_stopped_working_there_is_no_empty_table(tmp_path, base):
    rows = make_rows()
    for row in rows[:2]:
        row.update(status="failed", reason="RuntimeError: boom")
    result = compare_results(write_rows(tmp_path / "two.csv", rows[:2] and make_rows()[:2]),
                             write_rows(tmp_path / "broken.csv", rows[:2]))
    text = result.format_table()
    assert "backend" not in text.splitlines()[3:4] and "-----" not in text  # no header of an empty table
    assert text.splitlines()[-1] == "2 regression(s): 2 rows stopped working"


@pytest.mark.slow
def test_two_real_runs_of_the_same_backend_agree_and_a_slowed_copy_does_not(tmp_path):
    """The acceptance check on real runs: the same backend measured twice on this machine is no regression; a copy
    of the first run whose latencies are 30% longer is.

    On one thread: a CPU row on several threads differs by up to 45% from one process to the next (the threads'
    interplay), more than a 30% change, so its floor (50%) hides it; on one thread processes differ by under 5%
    and the floor is 10% (densebench_core/significance.py has the measurements)."""
    runs = []
    for name in ("first", "second"):
        proc = run_densebench("run", "--backend", "baseline", "--device", "cpu", "--batch-sizes", "1",
                              "--image-size", "32", "--warmup", "20", "--min-iters", "50", "--min-time", "1",
                              "--eval-images", "4", "--no-profile", "--no-export", "--output-dir", str(tmp_path / name),
                              "--log-dir", str(tmp_path / "logs"), env={"OMP_NUM_THREADS": "1"})  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs.append(tmp_path / name)
    same = run_cli(*runs)
    assert same.returncode == 0, same.stdout + same.stderr
    slowed = tmp_path / "slowed"
    slowed.mkdir()
    rows = read_rows(runs[0] / "benchmark_results.csv")
    for row in rows:
        for column in ("latency_p50_ms", "latency_mean_ms", "latency_std_ms", "p50_ci_low_ms", "p50_ci_high_ms"):
            row[column] = float(row[column]) * 1.3
    write_rows(slowed / "benchmark_results.csv", rows)
    document = json.loads((runs[0] / "benchmark_results.json").read_text())
    for row in document["rows"]:
        row["latencies_ms"] = [x * 1.3 for x in row["latencies_ms"]]
    (slowed / "benchmark_results.json").write_text(json.dumps(document))
    slower = run_cli(runs[0], slowed)
    loads = [json.loads((run / "benchmark_results.json").read_text())["rows"][0]["load"] for run in runs]
    if any(is_busy(load) for load in loads):  # another program ran meanwhile: the rule refuses to judge, and says so
        assert slower.returncode == 0 and "not judged" in slower.stdout, slower.stdout
        pytest.skip(f"another program was busy on this machine during the runs ({loads}): not judged, as it must")
    assert slower.returncode == 1, slower.stdout + slower.stderr
    assert "rank test" in slower.stdout and "10% noise floor" in slower.stdout  # raw samples, one-thread floor


def test_a_backend_that_stopped_working_is_a_regression(tmp_path, base):
    rows = make_rows()
    for row, status in ((rows[0], "failed"), (rows[1], "skipped")):
        row.update(status=status, reason="RuntimeError", throughput_ips=None, latency_p50_ms=None,
                   p50_ci_low_ms=None, p50_ci_high_ms=None)
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
        bad.write_text((base / "benchmark_results.csv").read_text() + "a," * (len(COLUMNS) + 3) + "\n")
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
    same = run_cli(base, write_run(tmp_path / "same", make_rows()))
    assert same.returncode == 0, same.stderr
    assert "no regressions" in same.stdout
    cut = run_cli(base, write_run(tmp_path / "cut", make_rows(scale=1.3)))
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
