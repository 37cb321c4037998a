"""Typed backend options: declared in BackendInfo, parsed once in the parent, bad ones refused with one line."""

import json

import pytest

from densebench_core.backend import BackendInfo
from densebench_core.options import Option, OptionError, as_option, resolve
from densebench_core.testing import make_context, run_densebench

DECLARED = {
    "mode": Option(default="fast", choices=("fast", "slow"), aliases={"quick": "fast"}, help="how"),
    "flag": Option(default=None, type=bool, auto=True, help="maybe"),
    "level": Option(default=8, type=int, minimum=1, help="how much"),
    "scale": Option(default=1.0, type=float, minimum=0.5, help="by what"),
    "name": Option(default="x", help="any text"),
}


def test_values_are_typed_with_defaults_filled_in():
    values = resolve("demo", DECLARED, {"mode": "quick", "flag": "ON", "level": " 3 ", "scale": "2.5"})
    assert values == {"mode": "fast", "flag": True, "level": 3, "scale": 2.5, "name": "x"}
    assert resolve("demo", DECLARED, {"flag": "auto"})["flag"] is None
    assert resolve("demo", DECLARED, {}) == {"mode": "fast", "flag": None, "level": 8, "scale": 1.0, "name": "x"}


@pytest.mark.parametrize("key, raw, message", [
    ("mode", "medium", "--backend-option demo.mode must be one of fast, slow, not 'medium'"),
    ("flag", "maybe", "--backend-option demo.flag must be auto, true or false, not 'maybe'"),
    ("level", "0", "--backend-option demo.level must be a whole number >= 1, not '0'"),
    ("level", "2.5", "--backend-option demo.level must be a whole number >= 1, not '2.5'"),
    ("scale", "nan", "--backend-option demo.scale must be a number >= 0.5, not 'nan'"),
    ("scale", "inf", "--backend-option demo.scale must be a number >= 0.5, not 'inf'"),
    ("name", " ", "--backend-option demo.name must not be empty"),
    ("mdoe", "fast", "backend 'demo' has no option 'mdoe'; its options: flag, level, mode, name, scale"),
])  # fmt: skip
def test_bad_keys_and_values_name_the_option_and_what_it_allows(key, raw, message):
    with pytest.raises(OptionError) as caught:
        resolve("demo", DECLARED, {key: raw})
    assert str(caught.value) == message


def test_options_that_do_not_go_together_are_refused():
    def check(values):
        return "level above 5 needs mode=slow" if values["level"] > 5 and values["mode"] == "fast" else None

    assert resolve("demo", DECLARED, {"level": "3"}, check)["level"] == 3
    with pytest.raises(OptionError, match="demo: level above 5 needs mode=slow"):
        resolve("demo", DECLARED, {}, check)


def test_plain_defaults_of_older_plugins_become_options_of_their_type():
    info = BackendInfo(description="older style", options={"mode": "cast", "steps": 3, "on": True})
    assert info.options["mode"] == as_option("cast") and info.options["mode"].type is str
    assert info.options["steps"].type is int and info.options["on"].type is bool
    assert resolve("old", info.options, {"steps": "5", "mode": "anything"}) == {"mode": "anything", "steps": 5,
                                                                                 "on": True}


def test_schema_says_what_each_option_takes():
    schema = DECLARED["flag"].schema()
    assert schema == {"type": "bool", "default": "auto", "help": "maybe", "allowed": "auto, true or false"}
    assert DECLARED["mode"].schema()["choices"] == ["fast", "slow"]


def test_plugins_json_lists_each_builtin_option_schema():
    proc = run_densebench("plugins", "--json", env={"DENSEBENCH_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert entries["baseline"]["options"] == {}
    assert entries["baseline"]["stage"] is None  # it does not compose: no recipe stage
    assert entries["fp16"]["stage"] == "precision"


def test_plugins_json_shows_each_option_schema():
    proc = run_densebench("plugins", "--json", env={"DENSEBENCH_PLUGINS": "compile"})
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    if "compile" not in entries or entries["compile"]["status"] != "ok":
        pytest.skip("densebench-compile is not installed in this environment")
    mode = entries["compile"]["options"]["mode"]
    assert mode["type"] == "str" and mode["default"] == "default" and "reduce-overhead" in mode["choices"]
    assert entries["compile"]["options"]["freezing"]["allowed"] == "auto, true or false"
    assert entries["compile"]["options"]["recompile_limit"] == {
        "type": "int", "default": 8, "minimum": 1, "allowed": "a whole number >= 1",
        "help": "Dynamo's recompilation limit; reaching it is an error, not an eager fallback"}


def test_hooks_see_typed_values_in_the_context():
    ctx = make_context("demo", {"level": "3"}, members=["demo"])
    assert ctx.option("demo", "level") == "3"  # not installed: a backend under construction sees what was given
    with pytest.raises(OptionError, match="backend 'fp16' has no option 'level'"):
        make_context("fp16", {"level": "3"})
