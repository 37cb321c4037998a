#!/usr/bin/env bash
# Third-party packages for the test sessions, installed into the Python given (nox sessions see them, see
# noxfile.py), and Chromium for the TensorBoard screenshot check, system-wide with apt where that is usable.
# Usage: bash scripts/install_test_deps.sh [PYTHON]     (default: $PYTHON, else python3)
# `.ci/run` passes the python of its own virtualenv, .ci/.deps, so nothing goes into the caller's Python.
# DENSEBENCH_NO_APT=1: no system-wide Chromium install (the screenshot test then skips).
# ray is for the ray launcher's session (plugins/densebench_ray): a local Ray instance on the CPU, about 79 MB.
set -euo pipefail
PY=${1:-${PYTHON:-python3}}
target=$("$PY" -c 'import sys; print(sys.prefix)')

have_chromium() {  # the browsers scripts/screenshot_scalars.py looks for
  [ -n "${DENSEBENCH_CHROMIUM:-}" ] || [ -x /usr/bin/chromium ] \
    || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1
}
apt_chromium=no
if have_chromium; then
  echo "install_test_deps: chromium is there already: nothing installed system-wide"
elif [ "${DENSEBENCH_NO_APT:-0}" != 0 ]; then
  echo "install_test_deps: DENSEBENCH_NO_APT is set: no chromium, the screenshot test will be skipped"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install_test_deps: chromium will be installed SYSTEM-WIDE with apt-get (root; DENSEBENCH_NO_APT=1 skips it)"
  apt_chromium=yes
else
  echo "install_test_deps: no chromium and no root apt-get: the screenshot test will be skipped"
fi
echo "install_test_deps: third-party packages into $target (pip of $PY)"

"$PY" -m pip install -q --disable-pip-version-check \
  "torch==2.14.1" "torchvision==0.29.1" \
  "pluggy>=1.3" "click>=8.1" "pandas>=2.0" "tensorboard>=2.14" "matplotlib>=3.7" numpy "scipy>=1.10" "tqdm>=4.60" \
  "setuptools>=70" wheel "pytest>=7" "pytest-xdist>=3.5" "nox>=2024.3" ruff \
  torch-tb-profiler \
  "ray==2.60.0"
if [ "$apt_chromium" = yes ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "install_test_deps: chromium could not be installed; the screenshot test will be skipped"
fi
