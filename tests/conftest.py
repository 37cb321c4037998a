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


def _pip_install_fixture(name: str, tmp_path_factory) -> Path:
    """``pip install --target`` of tests/fixtures/NAME: on PYTHONPATH means installed."""
    target = tmp_path_factory.mktemp(f"{name}-site")
    source = tmp_path_factory.mktemp(f"{name}-build") / name
    subprocess.run(["cp", "-r", str(FIXTURES / name), str(source)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def _on_pythonpath(*paths: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(p for p in (*map(str, paths), os.environ.get("PYTHONPATH", "")) if p)}


@pytest.fixture(scope="session")
def testplugins_path(tmp_path_factory) -> Path:
    """The misbehaving backends (hangs, crashes, wrong answers), installed."""
    return _pip_install_fixture("testplugins", tmp_path_factory)


@pytest.fixture(scope="session")
def apiplugins_path(tmp_path_factory) -> Path:
    """The backends that misuse the plugin API one way each (tests/fixtures/apiplugins), installed."""
    return _pip_install_fixture("apiplugins", tmp_path_factory)


@pytest.fixture
def with_apiplugins(apiplugins_path):
    """Environment for a child process in which the API-misusing plugins are installed."""
    return _on_pythonpath(apiplugins_path)


@pytest.fixture
def with_testplugins(testplugins_path):
    """Environment for a child process in which the test plugins are installed."""
    return _on_pythonpath(testplugins_path)
