"""The plugin author kit: pytest fixtures and a contract suite every backend plugin's tests subclass.

Installed as a pytest plugin (entry point ``pytest11``), so the fixtures are available in any test session
where densebench-core is installed::

    from densebench_core.testing import BackendContractSuite

    class TestMyBackend(BackendContractSuite):
        backend = "my_backend"

The suite holds every plugin to one contract: it is discovered, describes itself, runs in every mode it
claims on the CPU (or is skipped with a reason), answers like the fp32 baseline on a seeded evaluation set
(``accuracy_ok``: within the tolerance of its arithmetic, at batch size 4 so that a backend mixing up the images of
a batch is caught), exports what it promises, and measures end to end through the real ``densebench run`` in a
child process. What the core checks on every row, the suite therefore checks too: hook names and parameters
(a typo, a default value), every hook's return value, the output's shape and its dtype against ``ctx.precision``,
and that a training step changes the weights. Every run of the suite uses a batch of at least 2 images.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from densebench_core.backend import STAGES, BackendInfo
from densebench_core.benchmark import MODES
from densebench_core.job import Job
from densebench_core.plugins import build_registry, hook_names, missing_requirements

#: images in the accuracy check of the kit's in-process runs: enough to see a wrong answer, quick on a CPU
EVAL_IMAGES = 64


def run_densebench(*args: str, env: dict[str, str] | None = None, timeout: float = 900, cwd=None):
    """Run the real ``densebench`` CLI in a child process; returns the CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-c", "from densebench_core.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as a results CSV with the contract's columns (missing cells empty), values as given."""
    from densebench_core.schema import COLUMNS

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
    return path


def tiny_model():
    """A seeded conv-BN-ReLU-pool-linear network in eval mode: compiles and traces in seconds on a CPU."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    ).eval()  # fmt: skip


def densenet_with_bn_statistics():
    """DenseNet-121 (eval mode) whose BatchNorms have non-trivial running statistics and affine terms, as after
    training, so that a backend folding or fusing BatchNorm is checked on arithmetic that does not cancel out."""
    import torch

    from densebench_core.model import build_model

    model = build_model("random", 0, 32)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def run_in_process(backend: str, *, mode: str = "inference", batch_size: int = 2, image_size: int = 32,
                   models_dir: Path | None = None, options: dict | None = None,
                   eval_images: int = EVAL_IMAGES) -> dict[str, Any]:
    """Run one job through the worker's code path in this process (fast; no isolation).

    :param options: ``{backend: {key: value}}`` as on the command line; parsed as ``densebench run`` parses them
        (a bad key or value raises :class:`~densebench_core.options.OptionError`).
    """
    from densebench_core import worker
    from densebench_core.backend import parse_recipe
    from densebench_core.options import resolve_recipe

    registry = build_registry()
    members = parse_recipe(backend, registry.infos())
    job = Job(
        backend=backend, members=members, mode=mode, batch_size=batch_size, device="cpu", image_size=image_size,
        weights="random", warmup=1, min_iters=2, min_time=0.0, eval_images=eval_images,
        options=resolve_recipe(members, registry.infos(), options or {}),
        export=models_dir is not None, models_dir=str(models_dir) if models_dir else None,
    )  # fmt: skip
    try:
        return worker.Worker(job, set_phase=lambda phase: None, publish=lambda result: None).run()
    except worker.Skip as exc:
        return {"status": "skipped", "reason": str(exc)}


def make_context(backend: str, options: dict | None = None, *, device: str = "cpu", mode: str = "inference",
                 batch_size: int = 2, image_size: int = 32, warmup: int = 1, members: list[str] | None = None):
    """A RunContext for calling one backend's hooks directly in a unit test.

    ``options`` (``{key: value}`` for ``backend``) are parsed as ``densebench run`` parses them, defaults filled in,
    for every installed member; a bad key or value raises :class:`~densebench_core.options.OptionError`.
    """
    import torch

    from densebench_core.context import RunContext
    from densebench_core.options import resolve_recipe

    members = members or [backend]
    infos = build_registry().infos()
    resolved = resolve_recipe(members, infos, {backend: options} if options else {})
    if options and backend not in infos:  # a backend under construction: its options as given
        resolved[backend] = dict(options)
    job = Job(backend=backend, members=members, mode=mode, batch_size=batch_size, device=device,
              image_size=image_size, warmup=warmup, options=resolved)
    return RunContext(job=job, device=torch.device(device))


def refuses_options(backend: str, cases: list[tuple[dict, str]]):
    """A test that each ``(options, message)`` of ``cases`` is refused while ``backend``'s options are parsed, with
    an :class:`~densebench_core.options.OptionError` matching ``message``. In a plugin's tests::

        test_bad_options_are_refused_while_parsing = refuses_options("amp", [
            ({"dtype": "int8"}, "amp.dtype must be one of auto, fp16, bf16, not 'int8'"),
        ])
    """
    from densebench_core.options import OptionError

    @pytest.mark.parametrize("options, message", cases)
    def test(options, message):
        with pytest.raises(OptionError, match=message):
            make_context(backend, options)

    return test


def run_with_options(backend: str, tmp_path: Path, *options: str):
    """``densebench run --backend BACKEND`` once on a tiny CPU setting with ``--backend-option`` values.

    :return: (CompletedProcess, rows of the CSV).
    """
    args = [a for option in options for a in ("--backend-option", option)]
    proc = run_densebench(
        "run", "--backend", backend, "--device", "cpu", "--quick", "--batch-sizes", "1", "--image-size", "32",
        "--no-profile", *args, "--output-dir", str(tmp_path / "results"), "--log-dir", str(tmp_path / "logs"),
    )  # fmt: skip
    csv_path = tmp_path / "results" / "benchmark_results.csv"
    return proc, read_rows(csv_path) if csv_path.exists() else []


def _invalid_value(option) -> str | None:
    """A value ``option`` must refuse, or None when it takes any text."""
    from densebench_core.options import OptionError

    for candidate in ("maybe", "not-a-number", "no-such-choice", "-1e9", ""):
        try:
            option.parse(candidate)
        except OptionError:
            return candidate
    return None


@pytest.fixture
def densebench_registry():
    """A freshly built plugin registry (built-ins plus installed entry points)."""
    return build_registry()


@pytest.fixture
def densebench_cli():
    """The real CLI in a child process: ``densebench_cli("plugins", "--json")``."""
    return run_densebench


class BackendContractSuite:
    """Subclass and set ``backend``; every plugin is held to these tests."""

    backend: str = ""
    image_size: int = 32
    #: the batch size of the accuracy check: several images, so that answers given to the wrong image are seen
    batch_size: int = 4
    #: training needs a batch of at least 2 (batch norm)
    training_batch_size: int = 2

    # -- helpers --------------------------------------------------------------------------------------
    def entry(self):
        registry = build_registry()
        assert self.backend in registry.entries, f"{self.backend!r} not discovered: {sorted(registry.entries)}"
        return registry.entries[self.backend]

    def info(self) -> BackendInfo:
        """The backend's description: it loaded (``ok``, or ``unavailable`` on this machine), never ``failed``."""
        entry = self.entry()
        assert entry.status != "failed", f"{self.backend} failed to load: {entry.reason}"
        if entry.info is None:
            pytest.skip(f"{self.backend} unavailable here: {entry.reason}")
        return entry.info

    def skip_unless_runs_on_cpu(self, mode: str) -> None:
        entry = self.entry()
        info = self.info()
        why = missing_requirements(info, "cpu", mode) or (entry.reason if entry.status == "unavailable" else None)
        if why:
            pytest.skip(f"{self.backend} cannot run {mode} on the CPU here: {why}")

    def check_ok(self, result: dict[str, Any]) -> None:
        if result["status"] == "skipped":
            pytest.skip(result["reason"])
        assert result["status"] == "ok", result.get("reason")
        assert result["iterations"] >= 2
        assert result["latency_p50_ms"] > 0 and result["throughput_ips"] > 0
        assert result["prepare_s"] >= 0

    # -- the contract ---------------------------------------------------------------------------------
    def test_discovered_with_status(self):
        entry = self.entry()
        assert entry.status in ("ok", "unavailable", "failed")
        assert entry.status == "ok" or entry.reason, "a backend that is not ok must say why"
        assert entry.distribution and entry.version

    def test_describes_itself(self):
        info = self.info()
        assert info.description.strip()
        assert info.modes and set(info.modes) <= set(MODES)
        assert info.stage in STAGES or (info.stage is None and not info.composable)

    def test_hooks_are_known_marked_and_without_defaults(self):
        """A misspelt hook, an unmarked one or a parameter with a default fails the plugin at registration."""
        entry = self.entry()
        assert entry.status != "failed", f"{self.backend} failed to load: {entry.reason}"
        assert "backend_info" in entry.hooks and set(entry.hooks) <= set(hook_names())

    def test_inference_agrees_with_baseline(self, tmp_path):
        self.skip_unless_runs_on_cpu("inference")
        result = run_in_process(self.backend, batch_size=self.batch_size, image_size=self.image_size,
                                models_dir=tmp_path / "models")
        self.check_ok(result)
        assert result["eval_images"] >= EVAL_IMAGES
        metrics = {k: result.get(k) for k in ("rel_err", "top1_agree", "max_abs_err", "accuracy_tolerance")}
        assert result["accuracy_ok"] is True, f"{self.backend} does not answer like the fp32 baseline: {metrics}"

    def test_training_step_runs(self):
        info = self.info()
        if "training" not in info.modes:
            pytest.skip(f"{self.backend} does not claim training")
        self.skip_unless_runs_on_cpu("training")
        result = run_in_process(
            self.backend, mode="training", batch_size=self.training_batch_size, image_size=self.image_size
        )
        self.check_ok(result)

    def test_export_writes_artifact(self, tmp_path):
        entry = self.entry()
        if "export" not in entry.hooks:
            pytest.skip(f"{self.backend} has no export")
        self.skip_unless_runs_on_cpu("inference")
        result = run_in_process(self.backend, image_size=self.image_size, models_dir=tmp_path)
        self.check_ok(result)
        assert not any(note.startswith("exporting failed") for note in result["notes"]), result["notes"]
        artifact = Path(result["artifact_path"])
        assert artifact.is_file() and artifact.stat().st_size > 0
        assert artifact.parent == tmp_path
        if "load_artifact" in entry.hooks:  # the cold start: a fresh process loads it and answers like the row
            assert not any(note.startswith("cold start failed") for note in result["notes"]), result["notes"]
            assert result["cold_start_s"] > 0, result["notes"]

    def test_unknown_option_key_is_refused_while_parsing(self):
        from densebench_core.options import OptionError

        self.info()  # skips when the backend is unavailable here
        with pytest.raises(OptionError, match=f"backend '{self.backend}' has no option 'no_such_option'"):
            make_context(self.backend, {"no_such_option": "1"})

    def test_bad_option_values_are_bad_input_before_any_worker(self, tmp_path):
        """Each declared option refuses a value it cannot take: one line naming it, exit code 2, nothing written."""
        info = self.info()
        refusable = {key: bad for key, option in info.options.items() if (bad := _invalid_value(option)) is not None}
        if not refusable:
            pytest.skip(f"{self.backend} declares no option with a value to refuse")
        for key, bad in refusable.items():
            results = tmp_path / key
            proc = run_densebench("run", "--backend", self.backend, "--device", "cpu", "--backend-option",
                                  f"{self.backend}.{key}={bad}", "--output-dir", str(results),
                                  "--log-dir", str(tmp_path / "logs"))  # fmt: skip
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(lines) == 1, proc.stderr
            assert f"--backend-option {self.backend}.{key} " in lines[0] and "Traceback" not in proc.stderr
            assert not results.exists(), "a run refused as bad input must write nothing"

    def test_measured_through_cli(self, tmp_path):
        entry = self.entry()
        proc = run_densebench(
            "run", "--backend", self.backend, "--device", "cpu", "--quick", "--batch-sizes", "2",
            "--image-size", str(self.image_size), "--min-iters", "2", "--min-time", "0", "--no-profile",
            "--output-dir", str(tmp_path / "results"), "--log-dir", str(tmp_path / "logs"),
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        rows = read_rows(tmp_path / "results" / "benchmark_results.csv")
        assert [r["backend"] for r in rows] == [self.backend]
        row = rows[0]
        if entry.status == "ok" and missing_requirements(entry.info, "cpu", "inference") is None:
            assert row["status"] in ("ok", "skipped"), row["reason"]
            assert proc.returncode == 0
        else:
            assert row["status"] == "skipped" and row["reason"], row
