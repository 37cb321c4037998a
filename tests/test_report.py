"""The report: files exist, plots referenced exist, and every claim matches the CSV it was built from.

Inputs are written by the tests from a small latency model (fixed overhead + cost per image), chosen so that the
fastest backend changes with batch size; every expectation is recomputed here from those rows.
"""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from densebench_core.commands_report import report as report_command
from densebench_core.errors import BadInput
from densebench_core.report import build_report
from densebench_core.results import COLUMNS
from densebench_core.testing import write_rows

REPO = Path(__file__).resolve().parents[1]

# name: (overhead ms, ms per image, prepare s, max_abs_err, cosine, top1, std/mean)
INFERENCE = {
    "baseline": (5.0, 2.0, 0.1, 0.0, 1.0, 1.0, 0.02),
    "channels_last": (1.0, 2.2, 0.3, 1e-6, 1.0, 1.0, 0.03),
    "fp16": (8.0, 0.5, 2.0, 2e-3, 0.99995, 0.97, 0.04),
    "channels_last+amp+compile": (3.0, 1.0, 40.0, 1e-3, 0.99999, 1.0, 0.02),
}
TRAINING = {  # no baseline in this mode on purpose
    "channels_last": (4.0, 6.0, 0.3, None, None, None, 0.05),
    "amp": (9.0, 3.0, 0.5, None, None, None, 0.05),
}
BATCHES = (1, 32, 256)


def model_row(backend, mode, batch, params, image_size=224, device="cuda"):
    overhead, per_image, prepare, err, cos, top1, cv = params
    mean = overhead + per_image * batch
    return {
        "run_id": "r1", "backend": backend, "mode": mode, "device": device, "batch_size": batch,
        "image_size": image_size, "precision": "fp32", "status": "ok", "reason": "",
        "latency_p50_ms": mean * 0.98, "latency_p90_ms": mean * 1.05, "latency_p99_ms": mean * 1.2,
        "latency_mean_ms": mean, "latency_std_ms": mean * cv, "throughput_ips": batch * 1000.0 / mean,
        "peak_mem_mb": 100 + (2 if backend == "fp16" else 4) * batch, "prepare_s": prepare, "max_abs_err": err,
        "cosine_sim": cos, "top1_agree": top1, "iterations": 50, "torch_version": "2.x", "device_name": "Test GPU",
        "timestamp": "2026-01-01T00:00:00",
    }  # fmt: skip


def not_ok_row(backend, mode, batch, status, reason):
    return {"run_id": "r1", "backend": backend, "mode": mode, "device": "cuda", "batch_size": batch,
            "image_size": 224, "status": status, "reason": reason}  # fmt: skip


def write_csv(directory: Path, rows: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_rows(directory / "benchmark_results.csv", rows)


def full_rows() -> list[dict]:
    rows = [model_row(b, "inference", bs, p) for b, p in INFERENCE.items() for bs in BATCHES]
    rows += [model_row(b, "training", bs, p) for b, p in TRAINING.items() for bs in BATCHES]
    rows += [not_ok_row("trt", "inference", bs, "skipped", "trt: torch_tensorrt is not installed") for bs in BATCHES]
    rows.append(not_ok_row("jit", "inference", 256, "failed", "RuntimeError: out of memory | allocator"))
    return rows


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def section(markdown: str, title: str) -> str:
    """The text of a heading's section, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\s*$", markdown, re.MULTILINE)
    assert match, f"no section {title!r}"
    level = len(match.group(1))
    rest = markdown[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]  # fmt: skip
    return [r for r in rows[2:]]  # drop header and separator


def unquote(cell: str) -> str:
    return cell.strip("`* ")


# share of each profiled row's mean step the GPU is busy: baseline GPU-bound, fp16 host-bound
BUSY_SHARE = {("baseline", 256): 0.93, ("fp16", 256): 0.41}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("results")
    rows = full_rows()
    write_csv(directory, rows)
    profiles = {  # a JSON companion with profiles for two rows, shaped as the runner writes it
        ("baseline", 256): [("aten::convolution", 61.0, "cuda"), ("aten::cat", 12.0, "cuda"),
                            ("aten::empty", 3.0, "cpu")],
        ("fp16", 256): [("aten::cudnn_convolution", 55.0, "cuda"), ("aten::native_batch_norm", 20.0, "cpu")],
    }  # fmt: skip
    json_rows = []
    for row in rows:
        extra = dict(row)
        ops = profiles.get((row["backend"], row["batch_size"])) if row["mode"] == "inference" else None
        if ops:
            extra["profile"] = {"top_ops": [{"name": n, "self_time_pct": p, "self_time_ms": p / 10, "kind": k}
                                            for n, p, k in ops]}  # fmt: skip
            busy = BUSY_SHARE[(row["backend"], row["batch_size"])]
            extra["profile"]["device_ms_per_step"] = busy * float(row["latency_mean_ms"])
        json_rows.append(extra)
    document = {"run_id": "r1", "environment": {"torch": "2.x", "device_name": "Test GPU", "gpus": ["Test GPU"]},
                "config": {"batch_sizes": list(BATCHES)}, "rows": json_rows}  # fmt: skip
    (directory / "benchmark_results.json").write_text(json.dumps(document))
    written = build_report(directory)
    return directory, written, read_csv_rows(directory / "benchmark_results.csv"), profiles


def test_report_files_exist_and_html_is_self_contained(built):
    directory, written, _, _ = built
    assert written["report_md"] == directory / "report.md" and written["report_md"].is_file()
    assert written["report_html"] == directory / "report.html" and written["report_html"].is_file()
    html = written["report_html"].read_text()
    sources = re.findall(r'(?:src|href)="([^"#]*)"', html)
    assert sources, "the html has no images"
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources
    assert "<link" not in html and "<script" not in html
    assert len(sources) == len(written["plots"])


def test_every_referenced_plot_exists_and_is_a_png(built):
    directory, written, _, _ = built
    markdown = written["report_md"].read_text()
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert referenced
    for relative in referenced:
        path = directory / relative
        assert path.is_file(), relative
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.parent == directory / "plots"
    assert sorted(directory / r for r in referenced) == sorted(written["plots"])
    names = {Path(r).name for r in referenced}
    for kind in ("throughput", "latency", "speedup", "memory", "accuracy", "prepare"):
        assert any(n.startswith(f"{kind}_inference") for n in names), kind
    # training has no baseline (no speed-up) and no accuracy columns (no accuracy plot)
    assert any(n.startswith("throughput_training") for n in names)
    assert not any(n.startswith(("speedup_training", "accuracy_training")) for n in names)


def test_fastest_backend_per_batch_size_matches_the_csv(built):
    _, written, rows, _ = built
    expected = {}
    for row in rows:
        if row["status"] == "ok":
            key = (row["mode"], int(row["batch_size"]))
            if key not in expected or float(row["throughput_ips"]) > float(expected[key]["throughput_ips"]):
                expected[key] = row
    assert len({r["backend"] for r in expected.values()}) > 1, "test data should have more than one winner"

    table = table_rows(section(written["report_md"].read_text(), "Fastest backend per batch size"))
    named = {(r[0], int(r[1])): unquote(r[2]) for r in table}
    assert named == {k: v["backend"] for k, v in expected.items()}
    assert {(w["mode"], w["batch_size"]): w["backend"] for w in written["fastest"]} == named
    # the prose agrees with the table
    analysis = section(written["report_md"].read_text(), "Performance Analysis")
    for (mode, batch), row in expected.items():
        assert f"At batch size {batch}, `{row['backend']}` is fastest" in analysis
    html = written["report_html"].read_text()
    for (mode, batch), row in expected.items():
        assert f"At batch size {batch}, <code>{row['backend']}</code> is fastest" in html


def test_serving_choices_follow_the_data(built):
    _, written, rows, _ = built
    inference = [r for r in rows if r["status"] == "ok" and r["mode"] == "inference"]
    smallest = min(int(r["batch_size"]) for r in inference)
    largest = max(int(r["batch_size"]) for r in inference)
    latency_pick = min((r for r in inference if int(r["batch_size"]) == smallest),
                       key=lambda r: float(r["latency_p50_ms"]))  # fmt: skip
    throughput_pick = max((r for r in inference if int(r["batch_size"]) == largest),
                          key=lambda r: float(r["throughput_ips"]))  # fmt: skip
    assert latency_pick["backend"] != throughput_pick["backend"], "test data should need two answers"
    choose = section(written["report_md"].read_text(), "Which to choose")
    assert f"**Latency-bound serving** (batch {smallest}, inference): `{latency_pick['backend']}`" in choose
    assert f"**Throughput-bound serving** (batch {largest}, inference): `{throughput_pick['backend']}`" in choose
    if float(throughput_pick["top1_agree"]) < 1:  # its accuracy cost is stated
        assert f"{100 * float(throughput_pick['top1_agree']):.1f}%" in choose


def test_break_even_is_computed_from_prepare_time_and_speed(built):
    _, written, rows, _ = built
    summary = table_rows(section(written["report_md"].read_text(), "Summary"))
    cells = {(unquote(r[0]), r[1], int(r[2])): r[-1] for r in summary}
    base = {(r["mode"], int(r["batch_size"])): float(r["throughput_ips"])
            for r in rows if r["status"] == "ok" and r["backend"] == "baseline"}  # fmt: skip
    checked = {"finite": 0, "never": 0}
    for r in rows:
        key = (r["mode"], int(r["batch_size"]))
        if r["status"] != "ok" or r["backend"] == "baseline" or key not in base:
            continue
        ips, prepare = float(r["throughput_ips"]), float(r["prepare_s"])
        cell = cells[(r["backend"], r["mode"], int(r["batch_size"]))]
        if ips > base[key]:
            images = math.ceil(prepare / (1 / base[key] - 1 / ips))
            assert cell == f"{images:,} images"
            checked["finite"] += 1
        else:
            assert cell == "never"
            checked["never"] += 1
    assert checked["finite"] and checked["never"]


def test_skipped_and_failed_rows_are_listed_with_reasons(built):
    _, written, rows, _ = built
    text = section(written["report_md"].read_text(), "Skipped and failed runs")
    for row in rows:
        if row["status"] != "ok":
            assert f"`{row['backend']}`" in text and row["status"] in text
            assert row["reason"].replace("|", "\\|") in text  # the pipe is escaped inside the table


def test_where_the_time_goes_names_the_top_operator_per_profiled_backend(built):
    _, written, _, profiles = built
    text = section(written["report_md"].read_text(), "Where the time goes")
    for (backend, batch), ops in profiles.items():
        name, share, _kind = max(ops, key=lambda op: op[1])
        assert f"`{backend}`: `{name}` takes {share:.1f}%" in text
    profiled = {b for b, _ in profiles}
    unprofiled = set(INFERENCE) - profiled
    table = table_rows(section(written["report_md"].read_text(), "Top operators (inference)"))
    assert {unquote(r[0]) for r in table} == profiled and not unprofiled & {unquote(r[0]) for r in table}


def test_gpu_busy_table_and_host_bound_rows_come_from_profile_and_latency(built):
    _, written, csv_rows, _ = built
    markdown = written["report_md"].read_text()
    table = table_rows(section(markdown, "GPU busy (inference)"))
    by_row = {(unquote(r[0]), int(r[1])): r for r in table}
    assert set(by_row) == set(BUSY_SHARE)
    for (backend, batch), share in BUSY_SHARE.items():
        row = next(r for r in csv_rows if r["backend"] == backend and int(r["batch_size"]) == batch
                   and r["mode"] == "inference")  # fmt: skip
        assert by_row[(backend, batch)][4] == f"{100 * share:.0f}%"
        assert float(by_row[(backend, batch)][3].replace(",", "")) == pytest.approx(float(row["latency_mean_ms"]), rel=0.01)
    host_bound = section(markdown, "GPU busy (inference)").split("Host-bound", 1)[1]
    assert "`fp16` batch 256 (41%)" in host_bound and "`baseline`" not in host_bound
    assert "Host-bound" in written["report_html"].read_text()


def test_no_baseline_single_batch_and_nan_cells(tmp_path):
    rows = [model_row(b, "inference", 8, p) for b, p in INFERENCE.items() if b != "baseline"]
    rows[0]["max_abs_err"] = rows[0]["cosine_sim"] = rows[0]["top1_agree"] = None  # not measured
    rows[1]["peak_mem_mb"] = "nan"
    write_csv(tmp_path, rows)
    written = build_report(tmp_path)
    markdown = written["report_md"].read_text()
    assert "No ok `baseline` row" in markdown
    fastest = max(rows, key=lambda r: r["throughput_ips"])["backend"]
    assert [w["backend"] for w in written["fastest"]] == [fastest]
    assert all(p.is_file() for p in written["plots"])
    assert not any(p.name.startswith("speedup") for p in written["plots"])
    summary = section(markdown, "Summary")
    assert "nan" not in summary.lower()
    first = next(r for r in table_rows(summary) if unquote(r[0]) == rows[0]["backend"])
    assert first[9:12] == ["—", "—", "—"]  # max abs err, cosine, top-1: not measured


def test_only_skipped_rows_still_give_a_report(tmp_path):
    rows = [not_ok_row("trt", "inference", bs, "skipped", "needs a CUDA device") for bs in (1, 2)]
    write_csv(tmp_path, rows)
    written = build_report(tmp_path)
    markdown = written["report_md"].read_text()
    assert written["plots"] == [] and written["fastest"] == []
    assert "No backend produced a measurement" in markdown
    assert "needs a CUDA device" in section(markdown, "Skipped and failed runs")
    assert written["report_html"].is_file()


def csv_with(content: bytes):
    def setup(directory: Path) -> Path:
        (directory / "benchmark_results.csv").write_bytes(content)
        return directory

    return setup


@pytest.mark.parametrize("setup, words", [
    (lambda d: d / "missing", "not found"),
    (lambda d: d, "no benchmark_results.csv"),
    (csv_with(b""), "empty"),
    (csv_with(b"\x00\x01\xffPK"), "not a CSV"),
    (csv_with(b"a,b\n1,2\n"), "missing column"),
    (csv_with(",".join(COLUMNS).encode() + b"\n"), "no result rows"),
    (lambda d: write_csv(d, [{**model_row("baseline", "inference", 1, INFERENCE["baseline"]),
                              "throughput_ips": "fast"}]).parent, "throughput_ips"),
])  # fmt: skip
def test_bad_results_folder_is_bad_input(tmp_path, setup, words):
    directory = setup(tmp_path)
    with pytest.raises(BadInput, match=words):
        build_report(directory)


def test_report_command(tmp_path):
    write_csv(tmp_path, [model_row(b, "inference", bs, p) for b, p in INFERENCE.items() for bs in (1, 4)])
    result = CliRunner().invoke(report_command, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "report.md") in result.output and str(tmp_path / "report.html") in result.output
    assert (tmp_path / "report.md").is_file()
    missing = CliRunner().invoke(report_command, [str(tmp_path / "nowhere")])
    assert isinstance(missing.exception, BadInput)


def test_report_command_bad_input_through_the_real_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "densebench_core.cli", "report", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    expected = f"densebench: error: results directory not found: {tmp_path / 'nowhere'}"
    assert proc.stderr.strip().splitlines() == [expected]
