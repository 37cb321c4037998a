"""The plugin API cannot be misused silently: each misuse an outside author made is caught, with its name.

The misusing backends are real installed plugins (tests/fixtures/apiplugins), one misuse each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import TINY

from densebench_core.hook_checks import HookError
from densebench_core.plugins import build_registry
from densebench_core.testing import read_rows, run_densebench, run_in_process


@pytest.fixture
def installed(apiplugins_path, testplugins_path, monkeypatch):
    """The fixture plugins installed in this process (entry points are read from sys.path when asked)."""
    monkeypatch.syspath_prepend(str(testplugins_path))
    monkeypatch.syspath_prepend(str(apiplugins_path))
    return build_registry().entries


# -- registration ----------------------------------------------------------------------------------------------
def test_a_misspelt_hook_fails_the_plugin_naming_the_closest_hook(installed):
    entry = installed["typo_test"]
    assert entry.status == "failed"
    assert entry.reason == "unknown hook 'prepare_modle' (did you mean 'prepare_model'?)"


def test_a_hook_parameter_with_a_default_fails_the_plugin(installed):
    entry = installed["defaulted_test"]
    assert entry.status == "failed" and "'prepare_model' gives ctx a default value" in entry.reason


def test_a_hook_without_the_marker_fails_the_plugin(installed):
    entry = installed["unmarked_test"]
    assert entry.status == "failed" and "prepare_model() is not marked @hookimpl" in entry.reason


def test_a_missing_module_of_its_own_is_a_broken_plugin_a_missing_dependency_is_not(installed):
    own, dependency = installed["missing_own_test"], installed["needs_missing_test"]
    assert own.status == "failed" and "densebench_apiplugins.no_such_module" in own.reason
    assert "its own distribution densebench-apiplugins" in own.reason
    assert dependency.status == "unavailable" and "densebench_no_such_package" in dependency.reason


def test_the_plugins_that_use_the_api_rightly_are_ok(installed):
    assert {n for n, e in installed.items() if e.status == "ok"} >= {
        "constant_test", "first_image_test", "frozen_training_test", "unlabelled_fp16_test", "none_step_test",
        "export_fault_test", "probe_layout_test", "probe_compiler_test", "slow_import_test", "identity_test",
        "profile_hang_test"}


def test_a_plugin_hanging_at_import_is_failed_and_the_run_goes_on(tmp_path, with_apiplugins):
    env = {**with_apiplugins, "DENSEBENCH_TEST_SLOW_IMPORT": "1", "DENSEBENCH_IMPORT_TIMEOUT": "5"}
    listing = run_densebench("plugins", "--json", env=env, timeout=120)  # the import sleeps an hour
    [entry] = [p for p in json.loads(listing.stdout) if p["name"] == "slow_import_test"]
    assert entry["status"] == "failed" and "did not finish within 5 s" in entry["reason"]
    others = entry["reason"].split("leave it out with DENSEBENCH_PLUGINS=")[1].split(",")  # the others, by name
    assert "constant_test" in others and "slow_import_test" not in others
    proc = run_densebench("run", "--backend", "baseline", *TINY, "--output-dir", str(tmp_path / "r"),
                          "--log-dir", str(tmp_path / "l"), env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning: plugin 'slow_import_test' did not finish importing within 5 s" in proc.stderr
    assert [r["status"] for r in read_rows(tmp_path / "r" / "benchmark_results.csv")] == ["ok"]


# -- what the hooks return ----------------------------------------------------------------------------------------
def test_run_step_returning_none_names_the_plugin_and_the_hook(installed):
    with pytest.raises(HookError, match=r"^plugin 'none_step_test', hook run_step: the step returned None; "
                                        r"expected the model output, a torch.Tensor of shape \(2, 1000\)"):
        run_in_process("none_step_test")


def test_fp16_arithmetic_under_an_fp32_label_is_refused(installed):
    with pytest.raises(HookError, match="output is float16 while the row's precision says 'fp32'"):
        run_in_process("unlabelled_fp16_test")


@pytest.mark.parametrize("backend", ["constant_test", "first_image_test"])
def test_answers_that_ignore_the_images_fail_the_accuracy_check(installed, backend):
    result = run_in_process(backend, batch_size=2, eval_images=16)
    assert result["status"] == "ok" and result["accuracy_ok"] is False, result


def test_a_training_step_that_never_updates_the_weights_fails_the_row(installed):
    result = run_in_process("frozen_training_test", mode="training")
    assert result["status"] == "failed" and "left every weight unchanged" in result["reason"]
    assert run_in_process("identity_test", mode="training")["status"] == "ok"  # the same model, trained


@pytest.mark.parametrize("how, note", [
    ("raise", "exporting failed: RuntimeError: deliberate failure in export"),
    ("outside", "exporting failed: HookError: plugin 'export_fault_test', hook export: returned"),
    ("missing", "never-written.bin, which is not a file"),
    ("number", "hook export: returned an int; expected None or the path of the written file"),
])  # fmt: skip
def test_a_bad_export_costs_the_artifact_not_the_measurement(installed, tmp_path, how, note):
    result = run_in_process("export_fault_test", models_dir=tmp_path / "models",
                            options={"export_fault_test": {"how": how}})
    assert result["status"] == "ok" and result["latency_p50_ms"] > 0 and result["accuracy_ok"] is True
    assert "artifact_path" not in result
    assert any(note in line for line in result["notes"]), result["notes"]
    if how == "outside":
        assert "outside the run's models folder" in " ".join(result["notes"])


def test_a_good_export_is_kept(installed, tmp_path):
    result = run_in_process("export_fault_test", models_dir=tmp_path / "models")
    assert result["artifact_path"].endswith("export_fault_test.bin") and result["artifact_mb"] > 0


@pytest.mark.parametrize("how, note", [
    ("hang", "exporting did not finish within 10 s (--phase-timeout); process killed"),
    ("abort", "exporting did not finish: worker process killed by signal SIGABRT"),
])  # fmt: skip
def test_a_phase_after_the_measurement_that_hangs_or_crashes_keeps_the_row(tmp_path, with_apiplugins, how, note):
    proc = run_densebench("run", "--backend", "export_fault_test", *TINY, "--phase-timeout", "10",
                          "--backend-option", f"export_fault_test.how={how}", "--output-dir", str(tmp_path / "r"),
                          "--log-dir", str(tmp_path / "l"), env=with_apiplugins)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["status"] == "ok" and float(row["latency_p50_ms"]) > 0 and row["accuracy_ok"] == "true", row
    assert note in row["notes"] and row["artifact_path"] == "" and row["artifact_mb"] == ""
    [log] = (tmp_path / "r" / "runs").glob("*/work/export_fault_test_inference_bs1.log")
    assert "export_fault.py" in log.read_text()  # where it hung or crashed: faulthandler's stacks


def test_a_hang_while_profiling_keeps_the_row_and_its_accuracy(tmp_path, with_apiplugins):
    """The profile pass comes last, after the accuracy check and the export: both stay, the profile is a note."""
    settings = [a for a in TINY if a != "--no-profile"]
    proc = run_densebench("run", "--backend", "profile_hang_test", *settings, "--phase-timeout", "10",
                          "--output-dir", str(tmp_path / "r"), "--log-dir", str(tmp_path / "l"),
                          env=with_apiplugins)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["status"] == "ok" and float(row["latency_p50_ms"]) > 0 and row["accuracy_ok"] == "true", row
    assert "profiling did not finish within 10 s (--phase-timeout); process killed" in row["notes"]


# -- hooks every recipe member runs -------------------------------------------------------------------------------
def test_every_members_warmup_then_before_measure_then_after_measure_run_in_stage_order(installed):
    result = run_in_process("probe_compiler_test+probe_layout_test")
    calls = [n for n in result["notes"] if n.startswith("probe_")]
    assert calls == [f"probe_{stage}_test.{hook}" for hook in ("warmup", "before_measure", "after_measure")
                     for stage in ("layout", "compiler")]


# -- the kit --------------------------------------------------------------------------------------------------------
WRONG = {  # backend: the contract test that must fail on it
    "typo_test": "test_hooks_are_known_marked_and_without_defaults",
    "defaulted_test": "test_hooks_are_known_marked_and_without_defaults",
    "unmarked_test": "test_hooks_are_known_marked_and_without_defaults",
    "scaled_test": "test_inference_agrees_with_baseline",
    "rolled_test": "test_inference_agrees_with_baseline",
    "constant_test": "test_inference_agrees_with_baseline",
    "first_image_test": "test_inference_agrees_with_baseline",
    "unlabelled_fp16_test": "test_inference_agrees_with_baseline",
    "none_step_test": "test_inference_agrees_with_baseline",
    "frozen_training_test": "test_training_step_runs",
}


def test_the_kit_contract_suite_fails_every_wrong_backend_and_passes_a_right_one(tmp_path, testplugins_path,
                                                                                  apiplugins_path):
    classes = "".join(
        f"class Test_{name}(BackendContractSuite):\n    backend = {name!r}\n\n" for name in [*WRONG, "identity_test"]
    )
    (tmp_path / "test_contract.py").write_text("from densebench_core.testing import BackendContractSuite\n\n\n"
                                               + classes)
    env = {**__import__("os").environ, "PYTHONPATH": f"{apiplugins_path}:{testplugins_path}"}
    # what is checked below and nothing else: each wrong backend's test that must fail, and those contract tests on
    # the right backend (a wrong backend's other tests would measure it in vain: their outcome is not checked)
    selected = [(name, test) for name, test in WRONG.items()]
    selected += [("identity_test", test) for test in sorted(set(WRONG.values()))]
    node_ids = [f"test_contract.py::Test_{name}::{test}" for name, test in selected]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *node_ids],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)  # fmt: skip
    outcome = {}
    for line in proc.stdout.splitlines():
        word, _, test_id = line.partition(" ")
        if word in ("PASSED", "FAILED", "SKIPPED", "ERROR") and "::" in test_id:
            _, cls, test = test_id.split(" ")[0].split("::")
            outcome[(cls.removeprefix("Test_"), test)] = word
    for name, test in WRONG.items():
        assert outcome.get((name, test)) == "FAILED", (name, test, textwrap.shorten(proc.stdout, 3000))
    right = {test: word for (name, test), word in outcome.items() if name == "identity_test"}
    assert right and set(right.values()) == {"PASSED"}, right
