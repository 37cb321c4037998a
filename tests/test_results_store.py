"""The CSV schema, every run kept, and an interrupted run keeping its completed rows."""

import csv
import json
import signal
import socket
import time

from conftest import TINY, pid_alive, start_hanging_run

from densebench_core.schema import COLUMNS
from densebench_core.testing import read_rows, run_densebench

#: the contract's columns (shared/design/contract.md), in its order; the ones of features still to come at the end
CONTRACT_COLUMNS = (
    "run_id, backend, mode, device, batch_size, image_size, precision, status, reason, latency_p50_ms, "
    "latency_p90_ms, latency_p99_ms, latency_mean_ms, latency_std_ms, throughput_ips, peak_mem_mb, prepare_s, "
    "max_abs_err, cosine_sim, top1_agree, artifact_path, artifact_mb, iterations, torch_version, device_name, "
    "timestamp, weights, options, notes, p50_ci_low_ms, p50_ci_high_ms, eval_images, rel_err, accuracy_ok, "
    "world_size, host, gpu_index, cold_start_s"
).split(", ")


def run_baseline(out, *extra):
    return run_densebench("run", "--backend", "baseline", *TINY, "--output-dir", str(out / "r"),
                          "--log-dir", str(out / "l"), *extra)


def test_csv_has_the_contract_columns_in_order_and_typed_values(tmp_path):
    proc = run_baseline(tmp_path, "--batch-sizes", "1,2", "--min-iters", "100")  # enough samples for p99
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "r" / "benchmark_results.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == COLUMNS == CONTRACT_COLUMNS[: len(header)]  # a prefix of the contract's list, in its order
    assert header[-4:] == ["world_size", "host", "gpu_index", "cold_start_s"]
    rows = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert [int(r["batch_size"]) for r in rows] == [1, 2]
    for row in rows:
        assert row["status"] == "ok" and row["mode"] == "inference" and row["device"] == "cpu"
        assert row["world_size"] == "1" and row["host"] == socket.gethostname() and row["gpu_index"] == ""
        p50, p90, p99 = (float(row[f"latency_p{q}_ms"]) for q in (50, 90, 99))
        assert 0 < p50 <= p90 <= p99
        assert float(row["p50_ci_low_ms"]) <= p50 <= float(row["p50_ci_high_ms"])
        assert float(row["throughput_ips"]) == __import__("pytest").approx(
            int(row["batch_size"]) * 1000 / float(row["latency_mean_ms"]), rel=1e-3)
        assert int(row["iterations"]) >= 100 and row["precision"] == "fp32"
        assert row["torch_version"] and row["device_name"] and row["timestamp"]
        assert row["accuracy_ok"] == "true" and float(row["rel_err"]) == 0.0 and int(row["eval_images"]) >= 8
    document = json.loads((tmp_path / "r" / "benchmark_results.json").read_text())
    assert document["environment"]["torch"] == rows[0]["torch_version"]
    assert len(document["rows"][0]["latencies_ms"]) == int(rows[0]["iterations"])


def test_second_run_keeps_the_first(tmp_path):
    assert run_baseline(tmp_path).returncode == 0
    first = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert run_baseline(tmp_path).returncode == 0
    second = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert first[0]["run_id"] != second[0]["run_id"]
    runs = sorted(p.name for p in (tmp_path / "r" / "runs").iterdir())
    assert runs == sorted([first[0]["run_id"], second[0]["run_id"]])
    kept = read_rows(tmp_path / "r" / "runs" / first[0]["run_id"] / "benchmark_results.csv")
    assert kept == first


def test_sigterm_mid_run_keeps_completed_rows_and_kills_the_child(tmp_path, testplugins_path):
    proc, child = start_hanging_run(tmp_path, testplugins_path, "baseline")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "completed rows are kept" in err
    assert "interrupted (signal SIGTERM)" in err
    rows = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert [(r["backend"], r["status"]) for r in rows] == [("baseline", "ok")]
    time.sleep(0.5)
    assert not pid_alive(child), "the hanging child outlived the interrupted run"


def test_ctrl_c_says_so_instead_of_empty_parentheses(tmp_path, testplugins_path):
    proc, _ = start_hanging_run(tmp_path, testplugins_path)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C at a terminal sends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "densebench: interrupted (Ctrl-C); completed rows are kept in" in err and "()" not in err
