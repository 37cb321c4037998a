#!/usr/bin/env bash
# Install densebench on the offline GPU machine: its python3 already has torch, pluggy, click, pandas and
# tensorboard; small missing wheels (torch-tb-profiler) travel in .whl/ (README.md, Documentation).
set -euo pipefail
pkgs=(-e .)
for p in plugins/densebench_*; do [ -f "$p/pyproject.toml" ] && pkgs+=(-e "$p"); done
python3 -m pip install -q --no-deps --no-build-isolation "${pkgs[@]}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
