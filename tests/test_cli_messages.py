"""What a user reads: the plugins table, the presets listing, warnings and labels that say what they mean."""

import json

from densebench_core.presets import PRESETS
from densebench_core.report.build import images
from densebench_core.testing import run_densebench


def table_lines(stdout: str) -> list[str]:
    return stdout.split("\n\n", 1)[0].splitlines()


def test_plugins_table_columns_line_up_for_long_names(with_testplugins):
    proc = run_densebench("plugins", env={**with_testplugins, "DENSEBENCH_PLUGINS": "needs_missing_test"})
    assert proc.returncode == 0, proc.stderr
    lines = table_lines(proc.stdout)
    assert any(line.startswith("needs_missing_test ") for line in lines)  # 18 characters, longer than 16
    header = lines[0]
    for column in ("status", "stage", "distribution", "version"):
        start = header.index(column)
        # every row's cell of this column starts where its header does
        assert all(line[start - 2:start] == "  " and line[start] != " " for line in lines[1:]), (column, lines)


def test_baseline_has_no_recipe_stage():
    proc = run_densebench("plugins", env={"DENSEBENCH_PLUGINS": ""})
    baseline = next(line for line in table_lines(proc.stdout) if line.startswith("baseline "))
    assert baseline.split()[2] == "-"
    assert "compiler" not in baseline


def test_presets_are_listed_with_recipe_and_options():
    listed = run_densebench("plugins", env={"DENSEBENCH_PLUGINS": ""}).stdout
    for name, preset in PRESETS.items():
        assert f"{name}  " in listed and preset.recipe in listed
    proc = run_densebench("presets", "--json")
    assert proc.returncode == 0, proc.stderr
    presets = json.loads(proc.stdout)
    assert presets["fastest-latency"] == {"recipe": PRESETS["fastest-latency"].recipe,
                                          "options": PRESETS["fastest-latency"].options,
                                          "description": PRESETS["fastest-latency"].description}
    text = run_densebench("presets").stdout
    assert "compile.mode=reduce-overhead" in text and "fastest-training" in text


def test_unknown_name_in_densebench_plugins_is_a_warning(with_testplugins):
    proc = run_densebench("plugins", env={**with_testplugins, "DENSEBENCH_PLUGINS": "nosuch,identity_test"})
    assert proc.returncode == 0
    assert proc.stderr.strip().startswith("densebench: warning: DENSEBENCH_PLUGINS names 'nosuch', which is not "
                                          "installed (installed plugins: ")
    assert "identity_test" in proc.stderr  # the names that would have worked
    quiet = run_densebench("plugins", env={**with_testplugins, "DENSEBENCH_PLUGINS": "identity_test"})
    assert quiet.stderr == ""


def test_env_says_the_cuda_release_is_torchs_build():
    proc = run_densebench("env")
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert "cuda" not in lines and "cuda_build" in lines
    assert "built with" in lines["cuda_build"]
    info = json.loads(run_densebench("env", "--json").stdout)
    assert "cuda_build" in info and "cuda" not in info


def test_counts_are_spelled_right():
    assert images(1) == "1 image" and images(0.4) == "1 image" and images(2) == "2 images"
    assert images(1234.2) == "1,235 images" and images(float("inf")) == "never"
