"""Every bad input: one clear line on stderr, exit code 2, no traceback, nothing already written lost."""

import shutil

import pytest
import torch
from conftest import TINY

from densebench_core.testing import read_rows, run_densebench


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
        (["--backend", "baseline", "--timeout", "0"], ["--timeout must be > 0, not 0"]),
        (["--backend", "baseline", "--min-time", "-1"], ["--min-time must be >= 0, not -1"]),
        (["--backend", "baseline", "--min-time", "5", "--max-time", "1"], ["--max-time", "--min-time"]),
        (["--backend", "baseline", "--eval-images", "0"], ["--eval-images must be >= 1"]),
        (["--backend", "baseline", "--ci-target", "0"], ["--ci-target must be > 0"]),
        (["--backend", "fp16", "--backend-option", "fp16.level=3"], ["backend 'fp16' has no option 'level'"]),
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


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One good run, shared by the tests of good input and of bad input after a good run: (process, folder).

    Its input is good in two ways the tests below check: ``--weights`` names a real DenseNet-121 state dict
    (accepted), and ``--backend-option`` sets an option of a backend that is not in the run (a warning, not an
    error). Its results folder is the earlier run that bad input must leave as it is."""
    from densebench_core.model import build_model

    folder = tmp_path_factory.mktemp("earlier")
    weights = folder / "mine.pt"
    torch.save({"state_dict": build_model("random", 5, 32).state_dict()}, weights)
    proc = run_densebench("run", "--backend", "baseline", *TINY, "--weights", str(weights),
                          "--backend-option", "fp16.nothing=1", "--output-dir", str(folder / "r"),
                          "--log-dir", str(folder / "l"))  # fmt: skip
    return proc, folder


@pytest.fixture(scope="module")
def earlier_run(good_run):
    """A results folder holding one good run, which bad input must leave as it is."""
    proc, folder = good_run
    assert proc.returncode == 0, proc.stderr
    return folder


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    """Files a user might pass as --weights by mistake, each of a kind densebench must refuse up front."""
    from torchvision.models import densenet121, resnet18

    folder = tmp_path_factory.mktemp("weights")
    (folder / "notes.txt").write_text("these are not weights\n")
    scripted = torch.jit.trace(torch.nn.Linear(2, 2), torch.ones(1, 2))
    torch.jit.save(scripted, str(folder / "model.pt"))
    torch.save(resnet18().state_dict(), folder / "resnet18.pt")
    torch.save(densenet121(num_classes=10).state_dict(), folder / "densenet_10_classes.pt")
    torch.save({"weights": [1, 2, 3]}, folder / "not_tensors.pt")
    return folder


@pytest.mark.parametrize("name, words", [
    ("notes.txt", ["notes.txt", "cannot be loaded as a state dict with weights_only=True", "not a file torch.save"]),
    ("model.pt", ["model.pt", "TorchScript archive, not a state dict"]),
    ("resnet18.pt", ["not a DenseNet-121 state dict", "missing"]),
    ("densenet_10_classes.pt", ["not a DenseNet-121 state dict", "classifier.weight", "(10, 1024)"]),
    ("not_tensors.pt", ["not a state dict of tensors"]),
    (".", ["is a directory"]),
])  # fmt: skip
def test_bad_weights_files_are_refused_before_any_worker(earlier_run, bad_weights, name, words):
    results = earlier_run / "r"
    before = (results / "benchmark_results.csv").read_text()
    proc = run_densebench("run", "--backend", "baseline", *TINY, "--weights", str(bad_weights / name),
                          "--output-dir", str(results), "--log-dir", str(earlier_run / "l"))
    assert_bad_input(proc, *words)
    assert "unsafe" not in proc.stderr and "weights_only=False" not in proc.stderr  # never advise loading unsafely
    assert (results / "benchmark_results.csv").read_text() == before
    assert len(list((results / "runs").iterdir())) == 1  # no run was started
    assert proc.stdout == ""


def test_a_real_densenet_state_dict_is_accepted(good_run):
    proc, folder = good_run  # --weights: a real DenseNet-121 state dict, saved as {"state_dict": ...}
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(folder / "r" / "benchmark_results.csv")
    assert row["status"] == "ok" and row["weights"].endswith("mine.pt"), row  # measured with those weights


def test_options_for_a_backend_not_in_the_run_get_a_warning(good_run):
    proc, _ = good_run  # --backend-option fp16.nothing=1, and no fp16 in the run
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ("densebench: warning: --backend-option fp16.nothing ignored: backend 'fp16' "
                                   "is not in this run")


def test_a_file_as_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_densebench("run", "--backend", "baseline", *TINY, "--output-dir", str(blocker))
    assert_bad_input(proc, "a-file is a file, not a directory")
    assert blocker.read_text() == "not a directory"


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_densebench("run", "--backend", "baseline", *TINY, "--output-dir", str(blocker / "r"))
    assert_bad_input(proc, "cannot write to directory")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu(tmp_path):
    proc = run_densebench("run", "--backend", "baseline", "--device", "cuda", "--output-dir", str(tmp_path))
    assert_bad_input(proc, "no CUDA GPU")


def test_bad_input_keeps_what_was_written(tmp_path, earlier_run):
    shutil.copytree(earlier_run / "r", tmp_path / "r")  # a good run's folder, a copy of its own to write into
    before = (tmp_path / "r" / "benchmark_results.csv").read_text()
    bad = run_densebench("run", "--backend", "nosuch", "--output-dir", str(tmp_path / "r"))
    assert_bad_input(bad, "unknown backend")
    assert (tmp_path / "r" / "benchmark_results.csv").read_text() == before
    assert len(list((tmp_path / "r" / "runs").iterdir())) == 1


def test_bare_command_prints_help_and_unknown_command_is_bad_input():
    bare = run_densebench()
    assert bare.returncode == 0 and "Commands:" in bare.stdout and bare.stderr == ""
    assert_bad_input(run_densebench("nosuch"), "No such command")
