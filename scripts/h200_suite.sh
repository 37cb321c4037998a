#!/usr/bin/env bash
# The full suite on the GPU machine (offline), in stages that each fit one device call:
#   bash scripts/h200_suite.sh quick      # `densebench run --all --quick`, timed (target: under 5 minutes)
#   bash scripts/h200_suite.sh training   # training at batch 128: the reference configurations and the best recipe
#   bash scripts/h200_suite.sh inference  # the published inference run: every backend and preset at bs 1 and 256
#   bash scripts/h200_suite.sh all        # all three, one after another
#   bash scripts/h200_suite.sh search VARIANT...  # benchmarks/recipe_search.py (lines in $OUT/search/recipes.jsonl),
#                                          # within $SEARCH_DEADLINE seconds (default 540): see --list for variants
# Results land in $OUT/<stage>.tgz (CSV, JSON, report, plots) and $OUT/<stage>.csv; the inductor cache in /tmp is shared between stages.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
stage=${1:-all}
bash "$(dirname "$0")/gpu_install.sh" >/dev/null || exit 1

copy_results() {  # one tarball per stage: CSV, JSON, report, plots (no worker files, no model artifacts)
  local from=$1 name=$2
  densebench report "$from" || echo "report failed for $from"
  (cd "$from" && tar -czf "$OUT/$name.tgz" --ignore-failed-read benchmark_results.csv benchmark_results.json \
    report.md report.html plots)
  cp "$from/benchmark_results.csv" "$OUT/$name.csv"
}

run_quick() {
  local start; start=$(date +%s)
  densebench run --all --quick --output-dir /tmp/quick --log-dir /tmp/logs-quick
  echo "quick: $(( $(date +%s) - start )) s" | tee "$OUT/quick_seconds.txt"
  copy_results /tmp/quick quick
}

run_training() {
  densebench run --mode training --batch-sizes 128 --min-time 3 \
    --backend baseline --backend channels_last+amp --backend fastest-training \
    --output-dir /tmp/training --log-dir /tmp/logs-training
  copy_results /tmp/training training
}

run_inference() {
  densebench run --batch-sizes 1,256 --min-time 1 --timeout 300 \
    --backend baseline --backend channels_last --backend fp16 --backend channels_last+fp16 \
    --backend amp --backend compile --backend jit --backend trt \
    --backend fastest-latency --backend fastest-throughput \
    --output-dir /tmp/inference --log-dir /tmp/logs-inference
  copy_results /tmp/inference inference
}

run_search() {
  python3 benchmarks/recipe_search.py --out "$OUT/search" --deadline "${SEARCH_DEADLINE:-540}" "$@"
}

mkdir -p "$OUT"
densebench env --json > "$OUT/env.json"
case $stage in
  quick) run_quick ;;
  training) run_training ;;
  inference) run_inference ;;
  all) run_quick; run_training; run_inference ;;
  search) shift; run_search "$@" ;;
  *) echo "h200_suite.sh: unknown stage '$stage' (quick, training, inference, all, search)" >&2; exit 2 ;;
esac
