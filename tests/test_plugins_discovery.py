"""Discovery through real entry points: a pip-installed test plugin package is found; removed, it is gone."""

import json

from conftest import TINY

from densebench_core.testing import read_rows, run_densebench


def plugins_json(env=None):
    proc = run_densebench("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return {p["name"]: p for p in json.loads(proc.stdout)}


def test_builtins_are_listed_with_status():
    plugins = plugins_json()
    for name in ("baseline", "channels_last", "fp16"):
        assert plugins[name]["status"] == "ok"
        assert plugins[name]["distribution"] == "densebench-core"
        assert plugins[name]["version"]
    assert "identity_test" not in plugins


def test_installed_plugin_is_discovered_and_uninstalled_one_is_not(with_testplugins):
    installed = plugins_json(with_testplugins)
    assert installed["identity_test"]["status"] == "ok"
    assert installed["identity_test"]["distribution"] == "densebench-testplugins"
    assert installed["identity_test"]["version"] == "0.0.1"
    assert "prepare_model" in installed["identity_test"]["hooks"]
    assert "identity_test" not in plugins_json()  # the same machine without the package on the path


def test_broken_plugins_are_listed_not_fatal(with_testplugins):
    plugins = plugins_json(with_testplugins)
    assert plugins["broken_test"]["status"] == "failed"
    assert "deliberately broken at import" in plugins["broken_test"]["reason"]
    assert plugins["needs_missing_test"]["status"] == "unavailable"
    assert "densebench_no_such_package" in plugins["needs_missing_test"]["reason"]


def test_env_var_narrows_which_plugins_load(with_testplugins):
    narrowed = plugins_json({**with_testplugins, "DENSEBENCH_PLUGINS": "identity_test"})
    assert "identity_test" in narrowed and "broken_test" not in narrowed
    assert {"baseline", "channels_last", "fp16"} <= set(narrowed)


def test_plain_listing_is_one_line_per_backend(with_testplugins):
    proc = run_densebench("plugins", env=with_testplugins)
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert any(line.startswith("broken_test") and "failed" in line for line in lines)


def test_third_party_backend_is_measured(tmp_path, with_testplugins):
    env = {**with_testplugins, "DENSEBENCH_PLUGINS": "identity_test"}
    proc = run_densebench("run", "--backend", "identity_test", *TINY, "--output-dir", str(tmp_path / "r"),
                          "--log-dir", str(tmp_path / "l"), env=env)
    assert proc.returncode == 0, proc.stderr
    [row] = read_rows(tmp_path / "r" / "benchmark_results.csv")
    assert row["backend"] == "identity_test" and row["status"] == "ok"
    assert float(row["cosine_sim"]) > 0.999999
