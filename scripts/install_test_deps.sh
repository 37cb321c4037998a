#!/usr/bin/env bash
# Third-party packages for the test sessions, installed once into this Python (nox sessions see them
# through --system-site-packages); Chromium for the TensorBoard screenshot check where apt is usable.
set -euo pipefail
python3 -m pip install -q \
  "torch==2.14.1" "torchvision==0.29.1" \
  "pluggy>=1.3" "click>=8.1" "pandas>=2.0" "tensorboard>=2.14" "matplotlib>=3.7" numpy "scipy>=1.10" "tqdm>=4.60" \
  "setuptools>=70" wheel "pytest>=7" "nox>=2024.3" ruff \
  torch-tb-profiler
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "install_test_deps: chromium could not be installed; the screenshot test will be skipped"
  else
    echo "install_test_deps: no chromium and no root apt-get; the screenshot test will be skipped"
  fi
fi
