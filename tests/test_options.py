import pytest

from densebench_core.options import OptionError, merged_options, parse_bool
from densebench_core.testing import make_context


def test_defaults_overlaid_and_unknown_keys_refused():
    ctx = make_context("demo", {"mode": "fast"})
    assert merged_options(ctx, "demo", {"mode": "slow", "level": "1"}) == {"mode": "fast", "level": "1"}
    with pytest.raises(OptionError, match="unknown option demo.mode; demo understands: level"):
        merged_options(ctx, "demo", {"level": "1"})


@pytest.mark.parametrize("raw, expected", [("true", True), ("ON", True), ("0", False), (" no ", False)])
def test_booleans(raw, expected):
    assert parse_bool("demo", "flag", raw) is expected


def test_auto_only_where_allowed():
    assert parse_bool("demo", "flag", "auto", allow_auto=True) is None
    with pytest.raises(OptionError, match="demo.flag must be true or false, not 'auto'"):
        parse_bool("demo", "flag", "auto")
