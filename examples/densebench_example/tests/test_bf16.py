import pytest

from densebench_core.options import OptionError
from densebench_core.testing import BackendContractSuite, run_in_process


class TestBf16(BackendContractSuite):
    backend = "bf16"


def test_autocast_mode_runs():
    result = run_in_process("bf16", options={"bf16": {"mode": "autocast"}})
    assert result["status"] == "ok", result.get("reason")
    assert result["precision"] == "bf16"


def test_bad_mode_is_refused():
    with pytest.raises(OptionError, match="bf16.mode must be one of cast, autocast, not 'fp8'"):
        run_in_process("bf16", options={"bf16": {"mode": "fp8"}})


def test_misspelt_option_is_refused():
    with pytest.raises(OptionError, match="backend 'bf16' has no option 'mdoe'"):
        run_in_process("bf16", options={"bf16": {"mdoe": "autocast"}})
