"""Shared fixtures: the misbehaving test plugins, installed for real with pip into a private folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

#: small, fast measurement settings for CPU tests
TINY = ["--device", "cpu", "--batch-sizes", "1", "--image-size", "32", "--warmup", "1",
        "--min-iters", "3", "--min-time", "0", "--eval-images", "8", "--no-profile"]  # fmt: skip


@pytest.fixture(scope="session")
def testplugins_path(tmp_path_factory) -> Path:
    """``pip install --target`` of tests/fixtures/testplugins: on PYTHONPATH means installed."""
    target = tmp_path_factory.mktemp("testplugins-site")
    build = tmp_path_factory.mktemp("testplugins-build")
    source = build / "testplugins"
    subprocess.run(["cp", "-r", str(FIXTURES / "testplugins"), str(source)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


@pytest.fixture
def with_testplugins(testplugins_path):
    """Environment for a child process in which the test plugins are installed."""
    path = os.pathsep.join(p for p in (str(testplugins_path), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}
