"""``.ci/run`` works inside an activated virtualenv (it failed there with ``invalid command 'bdist_wheel'`` in every
session) and installs nothing into the Python it is started with.

The check runs a real nox session (installing densebench editable, listing plugins, collecting the jit plugin's
tests) through ``.ci/run`` from a fresh virtualenv, in a clone of this checkout. It reuses the dependency
virtualenv ``.ci/.deps`` that ``.ci/run`` made for this checkout (torch and the rest, about 6 GB); where there is
none (``nox`` run by hand), it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEPS = REPO / ".ci" / ".deps"
#: the files that make up the CI entry point, copied over the clone so that uncommitted changes are what is tested
CI_FILES = (".ci/run", "noxfile.py", "scripts/install_test_deps.sh")


@pytest.mark.skipif(not (DEPS / "bin" / "python").exists(), reason="no .ci/.deps here: run `bash .ci/run` once")
def test_ci_script_runs_a_session_inside_an_activated_virtualenv(tmp_path):
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    for name in CI_FILES:
        shutil.copy2(REPO / name, clone / name)
    (clone / ".ci" / ".deps").symlink_to(DEPS)
    outer = tmp_path / "outer"
    subprocess.run([sys.executable, "-m", "venv", str(outer)], check=True)
    site = next(outer.glob("lib/python*/site-packages"))
    before = sorted(p.name for p in site.iterdir())
    env = {**os.environ, "VIRTUAL_ENV": str(outer), "PATH": f"{outer / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "DENSEBENCH_NO_APT": "1"}  # what `. outer/bin/activate` does, as far as the script can see
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", ".ci/run", "-s", "plugin(plugin='jit')", "--", "--co", "-q"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "bdist_wheel" not in output
    assert f"nothing into {outer / 'bin' / 'python3'}" in output
    assert "Session plugin(plugin='jit') was successful" in output
    assert sorted(p.name for p in site.iterdir()) == before  # the activated virtualenv got nothing
