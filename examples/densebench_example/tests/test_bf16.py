import pytest

from densebench_core.testing import BackendContractSuite, run_in_process


class TestBf16(BackendContractSuite):
    backend = "bf16"
    min_cosine = 0.999  # bf16 keeps 8 bits of mantissa; lower this if your backend is lossier


def test_autocast_mode_runs():
    result = run_in_process("bf16", options={"bf16": {"mode": "autocast"}})
    assert result["status"] == "ok", result.get("reason")
    assert result["precision"] == "bf16"


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="bf16.mode must be cast or autocast"):
        run_in_process("bf16", options={"bf16": {"mode": "fp8"}})


def test_misspelt_option_is_refused():
    with pytest.raises(ValueError, match="unknown option bf16.mdoe"):
        run_in_process("bf16", options={"bf16": {"mdoe": "autocast"}})
