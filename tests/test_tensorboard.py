"""TensorBoard, for real: one `densebench run --all --quick` (which profiles every row), read back with TensorBoard's
own event reader, served by the real `densebench tensorboard` (scalars and torch-tb-profiler), and screenshotted in
Chromium. The run is the core's acceptance run, made once per session (tests/conftest.py: ``quick_all_run``)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from densebench_core.testing import read_rows, run_densebench

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("shared_runs")]  # the shared quick run: one worker

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_SCRIPT = ROOT / "scripts" / "screenshot_scalars.py"
SERVER_START_S = 180  # TensorBoard start plus torch-tb-profiler parsing the traces, on a slow CI machine
SERVER_STOP_S = 20


def _chromium() -> str | None:
    for candidate in (os.environ.get("DENSEBENCH_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _profiler_missing() -> str | None:
    try:
        importlib.import_module("torch_tb_profiler")
    except Exception as exc:  # noqa: BLE001 - any import failure means the plugin cannot load
        return f"torch_tb_profiler is not importable ({type(exc).__name__}: {exc}); pip install torch-tb-profiler"
    return None


@pytest.fixture(scope="session")
def tb_run(quick_all_run):
    """One real `densebench run --all --quick`, profiled, batch sizes 1 and 2: (results dir, log dir, ok rows,
    run id). Tests here only read it (its log dir is written by nothing else)."""
    proc, rows, work = quick_all_run
    results, logs = work / "R", work / "L"
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {"baseline", "channels_last", "fp16"} <= {r["backend"] for r in ok}, proc.stdout + proc.stderr
    [run_id] = {r["run_id"] for r in rows}
    return results, logs, ok, run_id


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def _poll(url: str, accept, deadline: float, server: subprocess.Popen):
    """GET url until accept(json) is true; bounded by deadline; fails at once if the server died."""
    last = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`densebench tensorboard` exited early with {server.returncode}")
        try:
            last = _get_json(url)
            if accept(last):
                return last
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(1)
    pytest.fail(f"{url} did not answer as expected within the time limit; last answer: {last!r}")


@pytest.fixture(scope="module")
def served(tb_run, tmp_path_factory):
    """The real `densebench tensorboard` on free ports, bound to 127.0.0.1; always terminated afterwards.

    Yields (process, scalars port, profiler port, path of its output)."""
    _, logs, _, _ = tb_run
    port, profiler_port = _free_ports(2)
    output = tmp_path_factory.mktemp("tensorboard-server") / "output.txt"
    with output.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-c", "from densebench_core.cli import main; main()", "tensorboard",
             "--log-dir", str(logs), "--port", str(port), "--profiler-port", str(profiler_port)],
            stdout=sink, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    try:
        yield server, port, profiler_port, output
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # densebench stops both TensorBoards on SIGTERM
        try:
            server.wait(timeout=SERVER_STOP_S)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(server.pid, signal.SIGKILL)  # anything left in the group it was started in
        except ProcessLookupError:
            pass
        server.wait(timeout=SERVER_STOP_S)


# -- (a) TensorBoard's own event reader ---------------------------------------------------------------------


def test_event_reader_finds_the_scalar_tags_of_every_ok_row(tb_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, logs, ok, run_id = tb_run
    accumulator = EventAccumulator(str(logs / "scalars" / run_id), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for row in ok:
        prefix = f"{row['backend']}/{row['mode']}/bs{row['batch_size']}"
        names = ["latency_ms", "throughput_ips", "latency_p50_ms", "accuracy/cosine_sim", "accuracy/rel_err"]
        names += ["latency_p99_ms"] if row["latency_p99_ms"] else []  # reported from 100 samples only
        expected = [f"{prefix}/{name}" for name in names]
        expected.append(f"{row['backend']}/{row['mode']}/by_batch_size/throughput_ips")
        assert not set(expected) - tags, f"{prefix}: missing {sorted(set(expected) - tags)}"
        latencies = accumulator.Scalars(f"{prefix}/latency_ms")
        assert len(latencies) == int(row["iterations"])
        [throughput] = accumulator.Scalars(f"{prefix}/throughput_ips")
        assert throughput.value == pytest.approx(float(row["throughput_ips"]), rel=1e-5)
        curve = accumulator.Scalars(f"{row['backend']}/{row['mode']}/by_batch_size/throughput_ips")
        by_batch = {e.step: e.value for e in curve}
        assert by_batch[int(row["batch_size"])] == pytest.approx(float(row["throughput_ips"]), rel=1e-5)


def test_one_tensorboard_run_per_densebench_run_and_one_hparams_session_per_backend(tb_run):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    _, logs, ok, run_id = tb_run
    multiplexer = EventMultiplexer(size_guidance={"scalars": 0}).AddRunsFromDirectory(str(logs / "scalars"))
    multiplexer.Reload()
    runs = multiplexer.Runs()
    assert [r for r in runs if "/hparams/" not in r] == [run_id]
    sessions = {f"{run_id}/hparams/{r['backend']}/{r['mode']}" for r in ok}
    assert {r for r in runs if "/hparams/" in r} == sessions
    hparams = multiplexer.PluginRunToTagToContent("hparams")
    for session in sessions:
        assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams[session]), session
    assert "custom_scalars__config__" in multiplexer.PluginRunToTagToContent("custom_scalars")[run_id]
    row = ok[0]
    session = multiplexer.GetAccumulator(f"{run_id}/hparams/{row['backend']}/{row['mode']}")
    assert f"hparam/bs{row['batch_size']}/throughput_ips" in session.Tags()["scalars"]


def _training_run(tmp_path: Path, batch_size: str) -> tuple[Path, list[dict], str]:
    """fp16 then baseline in training mode: fp16 does not train (skipped); baseline fails at batch 1 (batch norm
    cannot train on one value per channel, the 1x1 map at 32 px) and is ok at batch 2. (log dir, rows, run id)"""
    logs = tmp_path / "logs"
    proc = run_densebench("run", "--backend", "fp16", "--backend", "baseline", "--mode", "training",
                          "--device", "cpu", "--batch-sizes", batch_size, "--image-size", "32", "--warmup", "1",
                          "--min-iters", "3", "--min-time", "0", "--no-profile", "--no-export",
                          "--output-dir", str(tmp_path / "results"), "--log-dir", str(logs), timeout=600)  # fmt: skip
    rows = read_rows(tmp_path / "results" / "benchmark_results.csv")
    assert proc.returncode == (1 if batch_size == "1" else 0), proc.stdout + proc.stderr[-2000:]
    [run_id] = {r["run_id"] for r in rows}
    return logs, rows, run_id


def test_a_run_without_an_ok_row_leaves_no_tensorboard_run(tmp_path):
    logs, rows, run_id = _training_run(tmp_path, "1")
    assert [r["status"] for r in rows] == ["skipped", "failed"]
    assert not (logs / "scalars" / run_id).exists()
    assert not (logs / "scalars").exists() or not any((logs / "scalars").iterdir())


def test_the_tensorboard_run_starts_at_the_first_ok_row(training_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    proc, results, logs = training_run  # as _training_run(..., "2") runs it, once per session (tests/conftest.py)
    rows = read_rows(results / "benchmark_results.csv")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    [run_id] = {r["run_id"] for r in rows}
    assert [(r["backend"], r["status"]) for r in rows] == [("fp16", "skipped"), ("baseline", "ok")]
    accumulator = EventAccumulator(str(logs / "scalars" / run_id))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "baseline/training/bs2/latency_ms" in tags and not [t for t in tags if t.startswith("fp16/")]
    assert (logs / "scalars" / run_id / "hparams" / "baseline" / "training").is_dir()


# -- (b) the real `densebench tensorboard` -----------------------------------------------------------------


def test_scalars_port_serves_the_run_and_its_tags(tb_run, served):
    _, _, ok, run_id = tb_run
    server, port, _, _ = served
    deadline = time.monotonic() + SERVER_START_S
    runs = _poll(f"http://127.0.0.1:{port}/data/runs", lambda r: run_id in r, deadline, server)
    assert all(r == run_id or r.startswith(f"{run_id}/hparams/") for r in runs)
    tags = _poll(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", lambda t: run_id in t, deadline, server)
    for row in ok:
        assert f"{row['backend']}/{row['mode']}/bs{row['batch_size']}/latency_ms" in tags[run_id]


def test_profiler_view_lists_one_run_per_profiled_backend(tb_run, served):
    missing = _profiler_missing()
    if missing:
        pytest.skip(missing)
    _, logs, ok, run_id = tb_run
    server, _, profiler_port, _ = served
    base = f"http://127.0.0.1:{profiler_port}/data/plugin/pytorch_profiler"
    expected = {f"{run_id}_{r['backend']}_{r['mode']}" for r in ok}
    answer = _poll(
        f"{base}/runs", lambda a: set(a.get("runs", [])) >= expected and not a.get("loading"),
        time.monotonic() + SERVER_START_S, server,
    )  # fmt: skip
    assert set(answer["runs"]) == expected
    for run in sorted(expected):
        sizes = {f"bs{r['batch_size']}" for r in ok if f"{run_id}_{r['backend']}_{r['mode']}" == run}
        assert {"Overview", "Operator", "Trace"} <= set(_get_json(f"{base}/views?run={run}"))
        assert set(_get_json(f"{base}/workers?run={run}&view=Overview")) == sizes
        worker = sorted(sizes)[0]
        [span] = _get_json(f"{base}/spans?run={run}&worker={worker}")
        overview = _get_json(f"{base}/overview?run={run}&worker={worker}&span={span}")
        assert overview["steps"]["rows"], run  # the profiled steps were parsed
        operators = _get_json(f"{base}/operation/table?run={run}&worker={worker}&span={span}&group_by=Operation")
        table = [op for rows in operators.values() if isinstance(rows, list) for op in rows]
        assert any(op.get("host_self_duration", 0) > 0 for op in table), run  # operators were parsed


def test_densebench_tensorboard_prints_the_urls(served):
    server, port, profiler_port, output = served
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and f":{port}/" not in output.read_text():
        time.sleep(0.5)
    seen = output.read_text()
    assert f"http://127.0.0.1:{port}/" in seen
    if not _profiler_missing():
        assert f"http://127.0.0.1:{profiler_port}/#pytorch_profiler" in seen


# -- (c) bad input -----------------------------------------------------------------------------------------


def _one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("densebench: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_tensorboard_on_a_missing_log_dir_is_bad_input():
    proc = run_densebench("tensorboard", "--log-dir", "/nonexistent", timeout=60)
    assert proc.returncode == 2
    assert "/nonexistent" in _one_error_line(proc)


def test_tensorboard_on_a_busy_port_is_bad_input(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        [other] = _free_ports(1)
        proc = run_densebench("tensorboard", "--log-dir", str(tmp_path), "--port", str(port),
                              "--profiler-port", str(other), timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert str(port) in _one_error_line(proc)


@pytest.mark.parametrize("port", ["0", "70000", "abc"])
def test_tensorboard_rejects_a_bad_port(tmp_path, port):
    proc = run_densebench("tensorboard", "--log-dir", str(tmp_path), "--port", port, timeout=60)
    assert proc.returncode == 2
    _one_error_line(proc)


def test_run_with_an_unwritable_log_dir_is_bad_input(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_densebench("run", "--backend", "baseline", "--device", "cpu", "--batch-sizes", "1",
                          "--image-size", "32", "--min-iters", "1", "--min-time", "0",
                          "--output-dir", str(tmp_path / "r"), "--log-dir", str(blocker / "logs"), timeout=120)
    assert proc.returncode == 2
    assert "a-file" in _one_error_line(proc)
    assert not (tmp_path / "r" / "benchmark_results.csv").exists()


# -- the scalars page in headless Chromium -------------------------------------------------------------------


def _screenshot(logs: Path, out: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [sys.executable, str(SCREENSHOT_SCRIPT), "--log-dir", str(logs), "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    return proc, summary


def test_headless_chromium_screenshot_of_the_scalars_page_shows_curves(tb_run, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (/usr/bin/chromium); CI installs it: apt-get install -y chromium")
    _, logs, _, _ = tb_run
    out = Path(os.environ.get("DENSEBENCH_SCREENSHOT_DIR", tmp_path)) / "tensorboard_scalars.png"
    proc, summary = _screenshot(logs, out, "--chromium", chromium)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["ok"] and out.is_file()
    assert summary["curve_columns"] >= 150 and summary["curve_pixels"] >= 400


def test_screenshot_check_fails_when_no_curve_is_drawn(tb_run, tmp_path):
    """The pixel check is not vacuous: summary scalars are single points (dots), which must not pass."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (/usr/bin/chromium); CI installs it: apt-get install -y chromium")
    _, logs, _, _ = tb_run
    proc, summary = _screenshot(logs, tmp_path / "dots.png", "--chromium", chromium,
                                "--tag-filter", "bs1/accuracy/cosine_sim$", "--attempts", "1")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary["ok"] is False and summary["header_orange_fraction"] > 0.5  # rendered, but no curves
