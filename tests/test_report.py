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
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densebench_core.commands_report import report as report_command
from densebench_core.errors import BadInput
from densebench_core.report import build_report
from densebench_core.schema import COLUMNS
from densebench_core.significance import Latency, compare, rank
from densebench_core.stats import summarize
from densebench_core.testing import write_rows

REPO = Path(__file__).resolve().parents[1]

# name: (overhead ms, ms per image, prepare s, max_abs_err, rel_err, top1, std/mean)
INFERENCE = {
    "baseline": (5.0, 2.0, 0.1, 0.0, 0.0, 1.0, 0.02),
    "baseline_alias": (5.0, 2.0, 0.1, 0.0, 0.0, 1.0, 0.02),  # the same backend under another name: always tied
    "channels_last": (1.0, 2.2, 0.3, 1e-6, 1e-5, 1.0, 0.03),
    "compile": (1.0, 2.21, 1.0, 1e-6, 1e-5, 1.0, 0.03),  # within the noise floor of channels_last: tied at batch 1
    "fp16": (8.0, 0.5, 2.0, 2e-3, 0.02, 0.97, 0.04),
    "channels_last+amp+compile": (3.0, 1.0, 40.0, 1e-3, 0.01, 1.0, 0.02),
}
TRAINING = {  # no baseline in this mode on purpose
    "channels_last": (4.0, 6.0, 0.3, None, None, None, 0.05),
    "amp": (9.0, 3.0, 0.5, None, None, None, 0.05),
}
BATCHES = (1, 32, 256)
SAMPLES = 200
#: the rows whose GPU waits for the host (the others are GPU-bound): the cautious noise floor applies to them
HOST_BOUND = {("fp16", 256)}


def latencies(backend, mode, batch, mean, cv) -> list[float]:
    """Seeded per-iteration latencies around ``mean`` with spread ``cv``, different for every row."""
    seed = zlib.crc32(f"{backend}/{mode}/{batch}".encode())
    return list(mean * np.random.default_rng(seed).lognormal(0.0, cv, SAMPLES))


def model_row(backend, mode, batch, params, image_size=224, device="cuda"):
    overhead, per_image, prepare, err, rel, top1, cv = params
    samples = latencies(backend, mode, batch, overhead + per_image * batch, cv)
    stats = summarize(samples, batch)
    return {
        "run_id": "r1", "backend": backend, "mode": mode, "device": device, "batch_size": batch,
        "image_size": image_size, "precision": "fp32", "status": "ok", "reason": "",
        "latency_p50_ms": stats.p50_ms, "latency_p90_ms": stats.p90_ms, "latency_p99_ms": stats.p99_ms,
        "latency_mean_ms": stats.mean_ms, "latency_std_ms": stats.std_ms, "throughput_ips": stats.throughput_ips,
        "p50_ci_low_ms": stats.p50_ci_low_ms, "p50_ci_high_ms": stats.p50_ci_high_ms,
        "peak_mem_mb": 100 + (2 if backend == "fp16" else 4) * batch, "prepare_s": prepare, "max_abs_err": err,
        "rel_err": rel, "cosine_sim": None if rel is None else 1 - rel**2 / 2, "top1_agree": top1,
        "accuracy_ok": None if rel is None else "true", "eval_images": None if rel is None else 256,
        "iterations": SAMPLES, "torch_version": "2.x", "device_name": "Test GPU", "timestamp": "2026-01-01T00:00:00",
        # the JSON's: who waits for whom (the host's launch time against the latency)
        "latencies_ms": samples, "host_bound": (backend, batch) in HOST_BOUND,
        "launch_ms": (0.9 if (backend, batch) in HOST_BOUND else 0.1) * stats.p50_ms,
    }  # fmt: skip


def expected_ranking(rows, mode, batch) -> list[list[str]]:
    """The rule's ranking of the ok rows at (mode, batch), computed from the rows and their raw samples."""
    at = {r["backend"]: Latency.of_row(r, r["latencies_ms"], host_bound=r["host_bound"]) for r in rows
          if r["status"] == "ok" and r["mode"] == mode and r["batch_size"] == batch}  # fmt: skip
    return rank(at)


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
        ("baseline", 256): [("nvjet_sm90_hsh_64x16_64x16_2x4_h_bz_TNT", 61.0, "cuda"),
                            ("CatArrayBatchedCopy_vectorized", 12.0, "cuda"), ("aten::empty", 3.0, "cpu")],
        ("fp16", 256): [("bn_fw_inf_1C11_kernel_NCHW", 55.0, "cuda"), ("aten::native_batch_norm", 20.0, "cpu")],
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


def names(cell: str) -> list[str]:
    """```a`**, **`b`** and **`c`**`` -> ["a", "b", "c"]."""
    return re.findall(r"`([^`]+)`", cell)


def test_fastest_backend_per_batch_size_follows_the_rule(built):
    _, written, _, _ = built
    rows = full_rows()
    expected = {(mode, batch): expected_ranking(rows, mode, batch)[0]
                for mode in ("inference", "training") for batch in BATCHES}  # fmt: skip
    assert len({g[0] for g in expected.values()}) > 1, "test data should have more than one winner"
    assert any(len(g) > 1 for g in expected.values()), "test data should have ties"

    table = table_rows(section(written["report_md"].read_text(), "Fastest backend per batch size"))
    named = {(r[0], int(r[1])): names(r[2]) for r in table}
    assert named == expected
    assert {(w["mode"], w["batch_size"]): [w["backend"], *w["tied"]] for w in written["fastest"]} == named
    # the prose agrees with the table
    analysis = section(written["report_md"].read_text(), "Performance Analysis")
    html = written["report_html"].read_text()
    for (mode, batch), group in expected.items():
        prose = section(analysis, mode.capitalize())
        line = next(line for line in prose.splitlines() if line.startswith(f"- At batch size {batch},"))
        if len(group) == 1:
            assert line.startswith(f"- At batch size {batch}, **`{group[0]}`** is fastest")
            assert f"At batch size {batch}, <strong><code>{group[0]}</code></strong> is fastest" in html
        else:
            assert "are fastest, tied" in line and all(f"**`{n}`**" in line for n in group), (group, line)


def test_the_baseline_under_another_name_is_tied_with_it_everywhere(built):
    _, written, _, _ = built
    summary = table_rows(section(written["report_md"].read_text(), "Summary"))
    alias = [r for r in summary if unquote(r[0]) == "baseline_alias" and r[1] == "inference"]
    assert len(alias) == len(BATCHES)
    assert all(r[6].startswith("≈ ") for r in alias)  # no significant difference from the baseline
    for (mode, batch) in [("inference", b) for b in BATCHES]:
        groups = expected_ranking(full_rows(), mode, batch)
        assert any({"baseline", "baseline_alias"} <= set(g) for g in groups)


def test_speedups_carry_their_interval(built):
    _, written, _, _ = built
    summary = table_rows(section(written["report_md"].read_text(), "Summary"))
    fp16 = next(r for r in summary if unquote(r[0]) == "fp16" and r[2] == "256")
    match = re.search(r"([\d.]+)× \[([\d.]+)–([\d.]+)\]", fp16[6])
    assert match, fp16[6]
    point, low, high = map(float, match.groups())
    assert low < point < high


def test_serving_choices_follow_the_data(built):
    _, written, rows, _ = built
    rows = full_rows()
    smallest, largest = min(BATCHES), max(BATCHES)
    latency_pick = expected_ranking(rows, "inference", smallest)[0]
    throughput_pick = expected_ranking(rows, "inference", largest)[0]
    assert latency_pick[0] != throughput_pick[0], "test data should need two answers"
    choose = section(written["report_md"].read_text(), "Which to choose")
    assert f"**Latency-bound serving** (batch {smallest}, inference): **`{latency_pick[0]}`**" in choose
    assert f"**Throughput-bound serving** (batch {largest}, inference): **`{throughput_pick[0]}`**" in choose
    pick = next(r for r in rows if r["backend"] == throughput_pick[0] and r["batch_size"] == largest)
    if float(pick["top1_agree"]) < 1:  # its accuracy cost is stated
        assert f"{100 * float(pick['top1_agree']):.1f}%" in choose


def test_break_even_is_computed_from_prepare_time_and_a_significant_speed_up(built):
    _, written, _, _ = built
    rows = full_rows()
    summary = table_rows(section(written["report_md"].read_text(), "Summary"))
    cells = {(unquote(r[0]), r[1], int(r[2])): r[-1] for r in summary}
    base = {(r["mode"], r["batch_size"]): r for r in rows if r["status"] == "ok" and r["backend"] == "baseline"}
    checked = {"finite": 0, "never": 0}
    for r in rows:
        key = (r["mode"], r["batch_size"])
        if r["status"] != "ok" or r["backend"] == "baseline" or key not in base:
            continue
        ips, prepare, base_ips = r["throughput_ips"], r["prepare_s"], base[key]["throughput_ips"]
        cell = cells[(r["backend"], r["mode"], r["batch_size"])]
        faster = compare(Latency.of_row(r, r["latencies_ms"], host_bound=False),
                         Latency.of_row(base[key], base[key]["latencies_ms"], host_bound=False)).verdict == "faster"
        if faster:
            images = math.ceil(prepare / (1 / base_ips - 1 / ips))
            assert cell == f"{images:,} image{'s' if images != 1 else ''}"
            checked["finite"] += 1
        else:  # slower, or no significant difference: the prepare time is never paid back
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


def test_who_waits_for_whom_comes_from_launch_time_and_profile(built):
    _, written, csv_rows, _ = built
    markdown = written["report_md"].read_text()
    text = section(markdown, "Who waits for whom (inference)")
    by_row = {(unquote(r[0]), int(r[1])): r for r in table_rows(text)}
    inference = [r for r in full_rows() if r["mode"] == "inference" and r["status"] == "ok"]
    assert set(by_row) == {(r["backend"], r["batch_size"]) for r in inference}  # every row with a launch time
    for r in inference:
        cells = by_row[(r["backend"], r["batch_size"])]
        assert float(cells[3].replace(",", "")) == pytest.approx(r["launch_ms"], rel=0.01)
        assert cells[6] == ("**yes**" if r["host_bound"] else "no")
        share = BUSY_SHARE.get((r["backend"], r["batch_size"]))
        assert cells[5] == (f"{100 * share:.0f}%" if share else "—")  # GPU busy where a profile says
    # the list and the noise floors use the same rule: host-bound by launch time, whatever the profile says
    assert text.split("Host-bound: ", 1)[1].startswith("`fp16` batch 256.")
    floors = section(markdown, "Fastest backend per batch size")
    assert "100% for `fp16` batch 256 (host-bound CUDA rows" in floors


def test_no_baseline_single_batch_and_nan_cells(tmp_path):
    rows = [model_row(b, "inference", 8, p) for b, p in INFERENCE.items() if not b.startswith("baseline")]
    for key in ("max_abs_err", "cosine_sim", "top1_agree", "rel_err", "accuracy_ok", "eval_images"):
        rows[0][key] = None  # not measured
    rows[1]["peak_mem_mb"] = "nan"
    write_csv(tmp_path, rows)  # no JSON: the verdicts come from the CSV's intervals
    written = build_report(tmp_path)
    markdown = written["report_md"].read_text()
    assert "No ok `baseline` row" in markdown
    csv_only = {r["backend"]: Latency.of_row(r) for r in rows}
    assert [[w["backend"], *w["tied"]] for w in written["fastest"]] == [rank(csv_only)[0]]
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


def test_every_backend_has_a_colour_of_its_own():
    from densebench_core.report import plots

    names = ["baseline"] + [f"backend{i}" for i in range(23)]
    colours = plots.colours(names)
    assert len(set(colours.values())) == len(names)  # no two backends share a legend colour
    grey = [c for b, c in colours.items() if b != "baseline" and max(c[:3]) - min(c[:3]) < 0.05]
    assert not grey, "a grey backend is hard to tell from the near-black baseline"


def test_accuracy_labels_never_call_a_small_difference_exact():
    from densebench_core.report.plots import _accuracy_label

    assert _accuracy_label("rel_err", 1e-6, exact=False) == "1e-06"
    assert _accuracy_label("rel_err", 0.0, exact=True) == "0 (identical output)"
    assert _accuracy_label("rel_err", 0.0, exact=False) == "0"
    assert _accuracy_label("top1_agree", 0.953125, exact=False) == "95.3%"


def test_values_spanning_orders_of_magnitude_are_points_not_bars():
    from densebench_core.report import plots

    plt = plots._pyplot()
    values = {(1, "a"): 0.1, (1, "b"): 300.0, (32, "a"): 2.0, (32, "b"): 40.0}
    colour = plots.colours(["a", "b"])
    for log, bars in ((False, 4), (True, 0)):
        fig, ax = plt.subplots()
        plots._grouped(ax, [1, 32], ["a", "b"], lambda g, s: values[(g, s)], colour, lambda v: f"{v:g}",
                       interval=lambda g, s: (values[(g, s)] * 0.9, values[(g, s)] * 1.1), log=log)
        assert len(ax.patches) == bars  # a bar's length means nothing on a log axis: points there
        assert (ax.get_yscale() == "log") == log
        assert ax.containers  # the error bars (95% intervals) are drawn either way
        plt.close(fig)
