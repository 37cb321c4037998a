"""Accuracy that sees errors: stand-in weights whose answers depend on the input, an evaluation set run through
each backend, and a verdict (``accuracy_ok``) that fails wrong backends and passes right ones."""


import pytest
import torch

from densebench_core import accuracy
from densebench_core.model import build_model, make_inputs
from densebench_core.testing import read_rows, run_densebench


def answer_quality(model, image_size: int, images: int = 256) -> tuple[int, float]:
    """(distinct top-1 classes, mean cosine between different images' logits) over seeded images."""
    inputs = make_inputs(images, image_size, 0, stream="evaluation")
    with torch.no_grad():
        logits = torch.cat([model(batch) for batch in inputs.split(32)])
    unit = torch.nn.functional.normalize(logits.double(), dim=1)
    cosines = unit @ unit.T
    off_diagonal = cosines[~torch.eye(images, dtype=torch.bool)]
    return len(logits.argmax(1).unique()), float(off_diagonal.mean())


@pytest.mark.parametrize("image_size", [32, 64])
def test_standin_weights_answer_differently_for_different_images(image_size):
    classes, cosine = answer_quality(build_model("random", 0, image_size), image_size)
    assert classes >= 50 and cosine <= 0.9, (classes, cosine)


def test_plain_random_weights_are_the_blind_case_the_calibration_fixes():
    from torchvision.models import densenet121

    torch.manual_seed(0)
    classes, cosine = answer_quality(densenet121().eval(), 32)
    assert classes < 50 and cosine > 0.9, (classes, cosine)  # every image gets nearly the same answer


def test_standin_weights_are_deterministic_and_leave_batchnorm_for_training_as_usual():
    a, b = build_model("random", 0, 32), build_model("random", 0, 32)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_model("random", 1, 32)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert all(m.momentum == 0.1 for m in a.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_rel_err_top1_and_judgement_on_known_answers():
    reference = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 0.0]])
    same = accuracy.compare(reference.clone(), reference)
    assert same["rel_err"] == 0 and same["top1_agree"] == 1 and same["eval_images"] == 4
    spread = float((reference - reference.mean(0)).norm())
    scaled = accuracy.compare(reference * 1.5, reference)
    assert scaled["rel_err"] == pytest.approx(0.5 * float(reference.norm()) / spread)
    assert scaled["top1_agree"] == 1
    rolled = accuracy.compare(reference.roll(1, 0), reference)
    assert rolled["top1_agree"] == 0.25
    assert accuracy.judge(same, "fp32") == (True, None)
    ok, why = accuracy.judge(scaled, "bf16")
    assert not ok and "rel_err" in why and "bf16" in why


def test_tolerance_class_follows_the_arithmetic():
    assert accuracy.arithmetic("amp-bf16", "cpu") == "bf16"
    assert accuracy.arithmetic("fp16", "cuda") == "fp16" and accuracy.arithmetic("amp-fp16", "cpu") == "fp16"
    assert accuracy.arithmetic("fp32", "cpu") == "fp32"
    assert accuracy.arithmetic(None, "cpu") == "fp32"


@pytest.mark.parametrize("images, batch, expected", [(64, 4, 64), (64, 5, 65), (64, 256, 256), (1, 1, 1)])
def test_the_evaluation_set_is_whole_batches(images, batch, expected):
    batches = accuracy.evaluation_batches(images, batch, 32, 0)
    assert sum(len(b) for b in batches) == expected and all(len(b) == batch for b in batches)
    timed = make_inputs(batch, 32, 0)
    assert not torch.equal(batches[0], timed)  # separate from the timed batch


@pytest.fixture(scope="module")
def accuracy_run(tmp_path_factory, testplugins_path):
    out = tmp_path_factory.mktemp("accuracy")
    proc = run_densebench(
        "run", "--backend", "rolled_test", "--backend", "scaled_test", "--backend", "fp16", "--backend",
        "channels_last", "--backend", "identity_test", "--device", "cpu", "--batch-sizes", "4", "--image-size", "32",
        "--warmup", "1", "--min-iters", "3", "--min-time", "0", "--eval-images", "64", "--no-profile", "--no-export",
        "--output-dir", str(out / "r"), "--log-dir", str(out / "l"),
        env={"PYTHONPATH": str(testplugins_path), "DENSEBENCH_PLUGINS": "rolled_test,scaled_test,identity_test"},
    )  # fmt: skip
    return proc, {r["backend"]: r for r in read_rows(out / "r" / "benchmark_results.csv")}, out


def test_wrong_backends_fail_the_accuracy_check_and_right_ones_pass(accuracy_run):
    proc, rows, _ = accuracy_run
    assert proc.returncode == 0, proc.stderr  # an accuracy failure is a finding about the backend, not a crash
    assert all(r["status"] == "ok" for r in rows.values()), rows
    assert float(rows["rolled_test"]["top1_agree"]) < 0.5
    assert rows["rolled_test"]["accuracy_ok"] == "false" and rows["scaled_test"]["accuracy_ok"] == "false"
    assert float(rows["scaled_test"]["top1_agree"]) == 1.0  # right classes, wrong answers: rel_err sees it
    for name in ("fp16", "channels_last", "identity_test"):
        assert rows[name]["accuracy_ok"] == "true", rows[name]
        assert int(rows[name]["eval_images"]) == 64
    assert "outside the fp32 accuracy tolerance" in rows["scaled_test"]["notes"]


def test_the_report_lists_every_row_that_fails_and_never_recommends_it(accuracy_run):
    _, _, out = accuracy_run
    report = (out / "r" / "report.md").read_text()
    section = report.split("### Accuracy check", 1)[1].split("###", 1)[0]
    assert "`rolled_test`" in section and "`scaled_test`" in section and "`fp16`" not in section
    choose = report.split("### Which to choose", 1)[1].split("## ", 1)[0]
    assert "rolled_test" not in choose and "scaled_test" not in choose


def test_a_run_calibrates_the_standin_once_and_its_workers_share_it(tmp_path):
    first = build_model("random", 0, 32, cache_dir=tmp_path)
    saved = tmp_path / "standin_seed0_32px.pt"
    assert saved.is_file()
    saved_state = torch.load(saved, weights_only=True)
    # the next worker loads the file instead of calibrating: change it, and the change shows
    saved_state["classifier.bias"] += 1.0
    torch.save(saved_state, saved)
    second = build_model("random", 0, 32, cache_dir=tmp_path)
    assert torch.equal(second.classifier.bias, first.classifier.bias + 1.0)
    assert not (tmp_path / "standin_seed1_32px.pt").exists()  # another seed is its own file
