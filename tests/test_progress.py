"""The progress display: on a terminal a bar with the running row's phase and elapsed time; plain lines otherwise."""

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from conftest import TINY

from densebench_core.job import Job
from densebench_core.progress import phase_words
from densebench_core.runner import _read_phase, run_isolated
from densebench_core.testing import run_densebench

#: the phases a worker goes through (``set_phase``), in order; "starting" is the runner's before the first one
WORKER_PHASES = ["starting", "loading plugins", "checking availability", "building model",
                 "computing the fp32 reference", "preparing", "warming up", "measuring", "checking accuracy",
                 "exporting", "profiling"]  # fmt: skip
#: one frame of the bar: rows done/total, the run's elapsed time, what is left, then the running row (if any)
BAR = re.compile(r"^(\d+)/(\d+) rows \|.{12}\| \d\d:\d\d elapsed, (\?|\d\d:\d\d) left \|(?: (.*))?$")


@pytest.mark.parametrize(
    "phase, words",
    [("preparing", "preparing (compiling)"), ("warming up", "warming up"), ("measuring", "measuring"),
     ("checking accuracy", "checking accuracy"), ("exporting", "exporting"), ("profiling", "profiling"),
     ("loading plugins", "loading plugins"), ("building model", "building model"), ("starting", "starting")],
)  # fmt: skip
def test_phase_in_user_words(phase, words):
    assert phase_words(phase) == words


def test_phase_file_read_keeps_the_last_phase_while_absent_or_mid_write(tmp_path):
    path = tmp_path / "job.phase"
    assert _read_phase(path, "starting") == "starting"  # not written yet
    path.write_text("")  # the worker's write_text truncates before it writes
    assert _read_phase(path, "building model") == "building model"
    path.write_text("measuring")
    assert _read_phase(path, "building model") == "measuring"


def test_runner_reports_a_real_workers_phases_in_order(tmp_path):
    seen = []
    job = Job(backend="baseline", members=["baseline"], mode="inference", batch_size=1, device="cpu",
              image_size=32, weights="random", warmup=1, min_iters=3, min_time=2.0, eval_images=8,
              timeout=600)  # fmt: skip
    result = run_isolated(job, tmp_path, on_wait=lambda phase, elapsed: seen.append((phase, elapsed)))
    assert result["status"] == "ok", result["reason"]
    phases = [phase for i, (phase, _) in enumerate(seen) if i == 0 or phase != seen[i - 1][0]]
    assert set(phases) <= set(WORKER_PHASES), phases  # never a half-written (empty) phase file
    assert [WORKER_PHASES.index(p) for p in phases] == sorted(WORKER_PHASES.index(p) for p in phases), phases
    assert len(set(phases)) == len(phases), phases  # each phase once: no stale phase coming back
    assert "measuring" in phases  # it lasts --min-time 2 s: several polls see it
    elapsed = [e for _, e in seen]
    assert elapsed == sorted(elapsed) and 0 < elapsed[-1] <= result["wall_s"]


def _frames(text: str) -> list[str]:
    """What a terminal shows, one piece per carriage return or line feed."""
    return [f.rstrip() for f in re.split(r"[\r\n]", text) if f.strip()]


def test_terminal_shows_bar_with_phase_and_elapsed_time(tmp_path, with_testplugins):
    """baseline measures for 2 s; hang_test never leaves "preparing": once the bar has shown that phase
    with two different elapsed times, the test kills the hanging worker, so the run ends with a failed row.
    A display that never shows it leaves the row to its --timeout, and the test fails."""
    pidfile = tmp_path / "hang.pid"
    env = {**os.environ, **with_testplugins, "DENSEBENCH_PLUGINS": "hang_test",
           "DENSEBENCH_TEST_PIDFILE": str(pidfile)}  # fmt: skip
    args = [*TINY, "--min-time", "2", "--timeout", "300"]  # the last --min-time wins
    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns
    proc = subprocess.Popen(
        [sys.executable, "-c", "from densebench_core.cli import main; main()", "run", "--backend", "baseline",
         "--backend", "hang_test", *args, "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l")],
        stdin=terminal, stdout=terminal, stderr=terminal, env=env,
    )  # fmt: skip
    os.close(terminal)
    preparing = re.compile(r"hang_test inference bs=1 \((\d\d:\d\d)\): preparing \(compiling\)")
    output, killed = b"", False
    deadline = time.monotonic() + 1800  # a safety net against a stuck run, not a measurement
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal is gone
                    break
                if not chunk:
                    break
                output += chunk
            shown = set(preparing.findall(output.decode(errors="replace")))
            if not killed and len(shown) >= 2 and pidfile.exists():  # the pid is written inside the hang
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
                killed = True
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text = output.decode(errors="replace")
    assert killed, text[-3000:]
    assert proc.returncode == 1, text[-3000:]  # the killed row is a failed row
    frames = _frames(text)
    bars = [BAR.match(f) for f in frames if " rows |" in f]
    assert bars and all(bars), [f for f in frames if " rows |" in f and not BAR.match(f)]
    running = [b.group(4) or "" for b in bars]
    assert any(re.fullmatch(r"baseline inference bs=1 \(\d\d:\d\d\): measuring", r) for r in running), running
    assert bars[-1].group(1, 2, 4) == ("2", "2", "done")
    # finished rows as whole lines above the bar
    assert any(f.startswith("[1/2] baseline inference bs=1: ok  p50 ") for f in frames), frames
    assert any(f.startswith("[2/2] hang_test inference bs=1: failed (worker process killed by signal SIGKILL "
                            "while preparing") for f in frames), frames  # fmt: skip


def test_not_a_terminal_one_plain_line_per_row(tmp_path):
    proc = run_densebench("run", "--backend", "baseline", "--backend", "channels_last", *TINY,
                          "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[0].startswith("[1/2] baseline inference bs=1: ok  p50 "), proc.stdout
    assert lines[1].startswith("[2/2] channels_last inference bs=1: ok  p50 "), proc.stdout
    assert lines[2].startswith("results: ") and lines[3].startswith("report: "), proc.stdout
    for stream in (proc.stdout, proc.stderr):
        assert "\r" not in stream and "\x1b" not in stream  # no redrawn line, no terminal control
        assert " rows |" not in stream and "█" not in stream  # no bar
