"""Presets plan into real recipes of the installed backends, with options those backends declare."""

import pytest

from densebench_core.benchmark import RunConfig, plan
from densebench_core.plugins import build_registry
from densebench_core.presets import PRESETS


@pytest.fixture(scope="module")
def registry():
    return build_registry()


def _plan(registry, name, mode="inference", options=None):
    config = RunConfig(backends=[name], device="cpu", mode=mode, quick=True, options=options or {})
    config.resolve()
    return plan(config, registry)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_recipe_with_declared_options(registry, name):
    preset = PRESETS[name]
    infos = registry.infos()
    mode = "training" if "training" in name else "inference"
    items = _plan(registry, name, mode)
    assert items and all(item.backend == name and item.decided is None for item in items)
    assert sorted(items[0].members) == sorted(preset.recipe.split("+"))
    for backend, values in preset.options.items():
        assert backend in items[0].members
        assert set(values) <= set(infos[backend].options), (backend, values)
        assert items[0].shown_options[backend] == values


def test_fastest_training_uses_cuda_graphs_and_a_user_option_wins(registry):
    items = _plan(registry, "fastest-training", "training")
    assert items[0].members == ["channels_last", "amp", "compile"]
    assert items[0].shown_options == {"compile": {"mode": "reduce-overhead"}}
    overridden = _plan(registry, "fastest-training", "training", {"compile": {"mode": "default"}})
    assert overridden[0].shown_options == {"compile": {"mode": "default"}}
