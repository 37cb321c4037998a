"""Crashes, hangs, exceptions and broken plugins become rows; the other rows are intact."""

import pytest
from conftest import TINY

from densebench_core.testing import read_rows, run_densebench


@pytest.fixture(scope="module")
def all_with_misbehaving(tmp_path_factory, testplugins_path):
    out = tmp_path_factory.mktemp("isolation")
    names = "identity_test,hang_test,abort_test,raise_test,broken_test,needs_missing_test"
    env = {"PYTHONPATH": str(testplugins_path), "DENSEBENCH_PLUGINS": names}
    # 45 s: the first row also calibrates the stand-in weights, which takes a while on a busy 2-core machine
    proc = run_densebench("run", "--all", *TINY, "--no-export", "--timeout", "45", "--output-dir", str(out / "r"),
                          "--log-dir", str(out / "l"), env=env)
    rows = {r["backend"]: r for r in read_rows(out / "r" / "benchmark_results.csv")}
    return proc, rows, out / "r"


def test_run_all_completes_with_exit_code_1(all_with_misbehaving):
    proc, rows, _ = all_with_misbehaving
    assert proc.returncode == 1, proc.stderr  # some runs failed, every result still written
    assert "Traceback" not in proc.stderr
    assert set(rows) >= {"baseline", "channels_last", "fp16", "identity_test", "hang_test", "abort_test",
                         "raise_test", "broken_test", "needs_missing_test"}


def test_hang_becomes_timeout(all_with_misbehaving):
    row = all_with_misbehaving[1]["hang_test"]
    assert row["status"] == "timeout"
    assert "45 s" in row["reason"] and "preparing" in row["reason"]


def test_abort_becomes_failed(all_with_misbehaving):
    row = all_with_misbehaving[1]["abort_test"]
    assert row["status"] == "failed"
    assert "SIGABRT" in row["reason"]


def test_crashed_and_killed_workers_leave_their_stacks_in_the_log_the_reason_names(all_with_misbehaving):
    """faulthandler: abort() dumps the stack; a timeout asks for the stacks (SIGUSR1) before the kill."""
    _, rows, results = all_with_misbehaving
    for name, phase, where, first in (("abort_test", "preparing", "abort.py", "Fatal Python error: Aborted"),
                                      ("hang_test", "preparing", "hang.py", "most recent call first")):  # fmt: skip
        reason = rows[name]["reason"]
        assert phase in reason, reason
        log = results / reason.split("(worker log: ")[1].rstrip(")")
        text = log.read_text()
        assert first in text and where in text and "in prepare_model" in text, text[-2000:]


def test_exception_becomes_failed_with_message(all_with_misbehaving):
    row = all_with_misbehaving[1]["raise_test"]
    assert row["status"] == "failed"
    assert "deliberate failure in run_step" in row["reason"]


def test_broken_and_missing_plugins_are_rows_with_reasons(all_with_misbehaving):
    rows = all_with_misbehaving[1]
    assert rows["broken_test"]["status"] == "failed"
    assert "deliberately broken" in rows["broken_test"]["reason"]
    assert rows["needs_missing_test"]["status"] == "skipped"
    assert "densebench_no_such_package" in rows["needs_missing_test"]["reason"]


def test_other_rows_are_intact(all_with_misbehaving):
    rows = all_with_misbehaving[1]
    for name in ("baseline", "channels_last", "fp16", "identity_test"):
        row = rows[name]
        assert row["status"] == "ok", row["reason"]
        assert float(row["latency_p50_ms"]) > 0 and float(row["throughput_ips"]) > 0
        assert float(row["cosine_sim"]) > 0.99
