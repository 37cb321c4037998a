"""The bad option values users tried, with every plugin installed: each is one line of bad input (exit code 2),
found before any worker starts, with earlier results untouched."""

import pytest

from densebench_core.testing import read_rows, run_densebench

TINY = ["--device", "cpu", "--batch-sizes", "1", "--image-size", "32", "--min-iters", "3", "--min-time", "0",
        "--eval-images", "4", "--no-profile"]  # fmt: skip


@pytest.fixture(scope="module")
def earlier_results(tmp_path_factory):
    results = tmp_path_factory.mktemp("bad-options") / "r"
    proc = run_densebench("run", "--backend", "baseline", *TINY, "--output-dir", str(results),
                          "--log-dir", str(results.parent / "l"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return results


@pytest.mark.parametrize("backend, option, message", [
    ("compile", "compile.mode=bogus", "--backend-option compile.mode must be one of default, reduce-overhead, "
                                      "max-autotune, max-autotune-no-cudagraphs, not 'bogus'"),
    ("amp", "amp.dtype=int3", "--backend-option amp.dtype must be one of auto, fp16, bf16, not 'int3'"),
    ("jit", "jit.optimize=maybe", "--backend-option jit.optimize must be true or false, not 'maybe'"),
    ("compile", "compile.backend=eager", None),  # a good value: the same command is not refused
])  # fmt: skip
def test_bad_option_values_are_refused_before_any_worker(earlier_results, backend, option, message):
    csv_before = (earlier_results / "benchmark_results.csv").read_text()
    runs_before = sorted(p.name for p in (earlier_results / "runs").iterdir())
    proc = run_densebench("run", "--backend", backend, *TINY, "--backend-option", option,
                          "--output-dir", str(earlier_results), "--log-dir", str(earlier_results.parent / "l"))
    if message is None:
        assert proc.returncode == 0, proc.stderr
        assert [r["backend"] for r in read_rows(earlier_results / "benchmark_results.csv")] == [backend]
        return
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"densebench: error: {message}"]
    assert proc.stdout == ""
    assert (earlier_results / "benchmark_results.csv").read_text() == csv_before
    assert sorted(p.name for p in (earlier_results / "runs").iterdir()) == runs_before  # no run was started
