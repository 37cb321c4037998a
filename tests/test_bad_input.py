"""Every bad input: one clear line on stderr, exit code 2, no traceback, nothing already written lost."""

import pytest
import torch
from conftest import TINY

from densebench_core.testing import run_densebench


def assert_bad_input(proc, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--backend", "nosuch"], ["unknown backend 'nosuch'", "baseline", "channels_last", "fp16"]),
        (["--backend", "baseline", "--batch-sizes", "0"], ["at least 1"]),
        (["--backend", "baseline", "--batch-sizes", "-4"], ["at least 1"]),
        (["--backend", "baseline", "--batch-sizes", "abc"], ["'abc'", "whole number"]),
        (["--backend", "baseline", "--batch-sizes", "1,,2"], ["whole number"]),
        (["--backend", "baseline", "--weights", "/nonexistent/w.pt"], ["weights file not found"]),
        (["--backend", "baseline", "--image-size", "8"], ["--image-size"]),
        (["--backend", "baseline", "--mode", "sideways"], ["--mode"]),
        (["--backend", "channels_last+fp16+channels_last"], ["twice"]),
        (["--backend", "baseline", "--backend-option", "nonsense"], ["BACKEND.KEY=VALUE"]),
        (["--backend", "baseline", "--min-iters", "0"], ["--min-iters"]),
        ([], ["--backend", "--all"]),
        (["--all", "--backend", "fp16"], ["not both"]),
        (["--backend", "baseline", "--no-such-flag"], ["--no-such-flag"]),
        (["--backend", "baseline", "--warmup", "many"], ["many"]),
    ],
)
def test_bad_run_arguments(tmp_path, args, words):
    proc = run_densebench("run", *args, "--output-dir", str(tmp_path / "r"))
    assert_bad_input(proc, *words)
    assert not (tmp_path / "r" / "benchmark_results.csv").exists()


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_densebench("run", "--backend", "baseline", *TINY, "--output-dir", str(blocker / "r"))
    assert_bad_input(proc, "cannot write to directory")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path):
    proc = run_densebench("run", "--backend", "baseline", "--device", "cuda", "--output-dir", str(tmp_path))
    assert_bad_input(proc, "no CUDA GPU")


def test_bad_input_keeps_what_was_written(tmp_path):
    good = run_densebench("run", "--backend", "baseline", *TINY, "--output-dir", str(tmp_path / "r"),
                          "--log-dir", str(tmp_path / "l"))
    assert good.returncode == 0, good.stderr
    before = (tmp_path / "r" / "benchmark_results.csv").read_text()
    bad = run_densebench("run", "--backend", "nosuch", "--output-dir", str(tmp_path / "r"))
    assert_bad_input(bad, "unknown backend")
    assert (tmp_path / "r" / "benchmark_results.csv").read_text() == before
    assert len(list((tmp_path / "r" / "runs").iterdir())) == 1


def test_bare_command_prints_help_and_unknown_command_is_bad_input():
    bare = run_densebench()
    assert bare.returncode == 0 and "Commands:" in bare.stdout and bare.stderr == ""
    assert_bad_input(run_densebench("nosuch"), "No such command")
