import pytest

from densebench_core.backend import BackendInfo, parse_recipe
from densebench_core.errors import BadInput

INFOS = {
    "baseline": BackendInfo("ref", stage="compiler", composable=False),
    "channels_last": BackendInfo("nhwc", stage="layout"),
    "fp16": BackendInfo("half", stage="precision"),
    "amp": BackendInfo("autocast", stage="precision"),
    "compile": BackendInfo("inductor", stage="compiler"),
    "jit": BackendInfo("torchscript", stage="compiler"),
}


def test_members_are_applied_in_stage_order_whatever_the_spelling():
    assert parse_recipe("compile+amp+channels_last", INFOS) == ["channels_last", "amp", "compile"]
    assert parse_recipe("quantize", INFOS) == ["fp16"]


@pytest.mark.parametrize(
    "spec, words",
    [
        ("jit+compile", "both compiler"),
        ("fp16+amp", "both precision"),
        ("baseline+fp16", "does not compose"),
        ("nope", "available: amp, baseline"),
        ("fp16+fp16", "twice"),
        ("fp16+", "empty"),
    ],
)
def test_bad_recipes_are_bad_input(spec, words):
    with pytest.raises(BadInput, match=words):
        parse_recipe(spec, INFOS)
