"""docs/deploying.md: each marked Python snippet loads a real artifact in a fresh interpreter and answers right.

One real run exports a ``jit`` ``.pt``, an ``fp16`` state dict and an ``aoti`` ``.pt2`` (CPU, batch 2, 32 px). Each
snippet marked ``<!-- deploy-test: KIND -->`` on the page is run as it stands, with ``python -c``, after only its
``path = ...``, ``image_size = ...`` and ``batch_size = ...`` values are replaced by the run's. Its printed top-5
classes and logits are held to the fp32 reference: densebench's model with the run's stand-in weights, eager,
on the same seeded input. ``trt`` is not covered (no TensorRT here), nor the C++ snippets.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densebench_core.testing import read_rows, run_densebench

PAGE = Path(__file__).resolve().parents[1] / "docs" / "deploying.md"
#: the kinds the page must mark, with the largest difference allowed from the fp32 reference on a logit (the
#: stand-in's logits have a standard deviation of about 1; measured: 6e-5 for jit and aoti, 0.07 for fp16)
TOLERANCE = {"jit": 1e-3, "aoti": 1e-3, "fp16": 0.15}
BATCH_SIZE, IMAGE_SIZE, SEED = 2, 32, 0
MARKER = re.compile(r"^<!-- deploy-test: (\S+) -->\s*$")
SNIPPET_TIMEOUT = 300


# -- the page -------------------------------------------------------------------------------------------------
def marked_snippets(text: str) -> dict[str, str]:
    """``{kind: code}`` of the Python code blocks right after a ``<!-- deploy-test: KIND -->`` line.

    Raises AssertionError for a marker not followed by a Python code block, a kind marked twice or one the test
    does not know, and a kind of :data:`TOLERANCE` left unmarked.
    """
    lines = text.splitlines()
    snippets: dict[str, str] = {}
    for number, line in enumerate(lines):
        found = MARKER.match(line)
        if not found:
            continue
        kind = found.group(1)
        if kind not in TOLERANCE:
            raise AssertionError(f"line {number + 1}: unknown kind {kind!r} (the test knows {sorted(TOLERANCE)})")
        if kind in snippets:
            raise AssertionError(f"line {number + 1}: {kind} is marked twice")
        if number + 1 >= len(lines) or lines[number + 1].strip() != "```python":
            raise AssertionError(f"line {number + 1}: the {kind} marker is not right before a ```python block")
        end = next((i for i in range(number + 2, len(lines)) if lines[i].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"line {number + 1}: the {kind} code block is not closed")
        snippets[kind] = "\n".join(lines[number + 2:end]) + "\n"
    missing = sorted(set(TOLERANCE) - set(snippets))
    if missing:
        raise AssertionError(f"no snippet marked for {', '.join(missing)} "
                             "(<!-- deploy-test: KIND --> right before its block)")
    return snippets


#: the lines the test sets: ``name = value`` at the start of a line, an optional comment after
SETTINGS = {
    "path": re.compile(r'^(path = )"[^"\n]*"(.*)$', re.MULTILINE),
    "image_size": re.compile(r"^(image_size = )\d+(.*)$", re.MULTILINE),
    "batch_size": re.compile(r"^(batch_size = )\d+(.*)$", re.MULTILINE),
}


def with_settings(code: str, kind: str, **values) -> str:
    """The snippet with the values of its ``path``, ``image_size`` and ``batch_size`` lines replaced; each line
    must be there exactly once (a string for ``path``, a whole number for the others)."""
    for name, pattern in SETTINGS.items():
        count = len(pattern.findall(code))
        if count != 1:
            raise AssertionError(f"the {kind} snippet has {count} lines `{name} = ...`, it needs exactly one "
                                 f"(`{pattern.pattern}`)")  # fmt: skip
        value = repr(str(values[name])) if name == "path" else str(int(values[name]))
        code = pattern.sub(lambda m, value=value: m.group(1) + value + m.group(2), code)
    return code


# -- the answers ----------------------------------------------------------------------------------------------
def printed(stdout: str) -> dict[str, object]:
    """The values of the snippet's ``shape:``, ``top-5 classes:`` and ``top-5 logits:`` lines."""
    values = {}
    for label in ("shape", "top-5 classes", "top-5 logits"):
        found = [line for line in stdout.splitlines() if line.startswith(f"{label}:")]
        if len(found) != 1:
            raise AssertionError(f"the snippet printed {len(found)} lines `{label}: ...`, expected one:\n{stdout}")
        values[label] = ast.literal_eval(found[0].split(":", 1)[1].strip())
    return values


def check_answers(stdout: str, reference: torch.Tensor, tolerance: float) -> None:
    """The printed top-5 are the reference's: the printed logit of each class within ``tolerance`` of the
    reference's logit of that class, and those classes the reference's top 5 (their reference logits within
    ``2 * tolerance`` of the reference's five largest, so that close classes may swap places in fp16)."""
    values = printed(stdout)
    if tuple(values["shape"]) != tuple(reference.shape):
        raise AssertionError(f"output shape {values['shape']}, expected {tuple(reference.shape)}")
    classes, logits = values["top-5 classes"], values["top-5 logits"]
    best = reference.topk(5, dim=1).values
    for image in range(reference.shape[0]):
        if len(classes[image]) != 5 or len(logits[image]) != 5:
            raise AssertionError(f"image {image}: expected 5 classes and 5 logits, got {classes[image]}, "
                                 f"{logits[image]}")
        truth = reference[image, classes[image]]
        printed_error = (torch.tensor(logits[image], dtype=truth.dtype) - truth).abs().max().item()
        if printed_error > tolerance:
            raise AssertionError(f"image {image}: logits {logits[image]} of classes {classes[image]} differ from the "
                                 f"reference's {truth.tolist()} by up to {printed_error:.3g} > {tolerance:g}")
        rank_error = (truth.sort(descending=True).values - best[image]).abs().max().item()
        if rank_error > 2 * tolerance:
            raise AssertionError(f"image {image}: classes {classes[image]} are not the reference's top 5 "
                                 f"{reference[image].topk(5).indices.tolist()} (their logits differ by up to "
                                 f"{rank_error:.3g})")


def run_snippet(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """The code in a fresh interpreter (``python -c``), as a user would run the page's program."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=SNIPPET_TIMEOUT)  # fmt: skip


def failure(proc: subprocess.CompletedProcess) -> str:
    return f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr (end):\n{proc.stderr[-3000:]}"


# -- the run --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One real run exporting the three kinds; ``(artifacts {kind: absolute path}, fp32 reference logits)``."""
    out = tmp_path_factory.mktemp("deploying")
    results = out / "R"
    proc = run_densebench(
        "run", "--backend", "jit", "--backend", "fp16", "--backend", "aoti", "--device", "cpu", "--quick",
        "--batch-sizes", str(BATCH_SIZE), "--image-size", str(IMAGE_SIZE), "--weights", "random", "--seed", str(SEED),
        "--min-iters", "2", "--min-time", "0", "--no-profile", "--eval-images", "4",
        "--output-dir", str(results), "--log-dir", str(out / "L"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = {row["backend"]: row for row in read_rows(results / "benchmark_results.csv")}
    artifacts = {}  # {kind: path}, or {kind: why not} for a backend unavailable here (aoti without a C++ compiler)
    for kind in TOLERANCE:
        row = rows[kind]
        if row["status"] == "skipped":
            artifacts[kind] = row["reason"]
            continue
        assert row["status"] == "ok" and row["artifact_path"], (kind, row["reason"], row["notes"])
        artifacts[kind] = results / row["artifact_path"]  # relative to the results folder, as the page says
        assert artifacts[kind].is_file(), artifacts[kind]

    from densebench_core.model import build_model

    work = results / "runs" / rows["jit"]["run_id"] / "work"
    assert (work / f"standin_seed{SEED}_{IMAGE_SIZE}px.pt").is_file()  # the weights the run's artifacts hold
    model = build_model("random", SEED, IMAGE_SIZE, work)
    torch.manual_seed(0)  # the input every snippet builds
    x = torch.randn(BATCH_SIZE, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        reference = model(x).double()
    return artifacts, reference


@pytest.fixture(scope="module")
def snippets():
    return marked_snippets(PAGE.read_text())


# -- the tests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(TOLERANCE))
def test_page_snippet_loads_the_artifact_in_a_fresh_interpreter_and_answers_like_fp32(kind, snippets, exported,
                                                                                       tmp_path):
    artifacts, reference = exported
    if isinstance(artifacts[kind], str):
        pytest.skip(f"the {kind} row was skipped: {artifacts[kind]}")
    code = with_settings(snippets[kind], kind, path=artifacts[kind], image_size=IMAGE_SIZE, batch_size=BATCH_SIZE)
    proc = run_snippet(code, tmp_path)
    assert proc.returncode == 0, f"the page's {kind} snippet failed: {failure(proc)}"
    check_answers(proc.stdout, reference, TOLERANCE[kind])


def test_page_snippet_fails_on_a_damaged_artifact(snippets, exported, tmp_path):
    """The harness sees a snippet fail: the page's jit snippet, which loads the run's .pt (the test above), on a
    truncated copy of it fails to read the file."""
    artifacts, _ = exported
    damaged = tmp_path / "jit.pt"
    damaged.write_bytes(artifacts["jit"].read_bytes()[: artifacts["jit"].stat().st_size // 2])
    proc = run_snippet(with_settings(snippets["jit"], "jit", path=damaged, image_size=IMAGE_SIZE,
                                     batch_size=BATCH_SIZE), tmp_path)  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    assert "failed reading zip archive" in proc.stderr, failure(proc)
    assert "top-5 logits:" not in proc.stdout


def test_page_marks_exactly_the_tested_kinds_and_each_sets_path_image_size_and_batch_size(snippets):
    assert set(snippets) == set(TOLERANCE)
    for kind, code in snippets.items():
        with_settings(code, kind, path="/x/y.pt", image_size=IMAGE_SIZE, batch_size=BATCH_SIZE)
        compile(code, f"<{kind} snippet>", "exec")  # a complete program: at least it parses


PAGE_OK = """\
<!-- deploy-test: jit -->
```python
path = "a.pt"  # a comment
image_size = 224
batch_size = 2
```
<!-- deploy-test: aoti -->
```python
path = "b.pt2"
image_size = 224
batch_size = 2
```
<!-- deploy-test: fp16 -->
```python
path = "c.pt"
image_size = 224
batch_size = 2
```
"""


@pytest.mark.parametrize("page, message", [
    (PAGE_OK.replace("<!-- deploy-test: fp16 -->\n", ""), "no snippet marked for fp16"),
    (PAGE_OK.replace("<!-- deploy-test: aoti -->\n", "<!-- deploy-test: aoti -->\n\n"), "not right before"),
    (PAGE_OK.replace("deploy-test: aoti", "deploy-test: jti"), "unknown kind 'jti'"),
    (PAGE_OK.replace("deploy-test: aoti", "deploy-test: jit"), "jit is marked twice"),
])  # fmt: skip
def test_page_check_refuses_a_missing_or_misplaced_marker(page, message):
    with pytest.raises(AssertionError, match=message):
        marked_snippets(page)


def test_settings_are_replaced_and_a_snippet_without_one_is_refused():
    code = marked_snippets(PAGE_OK)["jit"]
    assert with_settings(code, "jit", path="/r/m/jit.pt", image_size=32, batch_size=2) == (
        "path = '/r/m/jit.pt'  # a comment\nimage_size = 32\nbatch_size = 2\n"
    )
    with pytest.raises(AssertionError, match="has 0 lines `path = ...`"):
        with_settings(code.replace('path = "a.pt"', 'PATH = "a.pt"'), "jit", path="p", image_size=32, batch_size=2)
    with pytest.raises(AssertionError, match="has 2 lines `batch_size = ...`"):
        with_settings(code + "batch_size = 4\n", "jit", path="p", image_size=32, batch_size=2)


def test_answer_check_refuses_wrong_answers():
    reference = torch.randn(2, 1000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ranked = reference.argsort(dim=1, descending=True)

    def output(classes, logits, shape=(2, 1000)):
        return f"shape: {shape}\ntop-5 classes: {classes.tolist()}\ntop-5 logits: {logits.tolist()}\n"

    top5 = ranked[:, :5]
    check_answers(output(top5, reference.gather(1, top5) + 1e-4), reference, 1e-3)  # right, within the tolerance
    with pytest.raises(AssertionError, match="differ from the reference's"):  # the right classes, logits 10x off
        check_answers(output(top5, reference.gather(1, top5) + 0.01), reference, 1e-3)
    with pytest.raises(AssertionError, match="differ from the reference's"):  # the images' answers swapped
        check_answers(output(top5.flip(0), reference.gather(1, top5).flip(0)), reference, 0.15)
    next5 = ranked[:, 5:10]  # true logits, but not of the top 5 classes
    with pytest.raises(AssertionError, match="not the reference's top 5"):
        check_answers(output(next5, reference.gather(1, next5)), reference, 1e-3)
    with pytest.raises(AssertionError, match="output shape"):
        check_answers(output(top5, reference.gather(1, top5), shape=(1, 1000)), reference, 1e-3)
    with pytest.raises(AssertionError, match="printed 0 lines `top-5 classes"):
        check_answers("shape: (2, 1000)\n", reference, 1e-3)
