#!/usr/bin/env bash
# First look on the GPU machine (offline): install, environment, harness overhead, TorchScript settings,
# and a quick run of whatever backends are installed. Writes everything under $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bash scripts/gpu_install.sh
densebench env --json > "$OUT/env.json"
python3 benchmarks/harness_overhead.py --device cuda --batch-size 1 --channels-last --fp16 --iterations 300 > "$OUT/harness_bs1.json"
python3 benchmarks/harness_overhead.py --device cuda --batch-size 256 --channels-last --fp16 --iterations 40 > "$OUT/harness_bs256.json"
cat "$OUT"/harness_*.json
timeout 240 python3 benchmarks/jit_settings.py --device cuda --timeout 35 | tee "$OUT/jit_settings.jsonl"
start=$(date +%s)
densebench run --all --quick --output-dir /tmp/R --log-dir /tmp/L "$@"
echo "quick run took $(( $(date +%s) - start )) s"
cp /tmp/R/benchmark_results.csv "$OUT/quick.csv"
cp /tmp/R/benchmark_results.json "$OUT/quick.json"
